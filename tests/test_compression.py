"""Structured pruning and int8 quantization: pruning nothing changes nothing, removing a head group or MLP unit
equals masking it, the pruned model reloads through AutoModelForX unchanged, importance is the loss gradient of the
gates, and the quantize/prune reports score the real sentiment task consistently with the models they describe."""

import copy
import json

import numpy as np
import pytest
import torch
from helpers import random_batch, tiny_config_kwargs
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from sora_hf import SoraConfig, SoraForCausalLM, SoraForSeq2SeqLM, SoraForSequenceClassification
from sora_hf.cli import main
from sora_hf.data.tasks import load_embedded_task
from sora_hf.deploy import OnnxModel, export_onnx
from sora_hf.deploy.evaluation import accuracy, classification_data, torch_logits
from sora_hf.deploy.pruning import (
    PruningError,
    UnitGates,
    compute_importance,
    least_important,
    prune_by_importance,
    prune_model,
)
from sora_hf.deploy.quantization import quantize_onnx, quantize_torch_dynamic, run_quantization
from sora_hf.tokenizer import train_tokenizer


def classifier(**overrides):
    torch.manual_seed(0)
    return SoraForSequenceClassification(SoraConfig(**tiny_config_kwargs(num_labels=3, **overrides))).eval()


def logits_of(model, input_ids, attention_mask):
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def batch_with_labels(seed=0):
    input_ids, attention_mask = random_batch(4, 12, seed=seed, pad_rows={1: 5, 3: 2})
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([0, 1, 2, 1])}


def test_pruning_nothing_keeps_outputs_identical():
    model = classifier()
    input_ids, attention_mask = random_batch(3, 10, pad_rows={1: 4})
    before = logits_of(model, input_ids, attention_mask)
    importance = compute_importance(model, [batch_with_labels()])
    prune_by_importance(model, importance, remove_groups=0, remove_mlp=0)
    assert torch.equal(logits_of(model, input_ids, attention_mask), before)


