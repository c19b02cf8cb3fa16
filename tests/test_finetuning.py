"""Fine-tuning from a recipe: every task type runs with LoRA or full fine-tuning on tiny models and real (embedded)
or user data, leaves scores and reports, and the LoRA adapter reloads and merges into a plain Sora checkpoint."""

import json
import logging

import numpy as np
import pytest
import torch
from helpers import tiny_config_kwargs
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback, pipeline

from sora_hf import SoraConfig, SoraForCausalLM, SoraForMaskedLM, SoraForSeq2SeqLM
from sora_hf.data import load_pretraining_text
from sora_hf.recipes import RecipeError, parse_finetune_recipe
from sora_hf.runs import run_finetuning
from sora_hf.tasks.token_classification import decode_token_classification, encode_token_classification, join_words
from sora_hf.tokenizer import train_tokenizer

TRAINING = {
    "max_steps": 4,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "logging_steps": 1,
    "learning_rate": 3e-3,
    "disable_tqdm": True,
}


def _save(model_class, tokenizer, folder, **overrides):
    torch.manual_seed(0)
    model = model_class(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), **overrides)))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def recipe(checkpoint, out, data, method="lora", **extra):
    raw = {
        "name": "test",
        "checkpoint": str(checkpoint),
        "output_dir": str(out),
        "method": method,
        "max_length": 48,
        "doc_stride": 8,
        "data": {"max_train_examples": 48, "max_eval_examples": 24, **data},
        "training": dict(TRAINING),
        **extra,
    }
    return parse_finetune_recipe(raw)


def test_sentiment_with_lora_saves_adapter_and_merged_model(encoder_checkpoint, tmp_path):
    out = tmp_path / "sentiment"
    metrics = run_finetuning(recipe(encoder_checkpoint, out, {"embedded": "sentiment"}))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_examples"] == 24
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"] / 2
    for name in ("metrics.json", "predictions.jsonl", "confusion_matrix.png", "loss_curve.png", "README.md"):
        assert (out / name).exists(), name
    assert json.loads((out / "metrics.json").read_text())["method"] == "lora"
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and {r["prediction"] for r in rows} <= {"negative", "positive"}

    from peft import AutoPeftModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    adapter = AutoPeftModelForSequenceClassification.from_pretrained(out / "adapter").eval()
    assert merged.config.id2label == {0: "negative", 1: "positive"}
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(["质量很好，非常满意", "太差了，失望"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(adapter(**batch).logits, merged(**batch).logits, rtol=1e-4, atol=1e-5)
    # the trained head (and multi-level pooler) was saved with the adapter: it is not the fresh random one
    fresh = AutoModelForSequenceClassification.from_pretrained(encoder_checkpoint, num_labels=2)
    assert not torch.equal(fresh.classifier.out_proj.weight, merged.classifier.out_proj.weight)
    result = pipeline("text-classification", model=str(out))("质量很好")
    assert result[0]["label"] in ("negative", "positive")


def test_ner_full_fine_tuning_reports_entities(encoder_checkpoint, tmp_path):
    out = tmp_path / "ner"
    metrics = run_finetuning(recipe(encoder_checkpoint, out, {"embedded": "ner"}, method="full"))
    assert {"test_overall_f1", "test_overall_precision", "test_token_accuracy"} <= set(metrics)
    assert metrics["trainable_parameters"] == metrics["total_parameters"]
    assert "PER" in (out / "entity_report.txt").read_text()
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(len(r["predictions"]) == len(r["tokens"]) for r in rows)


def test_question_answering_predicts_spans_of_the_context(encoder_checkpoint, tmp_path):
    out = tmp_path / "qa"
    metrics = run_finetuning(recipe(encoder_checkpoint, out, {"embedded": "qa"}))
    assert {"test_exact_match", "test_f1"} <= set(metrics)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(r["prediction"], str) for r in rows)


def test_seq2seq_pinyin_from_an_encoder_decoder(tokenizer, tmp_path):
    checkpoint = _save(SoraForSeq2SeqLM, tokenizer, tmp_path / "s2s")
    out = tmp_path / "pinyin"
    metrics = run_finetuning(
        recipe(
            checkpoint, out, {"embedded": "pinyin"}, method="full", max_length=16, doc_stride=4, max_target_length=12
        )
    )
    assert {"test_bleu", "test_chrf", "test_cer", "test_exact_match"} <= set(metrics)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(" " in r["target"] for r in rows)


def test_user_files_multi_label_and_similarity(encoder_checkpoint, tmp_path):
    train = tmp_path / "train.jsonl"
    lines = [
        {"text": "屏幕很好，电池耐用", "label": ["screen", "battery"]},
        {"text": "物流很快", "label": ["shipping"]},
        {"text": "电池不行，屏幕也暗", "label": ["battery", "screen"]},
        {"text": "快递太慢", "label": ["shipping"]},
    ] * 8
    train.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    out = tmp_path / "multi"
    metrics = run_finetuning(
        recipe(encoder_checkpoint, out, {"task_type": "classification", "train_file": str(train), "multi_label": True})
    )
    assert {"test_f1_micro", "test_subset_accuracy"} <= set(metrics)
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["id2label"].values()) == ["battery", "screen", "shipping"]

    pairs = tmp_path / "pairs.csv"
    rows = ["text,text_pair,label"] + [f"今天天气很好{i},天气不错{i},{0.2 + 0.1 * (i % 7)}" for i in range(30)]
    pairs.write_text("\n".join(rows), encoding="utf-8")
    metrics = run_finetuning(
        recipe(encoder_checkpoint, tmp_path / "sim", {"task_type": "similarity", "train_file": str(pairs)})
    )
    assert -1.0 <= metrics["test_spearman"] <= 1.0


