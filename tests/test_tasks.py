"""The task registry: one `Task` per task type with every hook, an unknown type named with the valid ones, and a
round trip encode -> collate -> predict -> score that gives what a fine-tuning run wrote (and, on a random model,
what the model says about each example alone)."""

import numpy as np
import pytest
import torch
from helpers import tiny_config_kwargs

from sora_hf import SoraConfig, SoraForSequenceClassification, SoraForTokenClassification
from sora_hf.data.tasks import EMBEDDED_TASK_TYPES, EMBEDDED_TASKS, TASK_TYPES, TaskInfo
from sora_hf.recipes import RecipeError, parse_finetune_recipe
from sora_hf.runs import run_finetuning
from sora_hf.runs.finetune_steps import load_task
from sora_hf.tasks import TASKS, Task, get_task, task_types

HOOKS = ("check_config", "model_kwargs", "encode", "collator", "predict", "score", "write_reports")


def test_the_registry_covers_the_six_task_types_in_the_data_schema_order():
    assert tuple(TASKS) == TASK_TYPES
    assert len(TASKS) == 6
    for name, task in TASKS.items():
        assert isinstance(task, Task) and task.name == name and get_task(name) is task
    assert set(EMBEDDED_TASK_TYPES) == set(EMBEDDED_TASKS)
    assert set(EMBEDDED_TASK_TYPES.values()) <= set(TASKS)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_its_hooks_and_facts(name):
    task = TASKS[name]
    for hook in HOOKS:
        assert callable(getattr(task, hook)), hook
    for own in ("encode", "_predict", "score"):  # the abstract hooks are each task's own
        assert getattr(type(task), own) is not getattr(Task, own), own
    assert task.auto_class.__name__ == task.auto_class_name and task.auto_class_name.startswith("AutoModel")
    assert isinstance(task.pipeline_tag, str) and task.pipeline_tag
    assert isinstance(task.perturbed_columns, tuple)
    for flag in ("perturbs_tagged_tokens", "distillable", "multitask_head", "has_label_names", "has_problem_type"):
        assert isinstance(getattr(task, flag), bool), flag
    if task.perturbed_columns:  # robustness judges a perturbed split by the headline metric
        info = TaskInfo("t", name, ["a", "b"] if task.has_label_names else None, problem_type=None)
        assert task.headline_metric(info).startswith("test_")


def test_the_flags_give_the_tables_they_replace():
    assert task_types(lambda t: t.distillable) == (
        "classification",
        "token_classification",
        "question_answering",
        "causal_lm",
    )
    assert task_types(lambda t: t.multitask_head) == ("classification", "token_classification", "question_answering")
    assert task_types(lambda t: not t.perturbed_columns) == ("causal_lm",)
    assert {n: t.pipeline_tag for n, t in TASKS.items()} == {
        "classification": "text-classification",
        "token_classification": "token-classification",
        "question_answering": "question-answering",
        "seq2seq": "text2text-generation",
        "similarity": "sentence-similarity",
        "causal_lm": "text-generation",
    }
    classification = get_task("classification")
    for problem, metric in (
        (None, "test_accuracy"),
        ("single_label_classification", "test_accuracy"),
        ("multi_label_classification", "test_f1_micro"),
        ("regression", "test_spearman"),
    ):
        assert classification.headline_metric(TaskInfo("t", "classification", ["a"], problem)) == metric


def test_an_unknown_task_type_names_the_valid_ones():
    with pytest.raises(RecipeError, match="unknown task type 'nope'") as caught:
        get_task("nope")
    assert isinstance(caught.value, ValueError)
    for name in TASKS:
        assert name in str(caught.value)
    with pytest.raises(RecipeError, match="unknown task type None"):
        get_task(None)


