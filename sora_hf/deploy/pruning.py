"""Structured pruning of Sora encoders and decoders: whole key/value head groups and MLP units, saved for good.

Importance is the first-order estimate of Michel et al. (2019), "Are Sixteen Heads Really Better than One?": a gate
of value 1 multiplies every attention head's output (before `o_proj`) and every MLP unit (before `down_proj`), and
the importance of a unit is the mean over batches of `|dL/d gate|` on the task loss. With grouped-query attention a
key/value head serves `num_attention_heads / num_key_value_heads` query heads, so the unit removed is the group: its
key and value rows and the rows of all its query heads, scored by the sum of their heads' importance.

Every layer loses the same number of groups and MLP units (the config has one size for all layers), each layer its
own least important ones. The Linear weights shrink, the config records the new `num_attention_heads`,
`num_key_value_heads`, `intermediate_size` and an explicit `head_dim` (it would otherwise be re-derived from
`hidden_size / num_attention_heads`), and `save_pretrained` gives a folder that `AutoModelForX` loads as is.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer

from ..folders.checkpoints import CheckpointError, check_checkpoint_folder, load_checked, resolve_checkpoint
from ..folders.outputs import OutputFolder, check_output_folder
from ..modeling_sora import SoraForPreTraining, SoraForSeq2SeqLM, SoraStack
from ..tokenizer import check_tokenizer_fits

logger = logging.getLogger(__name__)

REPORT_FILE = "pruning_report.json"


class PruningError(ValueError):
    """A model or a pruning request that cannot be honoured (named in the message)."""


def sora_layers(model: nn.Module) -> nn.ModuleList:
    """The blocks whose heads and MLP units are pruned: those of the model's single stack (`SoraModel` or `SoraDecoderModel`)."""
    if isinstance(model, (SoraForSeq2SeqLM, SoraForPreTraining)):
        raise PruningError(
            f"pruning {type(model).__name__} is not supported (it holds two Sora stacks with separate sizes); "
            "prune encoder heads, SoraModel, SoraForMaskedLM or SoraForCausalLM"
        )
    base = model if isinstance(model, SoraStack) else getattr(model, "model", None)
    if not isinstance(base, SoraStack):
        raise PruningError(f"{type(model).__name__} is not a Sora model: pruning needs its stack's blocks")
    return base.layers


# ---------------------------------------------------------------------------------------------------------------
# Gates: mask or score query heads and MLP units without changing the weights