class _EvaluatedRows(TrainerCallback):
    """The number of rows of every dataset the Trainer evaluates during training."""

    def __init__(self):
        self.sizes = []

    def on_evaluate(self, args, state, control, eval_dataloader=None, **kwargs):
        self.sizes.append(len(eval_dataloader.dataset))


def test_the_model_is_chosen_on_validation_data_never_on_the_test_split(encoder_checkpoint, tmp_path):
    def write(name, rows):
        path = tmp_path / name
        lines = ["text,label"] + [
            f"{'好评很满意' if i % 2 else '差评不推荐'}{name[0]}{i},{i % 2}" for i in range(rows)
        ]
        path.write_text("\n".join(lines), encoding="utf-8")
        return str(path)

    files = {"task_type": "classification", "train_file": write("train.csv", 40), "test_file": write("test.csv", 20)}
    evaluating = {**TRAINING, "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "steps", "save_steps": 2,
                  "load_best_model_at_end": True, "metric_for_best_model": "eval_loss"}  # fmt: skip

    def run(data, out):
        raw = {"name": "t", "checkpoint": str(encoder_checkpoint), "output_dir": str(tmp_path / out), "max_length": 32, "doc_stride": 8,
               "data": data, "training": evaluating}  # fmt: skip
        seen = _EvaluatedRows()
        return run_finetuning(parse_finetune_recipe(raw), callbacks=[seen]), seen.sizes

    metrics, sizes = run({**files, "validation_file": write("validation.csv", 12)}, "with-file")
    assert sizes == [12, 12, 12]  # steps 2 and 4, then the kept model once more; never the 20 test rows
    assert (metrics["train_examples"], metrics["validation_examples"], metrics["test_examples"]) == (40, 12, 20)
    assert np.isfinite(metrics["validation_loss"]) and "test_accuracy" in metrics and "validation_accuracy" in metrics
    # no validation file: 10% of the training rows are carved off (seeded), and trained on no more
    metrics, sizes = run(files, "carved")
    assert (metrics["train_examples"], metrics["validation_examples"], metrics["test_examples"]) == (36, 4, 20)
    assert sizes == [4, 4, 4]
    with pytest.raises(RecipeError, match=r"needs validation data: give data.validation_file, set data.validation_"):
        run({**files, "validation_split": 0}, "none")
    with pytest.raises(RecipeError, match=r"validation_split=0.6 must be a fraction"):
        run({**files, "validation_split": 0.6}, "too-much")