def test_multitask_head_specs():
    sentiment = TaskInfo("s", "classification", ["neg", "pos"], "single_label_classification")
    assert get_task("classification").multitask_head_spec(sentiment) == {
        "labels": ["neg", "pos"],
        "problem_type": "single_label_classification",
    }
    score = TaskInfo("s", "classification", ["score"], "regression")
    assert get_task("classification").multitask_head_spec(score)["labels"] == ["score"]
    ner = TaskInfo("n", "token_classification", ["O", "B-PER"], tag_scheme="BIO")
    assert get_task("token_classification").multitask_head_spec(ner) == {"labels": ["O", "B-PER"], "tag_scheme": "BIO"}
    assert get_task("question_answering").multitask_head_spec(TaskInfo("q", "question_answering")) == {}
    with pytest.raises(RecipeError, match="seq2seq has no multi-task head"):
        get_task("seq2seq").multitask_head_spec(TaskInfo("p", "seq2seq"))


# ---------------------------------------------------------------------------------------------------------------
# round trips

TRAINING = {
    "max_steps": 3,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "logging_steps": 1,
    "learning_rate": 3e-3,
    "disable_tqdm": True,
}


def _recipe(checkpoint, out, embedded):
    return parse_finetune_recipe(
        {
            "name": "roundtrip",
            "checkpoint": str(checkpoint),
            "output_dir": str(out),
            "method": "full",
            "max_length": 40,
            "doc_stride": 8,
            "data": {"embedded": embedded, "max_train_examples": 24, "max_eval_examples": 12},
            "training": dict(TRAINING),
        }
    )


def _scalars(metrics):
    return {k: v for k, v in metrics.items() if k.startswith("test_") and isinstance(v, int | float)}


@pytest.mark.parametrize("embedded", ["sentiment", "ner"])
def test_the_registry_round_trip_gives_what_fine_tuning_wrote(encoder_checkpoint, tokenizer, tmp_path, embedded):
    out = tmp_path / "run"
    recipe = _recipe(encoder_checkpoint, out, embedded)
    written = run_finetuning(recipe)
    dataset, info = load_task(recipe)
    task = get_task(info.task_type)
    model = task.auto_class.from_pretrained(out)
    test = dataset["test"]
    features = task.encode(recipe, info, test, tokenizer, "test")
    collator = task.collator(tokenizer, model)
    predictions = task.predict(
        model, features, collator, tokenizer, test, TRAINING["per_device_eval_batch_size"], recipe
    )
    metrics = task.score(info, test, predictions)
    scores = _scalars(metrics)
    assert scores and scores == {k: written[k] for k in scores}
    reports = tmp_path / "reports"
    reports.mkdir()
    task.write_reports(reports, info, test, predictions, metrics)
    assert (reports / "predictions.jsonl").read_text(encoding="utf-8") == (out / "predictions.jsonl").read_text(
        encoding="utf-8"
    )
    extra = "confusion_matrix.png" if embedded == "sentiment" else "entity_report.txt"
    assert (reports / extra).exists() and (out / extra).exists()


def _random(model_class, tokenizer, labels):
    torch.manual_seed(0)
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer)), num_labels=len(labels))
    return model_class(config).eval()


def test_classification_round_trip_on_a_random_model_equals_each_example_alone(tokenizer):
    from datasets import Dataset

    texts = ["质量很好，非常满意", "太差了", "物流很快，包装也不错，下次还来", "一般", "客服态度很差，不推荐购买"]
    test = Dataset.from_dict({"text": texts, "label": [1, 0, 1, 0, 0]})
    info = TaskInfo("t", "classification", ["negative", "positive"], "single_label_classification")
    recipe = parse_finetune_recipe(
        {"name": "x", "checkpoint": "c", "output_dir": "o", "data": {"embedded": "sentiment"}}
    )
    task = get_task("classification")
    model = _random(SoraForSequenceClassification, tokenizer, info.label_names)
    features = task.encode(recipe, info, test, tokenizer)
    logits = task.predict(model, features, task.collator(tokenizer, model), tokenizer, test, 2, recipe)
    with torch.no_grad():
        alone = np.stack([model(**tokenizer(t, return_tensors="pt")).logits[0].numpy() for t in texts])
    np.testing.assert_allclose(logits, alone, rtol=1e-4, atol=1e-5)
    accuracy = float(np.mean(alone.argmax(-1) == np.array(test["label"])))
    assert task.score(info, test, logits)["test_accuracy"] == pytest.approx(accuracy)


