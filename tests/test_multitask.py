"""Multi-task learning: one shared encoder with a head per task whose outputs match the single-task heads, a config
that round-trips, task sampling that follows its formula, uncertainty weighting equal to a hand computation, a
recipe run that scores each task and reloads (Auto class, remote code, pipeline), and clear errors."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import random_batch, tiny_config_kwargs
from transformers import AutoTokenizer, pipeline

from sora_hf import (
    AutoModelForMultiTask,
    SoraConfig,
    SoraForMaskedLM,
    SoraForMultiTask,
    SoraForQuestionAnswering,
    SoraForSequenceClassification,
    SoraForTokenClassification,
)
from sora_hf.pipelines.multitask import group_entities
from sora_hf.recipes import RecipeError, parse_multitask_recipe
from sora_hf.runs import run_multitask
from sora_hf.training.multitask import (
    MultiTaskCollator,
    MultiTaskDataset,
    TaskBatchSampler,
    task_probabilities,
)

TASKS = {
    "sentiment": {"type": "classification", "labels": ["negative", "positive"]},
    "ner": {"type": "token_classification", "labels": ["O", "B-PER", "I-PER"], "tag_scheme": "BIO"},
    "qa": {"type": "question_answering"},
}


def multitask_model(**overrides) -> SoraForMultiTask:
    torch.manual_seed(0)
    return SoraForMultiTask(SoraConfig(**tiny_config_kwargs(**{"tasks": TASKS, **overrides}))).eval()


# ---------------------------------------------------------------------------------------------------------------
# config and model


def test_config_tasks_round_trip_and_bad_specs_name_the_task(tmp_path):
    config = SoraConfig(**tiny_config_kwargs(tasks=TASKS, task_loss_weighting="uncertainty"))
    config.save_pretrained(tmp_path)
    reloaded = SoraConfig.from_pretrained(tmp_path)
    assert reloaded.tasks == TASKS and reloaded.task_loss_weighting == "uncertainty"
    bad = {
        "classifier": ({"sentiment": {"type": "classifier", "labels": ["a"]}}, "tasks['sentiment'].type"),
        "labels": ({"ner": {"type": "token_classification", "labels": []}}, "tasks['ner'].labels"),
        "duplicate": ({"ner": {"type": "token_classification", "labels": ["O", "O"]}}, "tasks['ner'].labels"),
        "name": ({"my-task": {"type": "question_answering"}}, "Python identifier"),
        "key": ({"qa": {"type": "question_answering", "lables": ["x"]}}, "unknown keys ['lables']"),
        "weight": ({"qa": {"type": "question_answering", "loss_weight": 0}}, "tasks['qa'].loss_weight=0"),
    }
    for tasks, message in bad.values():
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            SoraConfig(**tiny_config_kwargs(tasks=tasks))
    with pytest.raises(ValueError, match="task_loss_weighting='learned'"):
        SoraConfig(**tiny_config_kwargs(task_loss_weighting="learned"))


def test_each_head_equals_the_single_task_head_with_the_same_weights():
    """A multi-task head computes what the single-task model computes (logits and loss) from the same weights."""
    model = multitask_model()
    ids, mask = random_batch(3, 10, pad_rows={1: 3})
    encoder = {f"model.{k}": v for k, v in model.model.state_dict().items()}
    cases = {
        "sentiment": (SoraForSequenceClassification, "classifier", {"labels": torch.tensor([0, 1, 1])}),
        "ner": (SoraForTokenClassification, "classifier", {"labels": torch.randint(0, 3, (3, 10))}),
        "qa": (
            SoraForQuestionAnswering,
            "qa_outputs",
            {"start_positions": torch.tensor([1, 2, 3]), "end_positions": torch.tensor([2, 4, 3])},
        ),
    }
    for task, (single_class, head_name, targets) in cases.items():
        spec = TASKS[task]
        single = single_class(SoraConfig(**tiny_config_kwargs(num_labels=len(spec.get("labels", [0, 1]))))).eval()
        head = {f"{head_name}.{k}": v for k, v in model.heads[task].state_dict().items()}
        missing, unexpected = single.load_state_dict({**encoder, **head}, strict=False)
        assert not missing and not unexpected, (task, missing, unexpected)
        with torch.no_grad():
            expected = single(input_ids=ids, attention_mask=mask, **targets)
            got = model(input_ids=ids, attention_mask=mask, task=task, **targets)
        for key in ("logits", "start_logits", "end_logits"):
            if getattr(expected, key, None) is not None:
                torch.testing.assert_close(got[key], expected[key])
        torch.testing.assert_close(got.task_loss, expected.loss)
        torch.testing.assert_close(got.loss, expected.loss)  # fixed weighting, weight 1


def test_loss_weighting_fixed_and_uncertainty_match_hand_computation():
    ids, mask = random_batch(3, 10)
    labels = torch.tensor([0, 1, 0])
    weighted = multitask_model(tasks={**TASKS, "sentiment": {**TASKS["sentiment"], "loss_weight": 0.25}})
    out = weighted(input_ids=ids, attention_mask=mask, task="sentiment", labels=labels)
    torch.testing.assert_close(out.loss, 0.25 * out.task_loss)

    model = multitask_model(task_loss_weighting="uncertainty").train()
    model.config.hidden_dropout = model.config.classifier_dropout = 0.0
    with torch.no_grad():
        model.task_uncertainty.log_variances[model.task_names.index("sentiment")] = 0.7
    out = model(input_ids=ids, attention_mask=mask, task="sentiment", labels=labels)
    task_loss = float(out.task_loss.detach())
    assert float(out.loss.detach()) == pytest.approx(math.exp(-0.7) * task_loss + 0.7, rel=1e-6)
    out.loss.backward()
    # d/ds [exp(-s) L + s] = 1 - exp(-s) L; the other tasks' variances get no gradient from this batch
    grad = dict(zip(model.task_names, model.task_uncertainty.log_variances.grad.tolist(), strict=True))
    assert grad["sentiment"] == pytest.approx(1 - math.exp(-0.7) * task_loss, rel=1e-5)
    assert grad["ner"] == grad["qa"] == 0.0


def test_save_reload_auto_class_and_unknown_task(tmp_path):
    model = multitask_model(task_loss_weighting="uncertainty")
    with torch.no_grad():
        model.task_uncertainty.log_variances[model.task_names.index("ner")] = -0.3
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForMultiTask"] == "modeling_sora_multitask.SoraForMultiTask"
    assert config["architectures"] == ["SoraForMultiTask"]
    reloaded = AutoModelForMultiTask.from_pretrained(tmp_path).eval()
    assert type(reloaded) is SoraForMultiTask
    assert reloaded.task_uncertainty.as_dict() == pytest.approx({"ner": -0.3, "qa": 0.0, "sentiment": 0.0})
    ids, mask = random_batch(2, 9, pad_rows={1: 2})
    with torch.no_grad():
        every = model.run_heads(input_ids=ids, attention_mask=mask)  # all heads from one encoder pass
        for task in TASKS:
            got = reloaded(input_ids=ids, attention_mask=mask, task=task)
            for key, value in every[task].items():
                torch.testing.assert_close(got[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"unknown task 'pos'; this model's tasks are \['ner', 'qa', 'sentiment'\]"):
        reloaded(input_ids=ids, task="pos")
    with pytest.raises(ValueError, match="needs `task=`"):
        reloaded(input_ids=ids)


def test_heads_missing_from_an_encoder_checkpoint_are_initialised(tmp_path):
    """Loading the pre-trained encoder under new heads: the heads get their init (variances exactly 0), not the
    uninitialised memory that a parameter outside `_init_weights` would keep."""
    torch.manual_seed(0)
    SoraForMaskedLM(SoraConfig(**tiny_config_kwargs())).save_pretrained(tmp_path)
    config = SoraConfig.from_pretrained(tmp_path, tasks=TASKS, task_loss_weighting="uncertainty")
    for _ in range(2):
        model = SoraForMultiTask.from_pretrained(tmp_path, config=config)
        assert model.task_uncertainty.as_dict() == {"ner": 0.0, "qa": 0.0, "sentiment": 0.0}
        assert float(model.heads["ner"].weight.detach().abs().max()) < 1.5  # normal(0, 0.2) init
        assert float(model.heads["qa"].bias.detach().abs().max()) == 0.0


REMOTE_CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["sora_hf"] = None
    import torch
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    folder = sys.argv[1]
    cls = get_class_from_dynamic_module("modeling_sora_multitask.SoraForMultiTask", folder)
    assert cls.__module__.startswith("transformers_modules"), cls.__module__
    model = cls.from_pretrained(folder).eval()
    inputs, expected = torch.load(folder + "/inputs.pt"), torch.load(folder + "/expected.pt")
    with torch.no_grad():
        for task, logits in expected.items():
            out = model(task=task, **inputs)
            for key, value in logits.items():
                torch.testing.assert_close(out[key], value, rtol=1e-6, atol=1e-6)
    print("ok", sorted(expected))
    """
)


