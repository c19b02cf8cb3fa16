"""LoRA for every Sora head through peft: the `LoraConfig` of a head, and the wrapped model.

`import sora_hf` registers default target modules for `model_type="sora"` (see `registration.py`), so
`LoraConfig(task_type=...)` needs no `target_modules`. This module picks the peft task type of each head and the
head modules that must be trained whole and saved with the adapter (`modules_to_save`): peft adds `classifier` and
`qa_outputs` by itself for sequence/token classification and QA, not the sentence-embedding pooler.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ...auto.heads import HEADS
from .config import LoraOptions

# head class name -> (peft task type, modules trained whole besides the LoRA matrices), from `heads.HEADS`
HEAD_TASK_TYPES: dict[str, tuple[str, list[str]]] = {
    row.name: (row.peft_task_type, list(row.modules_to_save)) for row in HEADS if row.peft_task_type is not None
}


def _crf(model) -> set[str]:
    return {"crf"} if getattr(model, "crf", None) is not None else set()


def lora_config_for(model: nn.Module, options: LoraOptions | None = None):
    """A `peft.LoraConfig` for this Sora head."""
    from peft import LoraConfig

    options = options or LoraOptions()
    name = type(model).__name__
    if name not in HEAD_TASK_TYPES:
        raise ValueError(f"no LoRA set-up for {name}; known heads: {', '.join(HEAD_TASK_TYPES)}")
    task_type, extra = HEAD_TASK_TYPES[name]
    kwargs: dict[str, Any] = dict(
        task_type=task_type,
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        # a token-classification CRF's transitions are trained whole and saved with the adapter
        modules_to_save=sorted(set(extra) | set(options.modules_to_save) | _crf(model)) or None,
    )
    if options.target_modules is not None:
        kwargs["target_modules"] = options.target_modules
    return LoraConfig(**kwargs)


def apply_lora(model: nn.Module, options: LoraOptions | None = None):
    """Wrap `model` in a peft model: LoRA matrices on attention and MLP projections, heads trained whole."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config_for(model, options))


def count_parameters(model: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total}