def test_similarity_pair_batch_loss_and_cosines_equal_each_sentence_embedded_alone(tokenizer):
    """Both sides of every pair go through one forward (PairCollator pads them together); the cosines the task
    predicts and the CoSENT loss it trains with equal those of each sentence embedded alone, with no padding."""
    from datasets import Dataset

    from sora_hf import SoraForSentenceEmbedding
    from sora_hf.tasks.similarity import pair_loss

    a = ["质量很好，非常满意", "太差了", "物流很快，包装也不错"]
    b = ["非常满意", "客服态度很差，不推荐购买", "一般"]
    scores = [0.9, 0.1, 0.5]
    test = Dataset.from_dict({"text": a, "text_pair": b, "label": scores})
    info = TaskInfo("t", "similarity", None, None)
    recipe = parse_finetune_recipe(
        {"name": "x", "checkpoint": "c", "output_dir": "o", "data": {"embedded": "sentiment"}}
    )
    task = get_task("similarity")
    model = _random(SoraForSentenceEmbedding, tokenizer, ["score"])
    features = task.encode(recipe, info, test, tokenizer)
    collator = task.collator(tokenizer, model)
    cosines = task.predict(model, features, collator, tokenizer, test, 2, recipe)
    with torch.no_grad():
        embed = [model(**tokenizer(t, return_tensors="pt")).embeddings[0] for t in a + b]
        alone = torch.stack([torch.cosine_similarity(embed[i], embed[i + 3], dim=0) for i in range(3)])
        np.testing.assert_allclose(cosines, alone.numpy(), rtol=1e-4, atol=1e-5)
        # CoSENT by its definition: log(1 + sum over pairs (i, j) with label_i > label_j of e^(20 (cos_j - cos_i)))
        terms = [20 * (alone[j] - alone[i]) for i in range(3) for j in range(3) if scores[i] > scores[j]]
        reference = torch.log(1 + torch.exp(torch.stack(terms)).sum())
        batch = collator([features.dataset[i] for i in range(3)])
        labels = batch.pop("labels")
        loss = pair_loss(model(**batch), labels)
        torch.testing.assert_close(loss, reference, rtol=1e-4, atol=1e-5)
        # under gradient accumulation the micro-batch weighs its share of the accumulated pairs
        torch.testing.assert_close(pair_loss(model(**batch), labels, num_items_in_batch=6), loss / 2)


def test_token_classification_round_trip_on_a_random_model_equals_each_window_alone(tokenizer):
    from datasets import Dataset

    from sora_hf.data import NER_LABELS

    words = [list("江泽民在北京会见了客人"), list("新华社报道"), list("今天天气很好")]
    tags = [[1, 2, 2, 0, 3, 4, 0, 0, 0, 0, 0], [5, 6, 6, 0, 0], [0] * 6]
    test = Dataset.from_dict({"tokens": words, "tags": tags})
    info = TaskInfo("n", "token_classification", list(NER_LABELS), tag_scheme="BIO")
    recipe = parse_finetune_recipe({"name": "x", "checkpoint": "c", "output_dir": "o", "data": {"embedded": "ner"}})
    task = get_task("token_classification")
    model = _random(SoraForTokenClassification, tokenizer, info.label_names)
    features = task.encode(recipe, info, test, tokenizer)
    predictions = task.predict(model, features, task.collator(tokenizer, model), tokenizer, test, 2, recipe)
    expected = [[0] * len(w) for w in words]
    with torch.no_grad():
        for row, meta in zip(features.dataset, features.meta, strict=True):
            ids = torch.tensor([row["input_ids"]])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
            for t, w in enumerate(meta["word_of_token"]):
                if w >= 0:
                    expected[meta["example"]][w] = int(logits[t].argmax())
    assert predictions == expected  # one window per sentence here, so each word's tag comes from its only window
    flat = [p == r for pr, rr in zip(predictions, tags, strict=True) for p, r in zip(pr, rr, strict=True)]
    metrics = task.score(info, test, predictions)
    assert metrics["test_token_accuracy"] == pytest.approx(float(np.mean(flat)))
    assert {"test_overall_f1", "test_per_type"} <= set(metrics)