def test_multitask_checkpoint_loads_as_remote_code_without_sora_hf(tmp_path):
    model = multitask_model()
    ids, mask = random_batch(2, 9, pad_rows={1: 3})
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        expected = model.run_heads(input_ids=ids, attention_mask=mask)
    torch.save({"input_ids": ids, "attention_mask": mask}, tmp_path / "inputs.pt")
    torch.save(expected, tmp_path / "expected.pt")
    (tmp_path / "child.py").write_text(REMOTE_CHILD)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok ['ner', 'qa', 'sentiment']" in result.stdout


# ---------------------------------------------------------------------------------------------------------------
# sampling


def test_task_probabilities_follow_the_formulas():
    sizes = {"a": 900, "b": 100}
    assert task_probabilities(sizes, "proportional") == pytest.approx({"a": 0.9, "b": 0.1})
    assert task_probabilities(sizes, "uniform") == pytest.approx({"a": 0.5, "b": 0.5})
    # T=2: sqrt(900) : sqrt(100) = 30 : 10
    assert task_probabilities(sizes, "temperature", 2.0) == pytest.approx({"a": 0.75, "b": 0.25})
    assert task_probabilities(sizes, "temperature", 1.0) == pytest.approx(task_probabilities(sizes, "proportional"))
    with pytest.raises(ValueError, match="sampling='random'"):
        task_probabilities(sizes, "random")


