"""Helpers every runner uses, so that no runner imports another's privates."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import yaml

from ..validation import RecipeError


def peak_memory_mb(device) -> float:
    """Peak memory of this process so far: allocated CUDA memory on a GPU, the resident set size otherwise."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train_and_measure(trainer: Any, name: str, **train_kwargs: Any) -> dict[str, Any]:
    """`trainer.train()`, refusing a run that made no optimizer step; returns what every metrics.json reports
    about training (steps, loss, seconds, peak memory and its increase, device)."""
    device = trainer.args.device
    memory_before = peak_memory_mb(device)
    started = time.perf_counter()
    output = trainer.train(**train_kwargs)
    seconds = time.perf_counter() - started
    if trainer.state.global_step == 0:
        raise RecipeError(
            f"{name}: training ran 0 optimizer steps (num_train_epochs / max_steps / train examples); "
            "nothing was saved"
        )
    peak = peak_memory_mb(device)
    return {
        "train_steps": trainer.state.global_step,
        "train_loss": output.training_loss,
        "train_seconds": round(seconds, 2),
        "peak_memory_mb": round(peak, 1),
        "peak_memory_increase_mb": round(max(peak - memory_before, 0.0), 1),
        "device": str(device),
    }


def check_class_count(info: Any, dataset: Any, train_file: str | None) -> None:
    """A single-label classifier trained on rows of one class learns to answer that class, and scores 1.0 on a test
    split of the same file: refused naming the file and the label (Trainer would train it without a word)."""
    if info.task_type != "classification" or info.problem_type != "single_label_classification":
        return
    present = sorted(set(dataset["train"]["label"]))
    if len(present) >= 2:
        return
    names = info.label_names or []
    label = names[present[0]] if present and present[0] < len(names) else (present[0] if present else None)
    where = train_file or info.name
    raise RecipeError(
        f"{where}: every training row has the label {label!r} (of {len(dataset['train'])} rows); a classifier "
        "needs examples of at least 2 classes to learn anything"
    )


def write_run(
    folder: Path,
    recipe: Any,
    metrics: dict[str, Any],
    log_history: list[dict[str, Any]],
    *,
    summary: str,
    pipeline_tag: str,
    tags: list[str],
    card_metrics: dict[str, Any] | None = None,
    dataset_name: str | None = None,
    recipe_command: str = "sora-hf pretrain recipe.yaml",
    recipe_fallback: dict[str, Any] | None = None,
    plot_title: str | None = None,
) -> None:
    """What every run leaves beside its model: `metrics.json`, `loss_curve.png`, the effective `recipe.yaml` and a
    model card (`README.md`) with the metrics (`card_metrics` where the card shows fewer) and the recipe."""
    from ..metrics.reporting import plot_loss_curve, write_metrics, write_model_card

    write_metrics(folder, metrics)
    plot_loss_curve(log_history, folder / "loss_curve.png", title=plot_title or recipe.name)
    recipe_text = save_recipe(recipe, folder, fallback=recipe_fallback)
    write_model_card(
        folder,
        title=f"Sora {recipe.name}",
        summary=recipe.description or summary,
        metrics=card_metrics if card_metrics is not None else metrics,
        recipe_text=recipe_text,
        pipeline_tag=pipeline_tag,
        tags=tags,
        dataset_name=dataset_name,
        recipe_command=recipe_command,
    )


def save_recipe(recipe: Any, output_dir: Path, fallback: dict[str, Any] | None = None) -> str | None:
    """Write the recipe that produced a run into it as `recipe.yaml`; returns its text (for the model card).

    The effective recipe is written: the file with the `--set` overrides and command-line options applied and
    every value typed, so that `sora-hf <command> recipe.yaml` in the run folder runs the same thing again."""
    effective = getattr(recipe, "effective", None)
    source = getattr(recipe, "source_path", None)
    if effective:
        header = f"# the recipe of this run: {source or 'given in Python'}"
        overrides = getattr(recipe, "overrides", None) or {}
        if overrides:
            header += ", with " + ", ".join(f"{key}={value!r}" for key, value in overrides.items())
        text = header + "\n" + yaml.safe_dump(effective, allow_unicode=True, sort_keys=False)
    elif source:
        text = Path(source).read_text(encoding="utf-8")
    elif fallback is not None:
        text = yaml.safe_dump(fallback, allow_unicode=True)
    else:
        return None
    (output_dir / "recipe.yaml").write_text(text, encoding="utf-8")
    return text
