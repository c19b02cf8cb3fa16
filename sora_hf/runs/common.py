"""Helpers every runner uses, so that no runner imports another's privates."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import yaml


def peak_memory_mb(device) -> float:
    """Peak memory of this process so far: allocated CUDA memory on a GPU, the resident set size otherwise."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


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