@pytest.mark.parametrize("sampling", ["proportional", "temperature", "uniform"])
def test_sampler_draw_frequencies_match_the_probabilities(sampling):
    sizes = {"a": 500, "b": 60, "c": 20}
    probabilities = task_probabilities(sizes, sampling, temperature=3.0)
    sampler = TaskBatchSampler(sizes, batch_size=8, probabilities=probabilities, seed=1, num_batches=20000)
    counts = {t: 0 for t in sizes}
    bounds = {"a": (0, 500), "b": (500, 560), "c": (560, 580)}
    for batch in sampler:
        task = next(t for t, (lo, hi) in bounds.items() if lo <= batch[0] < hi)
        assert all(bounds[task][0] <= i < bounds[task][1] for i in batch)  # one task per batch
        assert len(batch) == 8 and len(set(batch)) == 8
        counts[task] += 1
    for task, p in probabilities.items():
        # binomial standard error at 20,000 draws is at most 0.0035
        assert counts[task] / 20000 == pytest.approx(p, abs=0.015), (sampling, counts)
    assert list(sampler) == list(sampler)  # seeded: the same epoch draws the same batches
    sampler.set_epoch(1)
    assert (
        sampler.task_sequence() != TaskBatchSampler(sizes, 8, probabilities, seed=1, num_batches=20000).task_sequence()
    )