def test_the_registry_and_the_recipe_schema_read_the_task_facts_from_their_one_home():
    """The task types are defined once (sora_hf.validation.choices, torch-free, for the recipe schema); the
    multi-task head types once, in SoraConfig, which the schema reads from its source without importing it."""
    from sora_hf.configuration_sora import MULTITASK_TYPES
    from sora_hf.recipes.sources import multitask_head_types
    from sora_hf.tasks import task_types
    from sora_hf.validation.choices import TASK_TYPES

    assert task_types() == TASK_TYPES
    assert multitask_head_types() == task_types(lambda task: task.multitask_head) == MULTITASK_TYPES
    assert task_types(lambda task: task.multitask_head) == (
        "classification",
        "token_classification",
        "question_answering",
    )


def _wordpiece(pieces):
    """A BERT WordPiece tokenizer over `pieces` (as bert-base-chinese keeps `mba` and `1998` as single pieces)."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces]
    return BertTokenizerFast(vocab={piece: i for i, piece in enumerate(vocab)})


@pytest.mark.parametrize(
    "scheme,names,gold",
    [
        (
            "BIO",
            ["O", "B-ORG", "I-ORG"],
            ["O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "O", "O", "O", "O", "O"],
        ),
        ("BMES", ["B", "M", "E", "S"], ["S", "S", "B", "M", "E", "S", "B", "E", "B", "M", "M", "E", "S"]),
    ],
)
def test_latin_letters_and_digits_are_tokenised_in_training_as_the_pipeline_tokenises_them(
    tmp_path, scheme, names, gold
):
    """A character-level corpus splits `MBA` and `1998` into characters; training sees the text as written (the
    token ids the pipeline gets for it), a token over several characters is trained on their combined tag, and
    prediction gives each character its tag back."""
    from datasets import Dataset

    from sora_hf.tasks.token_classification import (
        continuation_tags,
        decode_token_classification,
        encode_token_classification,
    )

    tokenizer = _wordpiece(["他", "在", "班", "学", "习", "年", "mba", "1998"])
    words = list("他在MBA班学习1998年")
    tags = [names.index(t) for t in gold]
    features = encode_token_classification(
        Dataset.from_dict({"tokens": [words], "tags": [tags]}), tokenizer, 32, 8, names
    )
    assert features.dataset["input_ids"] == [tokenizer("他在MBA班学习1998年")["input_ids"]]
    labels = features.dataset["labels"][0]
    mba = tokenizer.convert_tokens_to_ids("mba")
    trained_as = names[labels[features.dataset["input_ids"][0].index(mba)]]
    assert trained_as == {"BIO": "B-ORG", "BMES": "S"}[scheme]  # BMES: the token mba is the whole word MBA
    logits = [np.eye(len(names), dtype=np.float32)[[max(label, 0) for label in labels]]]
    decoded = decode_token_classification(logits, features, 1, dict(enumerate(names)))
    assert [names[t] for t in decoded[0]] == gold
    assert continuation_tags("S", 3, {"B", "M", "E", "S"}) == ["B", "M", "E"]
    assert continuation_tags("E-LOC", 2, {"O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"}) == ["I-LOC", "E-LOC"]
    assert continuation_tags("B-PER", 3, {"O", "B-PER", "I-PER"}) == ["B-PER", "I-PER", "I-PER"]
