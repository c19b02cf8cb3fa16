"""Structured pruning (`sora_hf.deploy.pruning`): pruning nothing changes nothing, removing a head group or MLP unit
equals masking it, the pruned model reloads through AutoModelForX unchanged, importance is the loss gradient of the
gates, and `sora-hf prune` writes a reloadable model whose report scores the real sentiment task."""

import copy
import json

import pytest
import torch
from helpers import batch_with_labels, classifier, logits_of, random_batch, tiny_config_kwargs
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from sora_hf import SoraConfig, SoraForCausalLM, SoraForSeq2SeqLM, SoraForSequenceClassification
from sora_hf.cli import main
from sora_hf.deploy.evaluation import accuracy, classification_data, torch_logits
from sora_hf.deploy.pruning import (
    PruningError,
    UnitGates,
    compute_importance,
    least_important,
    prune_by_importance,
    prune_model,
)


def test_pruning_nothing_keeps_outputs_identical():
    model = classifier()
    input_ids, attention_mask = random_batch(3, 10, pad_rows={1: 4})
    before = logits_of(model, input_ids, attention_mask)
    importance = compute_importance(model, [batch_with_labels()])
    prune_by_importance(model, importance, remove_groups=0, remove_mlp=0)
    assert torch.equal(logits_of(model, input_ids, attention_mask), before)


# a converted BERT's block: post-norm LayerNorm, learned positions, the plain GELU MLP with biases
BERT_SHAPE = dict(
    position_embedding_type="absolute", norm_type="layer_norm", norm_position="post", embedding_norm=True,
    mlp_type="plain", attention_bias=True, mlp_bias=True, hidden_act="gelu",
)  # fmt: skip


@pytest.mark.parametrize("shape", [{}, BERT_SHAPE], ids=["sora", "bert-shaped"])
def test_removing_a_head_group_and_mlp_units_equals_masking_them(shape):
    model = classifier(**shape)  # 4 query heads in 2 key/value groups, 64 MLP units, 2 layers
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