def test_sampler_covers_each_task_before_repeating_and_collator_names_the_task():
    sizes = {"a": 12, "b": 5}
    sampler = TaskBatchSampler(sizes, batch_size=4, probabilities={"a": 1.0, "b": 0.0}, seed=0)
    assert len(sampler) == 3 + 2
    seen = [i for batch in sampler for i in batch]
    assert sorted(seen[:12]) == list(range(12))  # a full pass over task a before any example repeats
    dataset = MultiTaskDataset({"a": [{"x": i} for i in range(12)], "b": [{"x": 100 + i} for i in range(5)]})
    assert dataset[13] == ("b", {"x": 101})
    collate = MultiTaskCollator({"a": lambda rows: {"x": [r["x"] for r in rows]}, "b": None})
    assert collate([dataset[0], dataset[3]]) == {"x": [0, 3], "task": "a"}
    with pytest.raises(ValueError, match="one task"):
        collate([dataset[0], dataset[13]])


def test_group_entities_bio_and_bmes():
    def tok(entity, start, score=1.0):
        return {"entity": entity, "score": score, "start": start, "end": start + 1}

    text = "江泽民在北京"
    bio = [
        tok("B-PER", 0, 0.9),
        tok("I-PER", 1, 0.8),
        tok("I-PER", 2, 0.7),
        tok("O", 3),
        tok("B-LOC", 4),
        tok("I-LOC", 5),
    ]
    groups = group_entities(bio, text)
    assert [(g["entity_group"], g["word"], g["start"], g["end"]) for g in groups] == [
        ("PER", "江泽民", 0, 3),
        ("LOC", "北京", 4, 6),
    ]
    assert groups[0]["score"] == pytest.approx(0.8)
    bmes = [tok("B", 0), tok("M", 1), tok("E", 2), tok("S", 3), tok("B", 4), tok("E", 5)]
    assert [g["word"] for g in group_entities(bmes, text, "BMES")] == ["江泽民", "在", "北京"]


# ---------------------------------------------------------------------------------------------------------------
# recipe runs


TRAINING = {
    "max_steps": 6,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "logging_steps": 2,
    "learning_rate": 3e-3,
    "disable_tqdm": True,
}


def raw_recipe(checkpoint, out, **extra):
    limits = {"max_train_examples": 40, "max_eval_examples": 16}
    return {
        "name": "mt-test",
        "checkpoint": str(checkpoint),
        "output_dir": str(out),
        "method": "full",
        "max_length": 48,
        "doc_stride": 8,
        "sampling": "uniform",
        "tasks": {
            "sentiment": {"data": {"embedded": "sentiment", **limits}},
            "ner": {"data": {"embedded": "ner", **limits}, "loss_weight": 2.0},
        },
        "training": dict(TRAINING),
        **extra,
    }