class UnitGates(contextlib.AbstractContextManager):
    """Multiplies each query head's output and each MLP unit by a gate, through forward pre-hooks.

    `heads` is `(layers, num_attention_heads)` and `mlp` is `(layers, intermediate_size)`; ones leave the model
    unchanged, zeros mask a unit exactly as removing it would. With `requires_grad=True` the gates collect
    `dL/d gate`, the importance signal.
    """

    def __init__(self, model: nn.Module, heads: torch.Tensor | None = None, mlp: torch.Tensor | None = None):
        self.layers = sora_layers(model)
        config = model.config
        n = len(self.layers)
        self.heads = heads if heads is not None else torch.ones(n, config.num_attention_heads)
        self.mlp = mlp if mlp is not None else torch.ones(n, config.intermediate_size)
        self.head_dim = config.head_dim
        self._handles = []

    def __enter__(self) -> UnitGates:
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.self_attn.o_proj.register_forward_pre_hook(self._head_hook(i)))
            self._handles.append(layer.mlp.down_proj.register_forward_pre_hook(self._mlp_hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _head_hook(self, i: int):
        def hook(module, args):
            (x,) = args
            gates = self.heads[i].to(x.dtype).repeat_interleave(self.head_dim)
            return (x * gates,)

        return hook

    def _mlp_hook(self, i: int):
        def hook(module, args):
            (x,) = args
            return (x * self.mlp[i].to(x.dtype),)

        return hook


@dataclass
class Importance:
    """Per layer: importance of each key/value group `(layers, kv_heads)` and MLP unit `(layers, intermediate)`."""

    groups: torch.Tensor
    mlp: torch.Tensor
    num_batches: int


def compute_importance(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> Importance:
    """Mean `|dL/d gate|` over `batches` (each a dict of model inputs with labels, so the model returns a loss)."""
    layers = sora_layers(model)
    config = model.config
    heads = torch.ones(len(layers), config.num_attention_heads, requires_grad=True)
    mlp = torch.ones(len(layers), config.intermediate_size, requires_grad=True)
    head_score, mlp_score = torch.zeros_like(heads), torch.zeros_like(mlp)
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model that will be served
    count = 0
    with UnitGates(model, heads, mlp):
        for batch in batches:
            loss = model(**batch).loss
            if loss is None:
                raise PruningError("importance needs a loss: give batches with labels")
            head_grad, mlp_grad = torch.autograd.grad(loss, (heads, mlp))
            head_score += head_grad.abs()
            mlp_score += mlp_grad.abs()
            count += 1
    model.train(was_training)
    if count == 0:
        raise PruningError("importance needs at least one batch")
    rep = config.num_attention_heads // config.num_key_value_heads
    groups = (head_score / count).view(len(layers), config.num_key_value_heads, rep).sum(-1)
    return Importance(groups=groups, mlp=mlp_score / count, num_batches=count)


# ---------------------------------------------------------------------------------------------------------------
# Pruning


def _keep_rows(linear: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None)
    new.weight.data = linear.weight.data[rows].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data[rows].clone()
    return new.to(linear.weight.device, linear.weight.dtype)


def _keep_columns(linear: nn.Linear, columns: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None)
    new.weight.data = linear.weight.data[:, columns].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data.clone()
    return new.to(linear.weight.device, linear.weight.dtype)


def _units(indices: torch.Tensor, width: int) -> torch.Tensor:
    """Rows `[i*width, (i+1)*width)` for each index `i`, in order."""
    return (indices[:, None] * width + torch.arange(width)[None, :]).flatten()


def prune_model(model: nn.Module, keep_groups: list[list[int]], keep_mlp: list[list[int]]) -> nn.Module:
    """Keep, in every layer, the listed key/value groups (with their query heads) and MLP units; in place.

    Every layer must keep the same number of groups and of units. Returns the model, its config updated.
    """
    layers = sora_layers(model)
    config = model.config
    if len(keep_groups) != len(layers) or len(keep_mlp) != len(layers):
        raise PruningError(f"give one list of kept groups and of kept MLP units per layer ({len(layers)} layers)")
    n_groups, n_units = {len(k) for k in keep_groups}, {len(k) for k in keep_mlp}
    if len(n_groups) != 1 or len(n_units) != 1:
        raise PruningError(
            f"every layer must keep the same number of key/value groups and MLP units; got {sorted(n_groups)} "
            f"groups and {sorted(n_units)} units"
        )
    kv_heads, units = n_groups.pop(), n_units.pop()
    if not 1 <= kv_heads <= config.num_key_value_heads or not 1 <= units <= config.intermediate_size:
        raise PruningError(
            f"keep between 1 and {config.num_key_value_heads} key/value groups (got {kv_heads}) and between 1 and "
            f"{config.intermediate_size} MLP units (got {units})"
        )
    rep = config.num_attention_heads // config.num_key_value_heads
    head_dim = config.head_dim
    for layer, groups, mlp_units in zip(layers, keep_groups, keep_mlp, strict=True):
        groups = torch.as_tensor(sorted(groups), dtype=torch.long)
        query_heads = _units(groups, rep)  # query head h reads key/value head h // rep
        attn = layer.self_attn
        attn.q_proj = _keep_rows(attn.q_proj, _units(query_heads, head_dim))
        attn.k_proj = _keep_rows(attn.k_proj, _units(groups, head_dim))
        attn.v_proj = _keep_rows(attn.v_proj, _units(groups, head_dim))
        attn.o_proj = _keep_columns(attn.o_proj, _units(query_heads, head_dim))
        mlp_units = torch.as_tensor(sorted(mlp_units), dtype=torch.long)
        if hasattr(layer.mlp, "gate_proj"):  # the gated MLP; BERT's plain one (mlp_type="plain") has none
            layer.mlp.gate_proj = _keep_rows(layer.mlp.gate_proj, mlp_units)
        layer.mlp.up_proj = _keep_rows(layer.mlp.up_proj, mlp_units)
        layer.mlp.down_proj = _keep_columns(layer.mlp.down_proj, mlp_units)
    config.head_dim = head_dim  # explicit: no longer hidden_size // num_attention_heads
    config.num_key_value_heads = kv_heads
    config.num_attention_heads = kv_heads * rep
    config.intermediate_size = units
    return model


def least_important(scores: torch.Tensor, remove: int) -> list[list[int]]:
    """Per row, the indices to keep after dropping the `remove` lowest scores (ties: the higher index goes)."""
    keep = scores.shape[1] - remove
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return [sorted(row[:keep].tolist()) for row in order]


def prune_by_importance(
    model: nn.Module, importance: Importance, remove_groups: int = 0, remove_mlp: int = 0
) -> nn.Module:
    """Remove the `remove_groups` least important key/value groups and `remove_mlp` MLP units of every layer."""
    config = model.config
    if not 0 <= remove_groups < config.num_key_value_heads:
        raise PruningError(
            f"remove_groups={remove_groups}: a layer has {config.num_key_value_heads} key/value groups and must "
            "keep at least one"
        )
    if not 0 <= remove_mlp < config.intermediate_size:
        raise PruningError(
            f"remove_mlp={remove_mlp}: a layer has {config.intermediate_size} MLP units and must keep at least one"
        )
    return prune_model(
        model, least_important(importance.groups, remove_groups), least_important(importance.mlp, remove_mlp)
    )


def fraction_to_count(fraction: float, total: int, what: str) -> int:
    """`fraction` of `total` units as a count (rounded), refusing fractions outside [0, 1)."""
    if not 0.0 <= fraction < 1.0:
        raise PruningError(f"{what}={fraction}: the fraction to prune must be in [0, 1)")
    return min(int(round(fraction * total)), total - 1)


def classification_batches(
    tokenizer, texts: list[str], labels, batch_size: int, max_length: int, num_batches: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Tokenised labelled batches for importance scoring (the first `num_batches` of the given texts)."""
    for b in range(num_batches):
        chunk = slice(b * batch_size, (b + 1) * batch_size)
        if not texts[chunk]:
            return
        enc = tokenizer(texts[chunk], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc["labels"] = torch.as_tensor(labels[chunk])
        yield dict(enc)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_pruning(
    checkpoint: str | Path,
    output_dir: str | Path,
    heads: float = 0.5,
    mlp: float = 0.5,
    task: str = "sentiment",
    importance_batches: int = 8,
    batch_size: int = 32,
    max_length: int = 128,
    max_eval_examples: int | None = None,
    repeats: int = 30,
    overwrite: bool = False,
) -> dict:
    """Prune a saved sequence classifier by task importance, save it, and report accuracy, size and latency.

    `heads` and `mlp` are the fractions of key/value groups and MLP units removed from every layer. Importance
    comes from the first `importance_batches` batches of the task's *train* split; accuracy is on its test split.
    """
    import sora_hf

    from .evaluation import classification_data, file_size_mb

    checkpoint = Path(resolve_checkpoint(checkpoint))
    target = check_output_folder(output_dir, inputs=[checkpoint], overwrite=overwrite, what="output folder")
    config, architecture = _classifier_config(checkpoint)
    remove_groups = fraction_to_count(heads, config.num_key_value_heads, "heads")
    remove_mlp = fraction_to_count(mlp, config.intermediate_size, "mlp")
    model = load_checked(getattr(sora_hf, architecture), checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    check_tokenizer_fits(tokenizer, model.config)
    train = classification_data(task, config, "train")
    test = classification_data(task, config, "test", max_eval_examples)

    before = _measure(model, tokenizer, test, max_length, repeats)
    before["size_mb"] = file_size_mb(checkpoint)
    batches = classification_batches(tokenizer, train.texts, train.labels, batch_size, max_length, importance_batches)
    importance = compute_importance(model, batches)
    prune_by_importance(model, importance, remove_groups, remove_mlp)
    with OutputFolder(target, overwrite=overwrite) as out:
        output_dir = out.path
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        after = _measure(model, tokenizer, test, max_length, repeats)
        after["size_mb"] = file_size_mb(output_dir)
        report = {
            "source": str(checkpoint),
            "task": {"name": task, "split": "test", "examples": len(test.texts)},
            "importance": {"method": "mean |dL/d gate| (Michel et al. 2019)", "batches": importance.num_batches},
            "removed_per_layer": {"key_value_groups": remove_groups, "mlp_units": remove_mlp},
            "config": {
                "num_attention_heads": model.config.num_attention_heads,
                "num_key_value_heads": model.config.num_key_value_heads,
                "head_dim": model.config.head_dim,
                "intermediate_size": model.config.intermediate_size,
            },
            "before": before,
            "after": after,
            "accuracy_change": after["accuracy"] - before["accuracy"],
            "parameter_ratio": after["parameters"] / before["parameters"],
            "speedup": {k: before["latency_ms"][k] / after["latency_ms"][k] for k in before["latency_ms"]},
        }
        (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        out.commit()
    return report


def _classifier_config(checkpoint: Path) -> tuple[Any, str]:
    """The checkpoint's config and architecture, refused unless it is a SoraForSequenceClassification folder (the
    task's accuracy is what `run_pruning` measures)."""
    try:
        check_checkpoint_folder(checkpoint)
    except CheckpointError as error:
        raise PruningError(str(error)) from None
    config = AutoConfig.from_pretrained(checkpoint)
    architecture = (config.architectures or ["?"])[0]
    if architecture != "SoraForSequenceClassification":
        raise PruningError(
            f"`prune` scores and evaluates on a classification task, so it takes a SoraForSequenceClassification "
            f"checkpoint; {checkpoint} holds {architecture}. Other heads: use compute_importance / "
            "prune_by_importance with batches that give a loss"
        )
    return config, architecture


def _measure(model: nn.Module, tokenizer: Any, test: Any, max_length: int, repeats: int) -> dict:
    """Accuracy on the test split, parameter count and latency at batch sizes 1 and 32 (before and after pruning)."""
    from .evaluation import accuracy, latency_inputs, torch_latency_ms, torch_logits

    logits = torch_logits(model, tokenizer, test.texts, max_length=max_length)
    latency = {
        f"batch_{b}": torch_latency_ms(model, latency_inputs(tokenizer, test.texts, b, max_length), repeats)
        for b in (1, 32)
    }
    return {"accuracy": accuracy(logits, test.labels), "parameters": parameter_count(model), "latency_ms": latency}


__all__ = [
    "Importance",
    "PruningError",
    "UnitGates",
    "classification_batches",
    "compute_importance",
    "fraction_to_count",
    "least_important",
    "parameter_count",
    "prune_by_importance",
    "prune_model",
    "run_pruning",
    "sora_layers",
]