def test_removing_a_head_group_and_mlp_units_equals_masking_them():
    model = classifier()  # 4 query heads in 2 key/value groups, 64 MLP units, 2 layers
    masked_model = copy.deepcopy(model)
    input_ids, attention_mask = random_batch(3, 10, pad_rows={1: 4})
    # layer 0 drops group 1 (query heads 2, 3), layer 1 drops group 0 (query heads 0, 1)
    heads = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    mlp = torch.ones(2, 64)
    mlp[0, :10] = 0
    mlp[1, 30:40] = 0
    with UnitGates(masked_model, heads, mlp):
        masked = logits_of(masked_model, input_ids, attention_mask)
    prune_model(model, [[0], [1]], [list(range(10, 64)), [*range(30), *range(40, 64)]])
    pruned = logits_of(model, input_ids, attention_mask)
    torch.testing.assert_close(pruned, masked, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(pruned, logits_of(masked_model, input_ids, attention_mask), atol=1e-3)
    layer = model.model.layers[0]
    assert tuple(layer.self_attn.q_proj.weight.shape) == (16, 32)  # 2 query heads x head_dim 8
    assert tuple(layer.self_attn.k_proj.weight.shape) == (8, 32)
    assert tuple(layer.mlp.down_proj.weight.shape) == (32, 54)


@pytest.mark.parametrize(
    "model_class,auto_class", [(SoraForSequenceClassification, None), (SoraForCausalLM, AutoModelForCausalLM)]
)
def test_pruned_model_reloads_with_auto_class(model_class, auto_class, tmp_path):
    torch.manual_seed(0)
    model = model_class(SoraConfig(**tiny_config_kwargs(num_labels=3))).eval()
    batch = batch_with_labels()
    if model_class is SoraForCausalLM:
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    prune_by_importance(model, compute_importance(model, [batch]), remove_groups=1, remove_mlp=24)
    config = model.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (2, 1, 8)
    assert config.intermediate_size == 40
    model.save_pretrained(tmp_path)
    reloaded = (auto_class or AutoModelForSequenceClassification).from_pretrained(tmp_path).eval()
    assert type(reloaded) is model_class
    assert reloaded.config.head_dim == 8 and reloaded.config.hidden_size == 32
    input_ids, attention_mask = random_batch(2, 9, seed=5, pad_rows={1: 3})
    assert torch.equal(logits_of(reloaded, input_ids, attention_mask), logits_of(model, input_ids, attention_mask))


def test_importance_is_the_gradient_of_the_loss_by_each_gate():
    model = classifier()
    batch = batch_with_labels()
    importance = compute_importance(model, [batch])
    eps = 1e-3

    def loss_with(heads=None, mlp=None):
        with torch.no_grad(), UnitGates(model, heads, mlp):
            return model(**batch).loss.double().item()

    # layer 1, group 0 = query heads 0 and 1: importance is |dL/dg_0| + |dL/dg_1|
    total = 0.0
    for head in (0, 1):
        plus, minus = torch.ones(2, 4), torch.ones(2, 4)
        plus[1, head] += eps
        minus[1, head] -= eps
        total += abs(loss_with(heads=plus) - loss_with(heads=minus)) / (2 * eps)
    assert importance.groups[1, 0].item() == pytest.approx(total, rel=2e-2, abs=1e-4)
    plus, minus = torch.ones(2, 64), torch.ones(2, 64)
    plus[0, 7] += eps
    minus[0, 7] -= eps
    derivative = abs(loss_with(mlp=plus) - loss_with(mlp=minus)) / (2 * eps)
    assert importance.mlp[0, 7].item() == pytest.approx(derivative, rel=2e-2, abs=1e-4)


def test_least_important_units_go_first():
    scores = torch.tensor([[0.5, 0.1, 0.9, 0.3], [0.2, 0.8, 0.05, 0.4]])
    assert least_important(scores, 2) == [[0, 2], [1, 3]]
    assert least_important(scores, 0) == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_bad_pruning_requests_are_named():
    model = classifier()
    importance = compute_importance(model, [batch_with_labels()])
    with pytest.raises(PruningError, match="remove_groups=2: a layer has 2 key/value groups"):
        prune_by_importance(model, importance, remove_groups=2)
    with pytest.raises(PruningError, match="same number of key/value groups"):
        prune_model(model, [[0], [0, 1]], [list(range(64))] * 2)
    with pytest.raises(PruningError, match="SoraForSeq2SeqLM"):
        compute_importance(SoraForSeq2SeqLM(SoraConfig(**tiny_config_kwargs())), [])


def test_torch_dynamic_int8_stays_close_to_fp32():
    model = classifier(initializer_range=0.05)  # trained-like weight scale; 0.2 magnifies rounding on purpose
    quantized = quantize_torch_dynamic(model)
    input_ids, attention_mask = random_batch(3, 10, pad_rows={1: 4})
    fp32, int8 = logits_of(model, input_ids, attention_mask), logits_of(quantized, input_ids, attention_mask)
    assert isinstance(quantized.model.layers[0].mlp.up_proj, torch.ao.nn.quantized.dynamic.Linear)
    assert not torch.equal(fp32, int8)
    torch.testing.assert_close(int8, fp32, atol=0.1 * fp32.abs().max().item(), rtol=0)


def test_onnx_int8_graph_is_smaller_and_close(tmp_path):
    model = classifier(hidden_size=64, intermediate_size=256, initializer_range=0.05)
    export_onnx(model, tmp_path / "fp32")
    quantize_onnx(tmp_path / "fp32" / "model.onnx", tmp_path / "int8" / "model.onnx")
    for name in ("config.json", "export_info.json"):
        (tmp_path / "int8" / name).write_bytes((tmp_path / "fp32" / name).read_bytes())
    fp32_size = (tmp_path / "fp32" / "model.onnx").stat().st_size
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < 0.5 * fp32_size
    input_ids, attention_mask = random_batch(3, 10, pad_rows={1: 4})
    fp32 = OnnxModel(tmp_path / "fp32").run(input_ids=input_ids, attention_mask=attention_mask)["logits"]
    int8 = OnnxModel(tmp_path / "int8").run(input_ids=input_ids, attention_mask=attention_mask)["logits"]
    assert not np.array_equal(fp32, int8)
    np.testing.assert_allclose(int8, fp32, atol=0.1 * np.abs(fp32).max())


@pytest.fixture(scope="module")
def sentiment_checkpoint(tmp_path_factory):
    """A tiny random sentiment classifier with the task's label names and a tokenizer for its texts."""
    train = load_embedded_task("sentiment")[0]["train"]["text"][:300]
    tokenizer = train_tokenizer(iter(train), vocab_size=500, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    model = SoraForSequenceClassification(
        SoraConfig(
            **tiny_config_kwargs(
                vocab_size=len(tokenizer),
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
                initializer_range=0.05,
            )
        )
    ).eval()
    folder = tmp_path_factory.mktemp("sentiment")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def test_quantize_report_scores_the_task(sentiment_checkpoint, tmp_path):
    folder, model, tokenizer = sentiment_checkpoint
    report = run_quantization(folder, tmp_path, task="sentiment", max_examples=48, max_length=64, repeats=3)
    assert json.loads((tmp_path / "quantization_report.json").read_text()) == report
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "tokenizer.json").is_file()
    data = classification_data("sentiment", model.config, "test", 48)
    # the fp32 graph's accuracy is the torch model's (parity), computed here independently
    assert report["accuracy"]["fp32"] == accuracy(
        torch_logits(model, tokenizer, data.texts, max_length=64), data.labels
    )
    assert report["accuracy"]["change"] == pytest.approx(report["accuracy"]["int8"] - report["accuracy"]["fp32"])
    assert report["size_mb"]["int8"] < report["size_mb"]["fp32"]
    assert set(report["latency_ms"]) == {"batch_1", "batch_32"}


def test_prune_command_writes_a_reloadable_model_and_true_report(sentiment_checkpoint, tmp_path, capsys):
    folder, model, tokenizer = sentiment_checkpoint
    out = tmp_path / "pruned"
    argv = ["prune", str(folder), str(out), "--heads", "0.5", "--mlp", "0.25", "--importance-batches", "1"]
    assert main([*argv, "--max-examples", "48", "--max-length", "64"]) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["removed_per_layer"] == {"key_value_groups": 1, "mlp_units": 16}
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert reloaded.config.num_key_value_heads == 1 and reloaded.config.intermediate_size == 48
    data = classification_data("sentiment", model.config, "test", 48)
    for key, m in (("before", model), ("after", reloaded)):
        assert report[key]["accuracy"] == accuracy(torch_logits(m, tokenizer, data.texts, max_length=64), data.labels)
    assert report["after"]["parameters"] < report["before"]["parameters"]
    assert main(["prune", str(folder), str(tmp_path / "x"), "--heads", "1.0"]) == 2
    assert "heads=1.0: the fraction to prune must be in [0, 1)" in capsys.readouterr().err