def test_bad_inputs_stop_before_training(encoder_checkpoint, tokenizer, tmp_path):
    decoder = _save(SoraForCausalLM, tokenizer, tmp_path / "decoder")
    with pytest.raises(RecipeError, match="causal decoder"):
        run_finetuning(recipe(decoder, tmp_path / "a", {"embedded": "sentiment"}))
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\n好,pos\n差,neg\n", encoding="utf-8")
    with pytest.raises(ValueError, match="train.csv"):
        run_finetuning(
            recipe(encoder_checkpoint, tmp_path / "b", {"task_type": "classification", "train_file": str(train)})
        )
    with pytest.raises(RecipeError, match="exactly one of"):
        recipe(encoder_checkpoint, tmp_path / "c", {"embedded": "ner", "train_file": str(train)})
    with pytest.raises(RecipeError, match="'lora' or 'full'"):
        recipe(encoder_checkpoint, tmp_path / "d", {"embedded": "ner"}, method="qlora")
    with pytest.raises(RecipeError, match="did you mean 'learning_rate'"):
        parse_finetune_recipe(
            {
                "name": "x",
                "checkpoint": "c",
                "output_dir": "o",
                "data": {"embedded": "ner"},
                "training": {"learnin_rate": 1},
            }
        )
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_long_classification_texts_are_truncated_with_a_warning(encoder_checkpoint, tmp_path, caplog):
    train = tmp_path / "long.csv"
    rows = ["text,label"] + [f"{'很好' * 60},pos" if i % 2 else f"{'很差' * 3},neg" for i in range(24)]
    train.write_text("\n".join(rows), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="sora_hf.tasks"):
        run_finetuning(
            recipe(encoder_checkpoint, tmp_path / "o", {"task_type": "classification", "train_file": str(train)})
        )
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_token_classification_windows_cover_every_word(tokenizer):
    from datasets import Dataset

    words = list("新华社北京一月一日电国家主席江泽民发表新年讲话" * 3)
    tags = [i % 3 for i in range(len(words))]
    dataset = Dataset.from_dict({"tokens": [words], "tags": [tags]})
    features = encode_token_classification(dataset, tokenizer, max_length=20, doc_stride=6)
    assert len(features.dataset) > 3  # the sentence was split into overlapping windows
    # logits that say the gold tag: decoding must give every word its gold tag back, whichever window it came from
    logits = []
    for labels in features.dataset["labels"]:
        row = np.zeros((len(labels), 3), dtype=np.float32)
        for t, label in enumerate(labels):
            if label >= 0:
                row[t, label] = 1.0
        logits.append(row)
    assert decode_token_classification(logits, features, 1) == [tags]
    text, spans = join_words(["北京", "is", "great", "!"])
    assert text == "北京is great!" or text == "北京is great !"
    assert [text[s:e] for s, e in spans] == ["北京", "is", "great", "!"]


def test_causal_lm_fine_tuning_on_user_text(tokenizer, tmp_path):
    decoder_tokenizer = train_tokenizer(
        iter(load_pretraining_text("reviews")["text"][:2000]),
        vocab_size=1500,
        min_frequency=1,
        template="decoder",
        model_max_length=64,
    )
    checkpoint = _save(SoraForCausalLM, decoder_tokenizer, tmp_path / "decoder")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(load_pretraining_text("reviews")["text"][:400]), encoding="utf-8")
    out = tmp_path / "clm"
    metrics = run_finetuning(
        recipe(checkpoint, out, {"task_type": "causal_lm", "train_file": str(corpus)}, max_length=32, doc_stride=4)
    )
    assert metrics["test_perplexity"] > 1 and 0 <= metrics["test_next_token_accuracy"] <= 1
    assert (out / "adapter" / "adapter_config.json").exists()
    generated = pipeline("text-generation", model=str(out))("质量", max_new_tokens=5, do_sample=False)
    assert generated[0]["generated_text"].startswith("质量")
    encoder = _save(SoraForMaskedLM, decoder_tokenizer, tmp_path / "enc")
    with pytest.raises(RecipeError, match="not a causal decoder"):
        run_finetuning(recipe(encoder, tmp_path / "x", {"task_type": "causal_lm", "train_file": str(corpus)}))