@pytest.fixture(scope="module")
def trained(encoder_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("mt") / "run"
    metrics = run_multitask(parse_multitask_recipe(raw_recipe(encoder_checkpoint, out)))
    return out, metrics


def test_run_scores_every_task_and_writes_reports(trained):
    out, metrics = trained
    assert set(metrics["tasks"]) == {"sentiment", "ner"} and metrics["train_steps"] == 6
    sentiment, ner = metrics["tasks"]["sentiment"], metrics["tasks"]["ner"]
    assert 0 <= sentiment["test_accuracy"] <= 1 and sentiment["test_examples"] == 16
    assert {"test_overall_f1", "test_token_accuracy"} <= set(ner)
    assert sentiment["train_batches"] + ner["train_batches"] == 6
    assert sentiment["sampling_probability"] == 0.5
    assert json.loads((out / "metrics.json").read_text())["tasks"]["ner"]["test_examples"] == 16
    for name in ("tasks/sentiment/confusion_matrix.png", "tasks/ner/entity_report.txt", "loss_curve.png", "README.md"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "tasks/sentiment/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {r["prediction"] for r in rows} <= {"negative", "positive"}
    config = json.loads((out / "config.json").read_text())
    assert config["tasks"]["ner"]["loss_weight"] == 2.0 and config["tasks"]["sentiment"]["labels"] == [
        "negative",
        "positive",
    ]


def test_pipeline_returns_every_task_and_matches_the_model(trained):
    out, _ = trained
    mt = pipeline("multi-task", model=str(out))
    result = mt("江泽民在北京说质量很好")
    assert set(result) == {"sentiment", "ner"}
    model = AutoModelForMultiTask.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        probs = model(**tok("江泽民在北京说质量很好", return_tensors="pt"), task="sentiment").logits.softmax(-1)[0]
    best = int(probs.argmax())
    assert result["sentiment"] == [
        {"label": ["negative", "positive"][best], "score": pytest.approx(float(probs[best]))}
    ]
    for group in result["ner"]:
        assert (
            group["entity_group"] in ("PER", "LOC", "ORG")
            and group["word"] == "江泽民在北京说质量很好"[group["start"] : group["end"]]
        )
    assert set(mt("质量很好", tasks=["sentiment"])) == {"sentiment"}
    assert len(mt(["质量很好", "太差了"], tasks="sentiment")) == 2
    with pytest.raises(ValueError, match=r"unknown task 'pos'; this model's tasks are \['ner', 'sentiment'\]"):
        mt("质量很好", tasks=["pos"])


def test_recipe_errors_before_training(encoder_checkpoint, trained, tmp_path):
    def fails(message, **changes):
        raw = raw_recipe(encoder_checkpoint, tmp_path / "bad")
        for dotted, value in changes.items():
            node = raw
            *parents, last = dotted.split("__")
            for key in parents:
                node = node[key]
            node[last] = value
        with pytest.raises(RecipeError, match=message):
            run_multitask(parse_multitask_recipe(raw))
        assert not (tmp_path / "bad" / "config.json").exists()

    fails(r"recipe.sampling='temprature' must be one of .* \(did you mean 'temperature'\?\)", sampling="temprature")
    fails("unknown key tasks.ner.weight", tasks__ner__weight=1)
    fails("tasks.pinyin: task type 'seq2seq' has no multi-task head", tasks__pinyin={"data": {"embedded": "pinyin"}})
    fails("tasks.ner.loss_weight=-1 must be a positive number", tasks__ner__loss_weight=-1)
    fails("training.eval_strategy='epoch'", training__eval_strategy="epoch")
    # continuing from the saved multi-task model with a task whose labels differ from its head's
    out, _ = trained
    mismatch = {"data": {"embedded": "pos", "max_train_examples": 8, "max_eval_examples": 8}}
    fails(r"task 'ner': the data's labels \['B-Ag', .* 88 in all\] disagree with the labels of the multi-task "
          r"checkpoint .*labels the checkpoint lacks: \['B-Ag'",
          checkpoint=str(out), tasks__ner=mismatch)  # fmt: skip
    fails("task 'topic' is not among the tasks of the multi-task checkpoint", checkpoint=str(out),
          tasks__topic={"data": {"embedded": "sentiment"}})  # fmt: skip


def test_lora_with_uncertainty_saves_adapter_and_merged_model(encoder_checkpoint, tmp_path):
    out = tmp_path / "lora"
    raw = raw_recipe(encoder_checkpoint, out, method="lora", loss_weighting="uncertainty", sampling="temperature")
    raw["training"]["max_steps"] = 4
    metrics = run_multitask(parse_multitask_recipe(raw))
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]
    learned = metrics["learned_log_variances"]
    assert set(learned) == {"sentiment", "ner"} and any(abs(s) > 0 for s in learned.values())
    merged = AutoModelForMultiTask.from_pretrained(out).eval()
    assert merged.task_uncertainty.as_dict() == pytest.approx(learned)  # saved with the merged model
    assert all(abs(s) < 1 for s in learned.values())  # a few small steps from 0, not uninitialised memory
    from peft import PeftModel

    # the adapter goes on the pre-trained encoder under fresh heads; the trained heads come from the adapter
    base = SoraForMultiTask.from_pretrained(encoder_checkpoint, config=merged.config)
    adapter = PeftModel.from_pretrained(base, out / "adapter").eval()
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(["质量很好，非常满意", "江泽民在北京"], return_tensors="pt", padding=True)
    with torch.no_grad():
        for task in ("sentiment", "ner"):
            np.testing.assert_allclose(
                adapter(**batch, task=task).logits.numpy(), merged(**batch, task=task).logits.numpy(), atol=1e-5
            )
