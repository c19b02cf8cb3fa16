"""The multi-task model: its config (the checkpoint's encoder with one head per recipe task), loading, LoRA on the
shared encoder, and the views the run and the trainer take of it. `recipe` is a `sora_hf.recipes.MultiTaskRecipe`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from torch import nn

from ...tasks import get_task
from ...validation import RecipeError
from ..lora.config import LoraOptions


def unwrap(model: nn.Module) -> nn.Module:
    """The SoraForMultiTask inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def uncertainty_log_variances(module: nn.Module) -> dict[str, float]:
    """The learned `s_t` of a `SoraTaskUncertainty` (also when peft wraps it in `modules_to_save`)."""
    inner = getattr(module, "modules_to_save", None)
    if inner is not None:  # peft ModulesToSaveWrapper: the trained copy
        module = inner["default"] if "default" in inner else next(iter(inner.values()))
    return module.as_dict()


class TaskView(nn.Module):
    """A multi-task model seen as a single-task one (`view(**batch)` == `model(task=..., **batch)`), so that the
    fine-tuning prediction code scores each task unchanged."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.inner = model
        self.task = task

    @property
    def config(self) -> Any:
        """What prediction reads of a single-task config: the task's `id2label`."""
        labels = unwrap(self.inner).config.tasks[self.task].get("labels") or []
        return SimpleNamespace(id2label=dict(enumerate(labels)))

    def forward(self, **inputs: Any):
        return self.inner(task=self.task, **inputs)


def build_config(recipe: Any, infos: dict[str, Any]):
    """The multi-task config: the checkpoint's encoder with one head per recipe task. A checkpoint that already is a
    multi-task model must have the same tasks with the same labels (its heads are trained for those labels). The
    caller checks first that a local checkpoint folder is a Sora one (`finetuning.check_sora_checkpoint`)."""
    from ...configuration_sora import SoraConfig
    from ...folders.checkpoints import resolve_checkpoint

    checkpoint = resolve_checkpoint(recipe.checkpoint)
    base = SoraConfig.from_pretrained(checkpoint)
    if base.is_decoder or base.is_encoder_decoder:
        kind = "an encoder-decoder" if base.is_encoder_decoder else "a causal decoder"
        raise RecipeError(
            f"checkpoint {checkpoint} is {kind} ({base.architectures}); multi-task heads need a Sora encoder "
            "(pre-trained with the mlm or rtd objective)"
        )
    tasks = {}
    for name, info in infos.items():
        tasks[name] = {
            "type": info.task_type,
            "loss_weight": recipe.tasks[name].loss_weight,
            **get_task(info.task_type).multitask_head_spec(info),
        }
    if base.tasks:
        check_tasks_match(tasks, base.tasks, checkpoint)
    return SoraConfig.from_pretrained(
        checkpoint, tasks=tasks, task_loss_weighting=recipe.loss_weighting, **recipe.model
    )


def check_tasks_match(tasks: dict[str, dict], saved: dict[str, dict], checkpoint: Path | str) -> None:
    """Raise RecipeError naming the first task whose name, type or label list differs from a saved model's."""
    for name, spec in tasks.items():
        if name not in saved:
            raise RecipeError(
                f"task {name!r} is not among the tasks of the multi-task checkpoint {checkpoint} "
                f"({sorted(saved)}); a saved multi-task model keeps its heads"
            )
        have = saved[name]
        if have["type"] != spec["type"]:
            raise RecipeError(
                f"task {name!r} is {spec['type']} in the data but {have['type']} in the checkpoint {checkpoint}"
            )
        data_labels, saved_labels = list(spec.get("labels") or []), list(have.get("labels") or [])
        if data_labels != saved_labels:
            unseen = [label for label in data_labels if label not in saved_labels]
            detail = f"labels the checkpoint lacks: {_preview(unseen)}" if unseen else "same labels, another order"
            raise RecipeError(
                f"task {name!r}: the data's labels {_preview(data_labels)} disagree with the labels of the multi-task "
                f"checkpoint {checkpoint} ({_preview(saved_labels)}; {detail}); its head was trained for those, in "
                "that order"
            )


def _preview(labels: list, limit: int = 8) -> str:
    shown = ", ".join(repr(label) for label in labels[:limit])
    return f"[{shown}, ... {len(labels)} in all]" if len(labels) > limit else f"[{shown}]"


def load_multitask_model(recipe: Any, config, tokenizer):
    from ...folders.checkpoints import CheckpointError, load_checked
    from ...modeling_sora_multitask import SoraForMultiTask
    from ...tokenizer import check_tokenizer_fits

    try:
        model = load_checked(SoraForMultiTask, recipe.checkpoint, heads="new_head", config=config)
    except CheckpointError as error:
        raise RecipeError(f"{error}: it is not a Sora encoder") from None
    check_tokenizer_fits(tokenizer, model.config)
    return model


def apply_multitask_lora(model: nn.Module, opts: LoraOptions):
    """LoRA on the shared encoder; every task head (and the uncertainty weights) trained whole and saved."""
    from peft import LoraConfig, get_peft_model

    heads = [f"heads.{task}" for task in model.task_names]
    if model.task_uncertainty is not None:
        heads.append("task_uncertainty")
    kwargs: dict[str, Any] = dict(
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        modules_to_save=sorted(set(heads) | set(opts.modules_to_save)),
    )
    if opts.target_modules is not None:
        kwargs["target_modules"] = opts.target_modules
    return get_peft_model(model, LoraConfig(**kwargs))