def test_early_stopping_stops_when_the_validation_loss_stops_improving_and_keeps_the_best(
    encoder_checkpoint, tmp_path
):
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "\n".join(f"{'好评' if i % 2 else '差评'}{i},{i % 2}" for i in range(40)),
                     encoding="utf-8")  # fmt: skip

    def run(out, learning_rate, patience):
        raw = {"name": "t", "checkpoint": str(encoder_checkpoint), "output_dir": str(tmp_path / out), "max_length": 32,
               "doc_stride": 8, "early_stopping_patience": patience,
               "data": {"task_type": "classification", "train_file": str(train), "validation_split": 0.25},
               "training": {**TRAINING, "max_steps": -1, "num_train_epochs": 6, "learning_rate": learning_rate,
                            "per_device_train_batch_size": 10}}  # fmt: skip
        return run_finetuning(parse_finetune_recipe(raw))

    # learning rate 1e-30 (0 is refused: it trains nothing): the float32 weights never change, the loss never
    # improves on the first evaluation, so patience 1 stops after the second epoch and the kept model is the first
    # epoch's (3 steps of 10 rows)
    stopped = run("stopped", 1e-30, 1)
    assert (stopped["epochs_trained"], stopped["best_step"]) == (2.0, 3)
    assert run("patient", 1e-30, 3)["epochs_trained"] == 4.0
    assert run("learning", 5e-3, None)["epochs_trained"] == 6.0  # no early stopping: every epoch

    with pytest.raises(RecipeError, match="early_stopping_patience needs evaluations to stop on"):
        parse_finetune_recipe({"name": "t", "checkpoint": "c", "output_dir": "o", "early_stopping_patience": 2,
                               "data": {"embedded": "sentiment"}, "training": {"eval_strategy": "no"}})  # fmt: skip
    with pytest.raises(RecipeError, match="early_stopping_patience=0 must be at least 1"):
        parse_finetune_recipe({"name": "t", "checkpoint": "c", "output_dir": "o", "early_stopping_patience": 0,
                               "data": {"embedded": "sentiment"}})  # fmt: skip


def test_the_learning_rate_defaults_by_method_and_a_recipe_s_own_wins():
    from sora_hf.recipes import FINETUNE_LEARNING_RATE
    from sora_hf.runs.finetune_steps import training_kwargs

    def rate(method, training=None):
        raw = {"name": "t", "checkpoint": "c", "output_dir": "o", "method": method, "data": {"embedded": "sentiment"},
               "training": training or {}}  # fmt: skip
        return training_kwargs(parse_finetune_recipe(raw), "classification")["learning_rate"]

    assert rate("full") == FINETUNE_LEARNING_RATE["full"] and rate("lora") == FINETUNE_LEARNING_RATE["lora"]
    assert FINETUNE_LEARNING_RATE["lora"] > FINETUNE_LEARNING_RATE["full"]
    assert rate("lora", {"learning_rate": 1e-4}) == rate("full", {"learning_rate": 1e-4}) == 1e-4


@pytest.mark.parametrize("method", ["full", "lora"])
def test_head_learning_rate_trains_the_new_head_at_its_own_rate(encoder_checkpoint, tmp_path, method):
    """`head_learning_rate`: the classifier and CRF (LoRA: their trainable copies) move at their own rate while the
    encoder (LoRA: its adapter matrices) keeps the recipe's near-zero one; without it, the head would not move."""

    class Watch(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            self.lrs = sorted({group["initial_lr"] for group in optimizer.param_groups})  # before the warm-up
            self.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.moved = {
                n: (p.detach() - self.before[n]).abs().max().item()
                for n, p in model.named_parameters()
                if p.requires_grad
            }

    def run(head_learning_rate):
        watch = Watch()
        given = {"head_learning_rate": head_learning_rate} if head_learning_rate else {}
        raw = recipe(encoder_checkpoint, tmp_path / f"{method}-{head_learning_rate}", {"embedded": "ner"}, method,
                     model={"use_crf": True}, **given)  # fmt: skip
        raw.training.update(learning_rate=1e-9, max_steps=3)
        run_finetuning(raw, callbacks=[watch])
        head = {n: v for n, v in watch.moved.items() if "classifier" in n or "crf" in n}
        body = {n: v for n, v in watch.moved.items() if n not in head}
        assert head and body
        return watch.lrs, max(head.values()), max(body.values())

    lrs, head, body = run(1e-2)
    assert lrs == [1e-9, 1e-2]  # the schedule scales both groups from their own rates
    assert head > 1e-3 and body < 1e-6
    lrs, head_without, _ = run(None)
    assert lrs == [1e-9] and head_without < 1e-6


def test_head_learning_rate_must_be_positive():
    raw = {
        "name": "t",
        "checkpoint": "c",
        "output_dir": "o",
        "data": {"embedded": "sentiment"},
        "head_learning_rate": 0,
    }
    with pytest.raises(RecipeError, match="head_learning_rate=0"):
        parse_finetune_recipe(raw)
