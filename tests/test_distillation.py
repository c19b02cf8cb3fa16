"""Knowledge distillation: the loss terms against hand-computed values, the plain loss when the teacher is switched
off, gradient accumulation, the student built from chosen layers, the checks on the teacher, a non-Sora teacher,
and a run through the recipe path whose saved student is a plain checkpoint."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from helpers import random_batch, tiny_config_kwargs
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)
from transformers.modeling_outputs import TokenClassifierOutput

from sora_hf import SoraConfig, SoraForMaskedLM, SoraForSequenceClassification
from sora_hf.data import load_pretraining_text
from sora_hf.data.tasks import TaskInfo
from sora_hf.recipes import RecipeError, load_finetune_recipe, parse_finetune_recipe, recipes_dir
from sora_hf.runs import run_finetuning
from sora_hf.tokenizer import train_tokenizer
from sora_hf.training.distillation import (
    DistillationTrainer,
    hidden_state_loss,
    keep_layers,
    load_teacher,
    logit_distillation_loss,
    parse_distillation_options,
    soft_target_loss,
    uniform_layer_map,
)

LABELS = {0: "negative", 1: "positive"}
SENTIMENT = TaskInfo(name="sentiment", task_type="classification", label_names=["negative", "positive"])


def classifier(seed: int = 0, **overrides) -> SoraForSequenceClassification:
    torch.manual_seed(seed)
    config = SoraConfig(**tiny_config_kwargs(num_labels=2, id2label=LABELS, **overrides))
    return SoraForSequenceClassification(config)


def batch(size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    input_ids, attention_mask = random_batch(size, 10, seed=seed, pad_rows={1: 3})
    labels = torch.arange(size) % 2
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def trainer(tmp_path, student, teacher, train_dataset=None, **options) -> DistillationTrainer:
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        max_steps=1,
        optim="sgd",
        learning_rate=0.5,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
    )
    kwargs.update(options.pop("args", {}))
    return DistillationTrainer(
        model=student,
        args=TrainingArguments(**kwargs),
        train_dataset=train_dataset,
        data_collator=default_data_collator,
        teacher=teacher,
        distillation=parse_distillation_options({"teacher": "unused", **options}),
    )


def hand_kl(teacher_row: list[float], student_row: list[float], temperature: float) -> float:
    """KL(p || q) with p, q the tempered softmaxes, written out term by term."""

    def softmax(row):
        exps = [math.exp(x / temperature) for x in row]
        return [e / sum(exps) for e in exps]

    p, q = softmax(teacher_row), softmax(student_row)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def test_soft_target_loss_is_the_tempered_kl_times_t_squared():
    teacher = [[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]]
    student = [[0.5, 0.5, -2.0], [1.0, -1.0, 1.0]]
    expected = (hand_kl(teacher[0], student[0], 3.0) + hand_kl(teacher[1], student[1], 3.0)) / 2 * 9.0
    got = soft_target_loss(torch.tensor(student), torch.tensor(teacher), temperature=3.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert soft_target_loss(torch.tensor(teacher), torch.tensor(teacher), 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_token_logits_are_distilled_only_where_labels_are_set():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    labels = torch.tensor([[0, -100, 2, 1], [-100, -100, 1, -100]])
    inputs = {"labels": labels, "attention_mask": torch.ones(2, 4)}
    got = logit_distillation_loss(
        TokenClassifierOutput(logits=student), TokenClassifierOutput(logits=teacher), inputs, 2.0, None
    )
    kept = [(b, i) for b in range(2) for i in range(4) if labels[b, i] != -100]
    expected = sum(hand_kl(teacher[b, i].tolist(), student[b, i].tolist(), 2.0) for b, i in kept) / len(kept) * 4
    assert got.item() == pytest.approx(expected, rel=1e-5)
    student[labels == -100] = 50.0  # unlabelled positions (padding, sub-words) do not count
    same = logit_distillation_loss(
        TokenClassifierOutput(logits=student), TokenClassifierOutput(logits=teacher), inputs, 2.0, None
    )
    assert same.item() == pytest.approx(got.item(), rel=1e-6)


def test_answer_spans_are_distilled_over_real_tokens_for_start_and_end():
    from transformers.modeling_outputs import QuestionAnsweringModelOutput

    torch.manual_seed(1)
    s_start, s_end, t_start, t_end = (torch.randn(2, 5) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    got = logit_distillation_loss(
        QuestionAnsweringModelOutput(start_logits=s_start, end_logits=s_end),
        QuestionAnsweringModelOutput(start_logits=t_start, end_logits=t_end),
        {"attention_mask": mask},
        1.0,
        None,
    )
    expected = 0.0
    for student, teacher in ((s_start, t_start), (s_end, t_end)):
        for row in range(2):
            real = int(mask[row].sum())
            expected += hand_kl(teacher[row, :real].tolist(), student[row, :real].tolist(), 1.0) / 4
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_multi_label_logits_use_the_bernoulli_kl_per_label():
    from transformers.modeling_outputs import SequenceClassifierOutput

    student, teacher = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.0]])
    got = logit_distillation_loss(
        SequenceClassifierOutput(logits=student),
        SequenceClassifierOutput(logits=teacher),
        {},
        2.0,
        "multi_label_classification",
    )
    expected = sum(hand_kl([t, 0.0], [s, 0.0], 2.0) for s, t in zip([0.5, -1.0], [2.0, 0.0], strict=True)) / 2 * 4
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_training_loss_mixes_hard_labels_and_soft_targets(tmp_path):
    student, teacher = classifier(0), classifier(1, num_hidden_layers=3)
    inputs = batch()
    distiller = trainer(tmp_path, student, teacher, alpha=0.3, temperature=2.0)
    student.train()
    loss = distiller.compute_loss(student, inputs)
    with torch.no_grad():
        s = student(**inputs).logits
        t = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    hard = F.cross_entropy(s, inputs["labels"]).item()
    soft = sum(hand_kl(t[i].tolist(), s[i].tolist(), 2.0) for i in range(4)) / 4 * 4.0
    assert soft > 1e-4
    assert loss.item() == pytest.approx(0.7 * hard + 0.3 * soft, rel=1e-5)


def test_alpha_zero_gives_exactly_the_plain_loss_and_gradients(tmp_path):
    inputs = batch()
    plain_model = classifier(0)
    plain = Trainer(model=plain_model, args=TrainingArguments(str(tmp_path / "p"), report_to="none", use_cpu=True))
    plain_model.train()
    plain_loss = plain.compute_loss(plain_model, inputs)
    plain_loss.backward()

    student = classifier(0)
    distiller = trainer(tmp_path, student, classifier(1), alpha=0.0, hidden_weight=0.0)
    student.train()
    loss = distiller.compute_loss(student, inputs)
    loss.backward()
    assert torch.equal(loss, plain_loss)
    for (name, a), b in zip(plain_model.named_parameters(), student.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), name


def test_hidden_and_soft_losses_vanish_for_a_copy_of_the_teacher(tmp_path):
    teacher = classifier(1)
    student = copy.deepcopy(teacher)
    distiller = trainer(tmp_path, student, teacher, alpha=1.0, hidden_weight=1.0, layer_map=[[0, 0], [1, 1], [2, 2]])
    student.train()
    assert isinstance(distiller.projections[0], torch.nn.Identity)
    assert distiller.compute_loss(student, batch()).item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        student.model.layers[1].mlp.down_proj.weight.mul_(2.0)
    assert distiller.compute_loss(student, batch()).item() > 1e-4


def test_uniform_layer_map_pairs_evenly_spaced_layers():
    assert uniform_layer_map(2, 4) == ((1, 2), (2, 4))
    assert uniform_layer_map(3, 12) == ((1, 4), (2, 8), (3, 12))
    assert uniform_layer_map(2, 2) == ((1, 1), (2, 2))


def test_hidden_state_loss_counts_only_real_tokens():
    states = [torch.zeros(2, 3, 4)]
    teacher = [torch.zeros(2, 3, 4)]
    teacher[0][1, 2] = 10.0  # a padding position
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    identity = torch.nn.ModuleList([torch.nn.Identity()])
    assert hidden_state_loss(states, teacher, [(0, 0)], identity, mask).item() == 0.0
    teacher[0][1, 1] = 1.0  # a real one: 4 squared errors of 1 over 4 dims, one of 5 real tokens
    assert hidden_state_loss(states, teacher, [(0, 0)], identity, mask).item() == pytest.approx(1 / 5)


def test_student_layers_copy_the_chosen_teacher_layers():
    teacher = classifier(1, num_hidden_layers=4).eval()
    student = keep_layers(teacher, [0, 2]).eval()
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert student.config.num_decoder_layers == 2
    assert teacher.config.num_hidden_layers == 4
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for new, old in ((0, 0), (1, 2)):
        for key in [k for k in s_state if k.startswith(f"model.layers.{new}.")]:
            assert torch.equal(s_state[key], t_state[key.replace(f"layers.{new}.", f"layers.{old}.", 1)]), key
    for key in [k for k in s_state if not k.startswith("model.layers.")]:
        assert torch.equal(s_state[key], t_state[key]), key
    inputs = batch()
    with torch.no_grad():
        whole = keep_layers(teacher, [0, 1, 2, 3])(**inputs).logits
        torch.testing.assert_close(whole, teacher(**inputs).logits, rtol=0, atol=0)
    with pytest.raises(RecipeError, match=r"layer\(s\) \[4\].*4 layers"):
        keep_layers(teacher, [0, 4])


def _dataset(n: int = 8) -> Dataset:
    # no padding: each loss is a mean over its micro-batch, so equal token counts make k * n the same as n * k
    input_ids, attention_mask = random_batch(n, 10, seed=3)
    return Dataset.from_dict(
        {
            "input_ids": input_ids.tolist(),
            "attention_mask": attention_mask.tolist(),
            "labels": [i % 2 for i in range(n)],
        }
    )


def _train_once(tmp_path, batch_size: int, accumulation: int):
    teacher = classifier(1, hidden_size=48, num_hidden_layers=4)
    distiller = trainer(
        tmp_path,
        classifier(0),
        teacher,
        _dataset(),
        alpha=0.5,
        hidden_weight=1.0,
        args={
            "per_device_train_batch_size": batch_size,
            "gradient_accumulation_steps": accumulation,
            "logging_steps": 1,
        },
    )
    distiller.train()
    return distiller


def test_gradient_accumulation_averages_micro_batches_and_the_projection_trains(tmp_path):
    whole = _train_once(tmp_path / "a", batch_size=8, accumulation=1)
    halves = _train_once(tmp_path / "b", batch_size=4, accumulation=2)
    initial = classifier(0)
    assert isinstance(whole.projections[0], torch.nn.Linear)
    assert [p.shape for p in whole.projections[0].parameters()] == [(48, 32), (48,)]
    for (name, a), b in zip(whole.model.named_parameters(), halves.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    assert not torch.equal(whole.model.classifier.out_proj.weight, initial.classifier.out_proj.weight)
    for a, b in zip(whole.projections.parameters(), halves.projections.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    logged = [h for h in whole.state.log_history if "distill_kd_loss" in h]
    assert logged and logged[0]["distill_hidden_loss"] > 0


def test_saved_student_is_a_plain_checkpoint_that_reloads(tmp_path):
    distiller = _train_once(tmp_path, batch_size=8, accumulation=1)
    distiller.save_model(str(tmp_path / "student"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    assert set(reloaded.state_dict()) == set(classifier(0).state_dict())
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, distiller.model.eval()(**inputs).logits)


@pytest.fixture(scope="module")
def tokenizer():
    texts = load_pretraining_text("reviews")["text"][:1500]
    return train_tokenizer(iter(texts), vocab_size=400, min_frequency=1, model_max_length=64)


def _save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _student_for(tokenizer):
    return classifier(0, vocab_size=len(tokenizer))


def test_teacher_with_another_tokenizer_label_set_or_no_head_is_refused(tokenizer, tmp_path):
    other = train_tokenizer(iter(["完全不同的文本"] * 20 + ["other words here"] * 20), vocab_size=120, min_frequency=1)
    student = _student_for(tokenizer)
    tokenizer.name_or_path = "student-folder"
    teacher = _save(classifier(1, vocab_size=len(tokenizer)), other, tmp_path / "t1")
    with pytest.raises(RecipeError, match=r"teacher .*t1 and the student student-folder have different tokenizers"):
        load_teacher(parse_distillation_options({"teacher": teacher}), SENTIMENT, student, tokenizer)

    relabelled = classifier(1, vocab_size=len(tokenizer))
    relabelled.config.id2label = {0: "bad", 1: "good"}
    teacher = _save(relabelled, tokenizer, tmp_path / "t2")
    with pytest.raises(RecipeError, match=r"labels \['bad', 'good'\].*\['negative', 'positive'\]"):
        load_teacher(parse_distillation_options({"teacher": teacher}), SENTIMENT, student, tokenizer)

    torch.manual_seed(0)
    encoder = SoraForMaskedLM(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer))))
    teacher = _save(encoder, tokenizer, tmp_path / "t3")
    with pytest.raises(RecipeError, match="has no weights for.*fine-tuned for the classification task"):
        load_teacher(parse_distillation_options({"teacher": teacher}), SENTIMENT, student, tokenizer)


def test_a_bert_teacher_with_the_same_tokenizer_teaches_a_narrower_sora(tokenizer, tmp_path):
    torch.manual_seed(2)
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=96,
            max_position_embeddings=64,
            id2label=LABELS,
            label2id={v: k for k, v in LABELS.items()},
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    path = _save(bert, tokenizer, tmp_path / "bert")
    student = _student_for(tokenizer)
    teacher = load_teacher(parse_distillation_options({"teacher": path}), SENTIMENT, student, tokenizer)
    assert isinstance(teacher, BertForSequenceClassification) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())

    distiller = trainer(tmp_path, student, teacher, alpha=1.0, temperature=1.5, hidden_weight=0.0)
    encoded = tokenizer(["质量很好，非常满意", "太差了"], padding=True, return_tensors="pt")
    inputs = {**encoded, "labels": torch.tensor([1, 0])}
    student.train()
    loss = distiller.compute_loss(student, inputs)
    with torch.no_grad():
        s = student(**inputs).logits
        t = bert.eval()(**encoded).logits  # the saved BERT, dropout off
    expected = sum(hand_kl(t[i].tolist(), s[i].tolist(), 1.5) for i in range(2)) / 2 * 1.5**2
    assert loss.item() == pytest.approx(expected, rel=1e-4)  # float32 KL of near-equal distributions

    wide = trainer(tmp_path, student, teacher, alpha=0.5, hidden_weight=1.0)
    assert wide.layer_pairs == ((1, 1), (2, 2))
    assert all(p.in_features == 32 and p.out_features == 48 for p in wide.projections)


class LogRecorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_recipe_distils_a_lora_student_built_from_chosen_layers(tokenizer, tmp_path):
    torch.manual_seed(0)
    encoder = SoraForMaskedLM(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), num_hidden_layers=3)))
    checkpoint = _save(encoder, tokenizer, tmp_path / "encoder")
    teacher = _save(classifier(1, vocab_size=len(tokenizer), num_hidden_layers=4), tokenizer, tmp_path / "teacher")
    raw = {
        "name": "distil",
        "checkpoint": checkpoint,
        "output_dir": str(tmp_path / "run"),
        "method": "lora",
        "max_length": 48,
        "doc_stride": 8,
        "data": {"embedded": "sentiment", "max_train_examples": 32, "max_eval_examples": 16},
        "training": {
            "max_steps": 2,
            "per_device_train_batch_size": 8,
            "gradient_accumulation_steps": 2,
            "logging_steps": 1,
            "disable_tqdm": True,
        },
        "distillation": {"teacher": teacher, "student_layers": [0, 2], "hidden_weight": 0.5, "alpha": 0.7},
    }
    recorder = LogRecorder()
    metrics = run_finetuning(parse_finetune_recipe(raw), callbacks=[recorder])
    assert metrics["distillation"]["layer_map"] == [[1, 2], [2, 4]]
    assert metrics["distillation"]["student_layers"] == [0, 2]
    assert metrics["distillation"]["projection_parameters"] == 0  # same width: identity
    assert metrics["total_parameters"] < metrics["distillation"]["teacher_parameters"]
    terms = [log for log in recorder.logs if "distill_kd_loss" in log]
    assert len(terms) == 2 and all(t["distill_kd_loss"] > 0 and t["distill_hidden_loss"] > 0 for t in terms)

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert saved.config.num_hidden_layers == 2
    assert not any("teacher" in k or "projection" in k or "lora" in k for k in saved.state_dict())
    # the untouched embedding of the pre-trained encoder is where the student started
    assert torch.equal(saved.model.embed_tokens.weight, encoder.model.embed_tokens.weight)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"teacher": "t", "temprature": 2}, r"distillation.temprature.*did you mean 'temperature'"),
        ({"alpha": 0.5}, r"distillation.teacher=None must name the teacher"),
        ({"teacher": "t", "temperature": 0}, r"distillation.temperature=0 must be > 0"),
        ({"teacher": "t", "alpha": 1.5}, r"distillation.alpha=1.5 must be in \[0, 1\]"),
        ({"teacher": "t", "hidden_weight": "x"}, r"distillation.hidden_weight='x' must be a number"),
        ({"teacher": "t", "layer_map": "even"}, r"distillation.layer_map='even' must be 'uniform' or a list"),
        ({"teacher": "t", "layer_map": [[1, 2, 3]]}, r"distillation.layer_map=\[\[1, 2, 3\]\]"),
        ({"teacher": "t", "student_layers": [2, 0]}, r"distillation.student_layers=\[2, 0\] .*strictly increasing"),
    ],
)
def test_bad_distillation_sections_are_refused_when_the_recipe_is_read(tmp_path, section, message):
    raw = {"name": "x", "checkpoint": "c", "output_dir": str(tmp_path), "data": {"embedded": "sentiment"}}
    with pytest.raises(RecipeError, match=message):
        parse_finetune_recipe({**raw, "distillation": section})


def test_shipped_distillation_recipe_reads():
    recipe = load_finetune_recipe(recipes_dir() / "finetune" / "sentiment-distill.yaml")
    options = recipe.distillation
    assert options.student_layers == (0, 2) and options.teacher == "runs/cmp/sentiment-full"
