"""The recipe's `distillation:` section, parsed once into `DistillationOptions` (imports no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ...validation import RecipeError, check_keys

DISTILLATION_KEYS = {"teacher", "temperature", "alpha", "hidden_weight", "layer_map", "student_layers"}
LABEL_KEYS = ("labels", "start_positions", "end_positions")


@dataclass(frozen=True)
class DistillationOptions:
    """The recipe's `distillation:` section, validated."""

    teacher: str  # a folder (or Hub id) with the fine-tuned teacher and its tokenizer
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft-target term; 1 - alpha weighs the hard-label loss
    hidden_weight: float = 0.0  # weight of the hidden-state MSE; 0 switches it (and output_hidden_states) off
    layer_map: Literal["uniform"] | tuple[tuple[int, int], ...] = "uniform"  # or ((student_index, teacher_index), ...)
    student_layers: tuple[int, ...] | None = None  # keep only these layers (0-based) of the student checkpoint


_RANGES = {
    "temperature": ("> 0", lambda v: v > 0),
    "alpha": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "hidden_weight": (">= 0", lambda v: v >= 0),
}


def parse_distillation_options(raw: dict[str, Any]) -> DistillationOptions:
    """Validate the recipe's `distillation:` mapping; every error names the key, the value and what is allowed."""
    check_keys("distillation", raw, DISTILLATION_KEYS)
    teacher = raw.get("teacher")
    if not isinstance(teacher, str) or not teacher.strip():
        raise RecipeError(
            f"distillation.teacher={teacher!r} must name the teacher: a folder (or Hub id) with a fine-tuned model "
            "and its tokenizer"
        )
    numbers = {}
    for key, (allowed, within) in _RANGES.items():
        value = raw.get(key, DistillationOptions.__dataclass_fields__[key].default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"distillation.{key}={value!r} must be a number")
        if not math.isfinite(value) or not within(value):
            raise RecipeError(f"distillation.{key}={value!r} must be {allowed}")
        numbers[key] = float(value)
    return DistillationOptions(
        teacher=teacher,
        layer_map=_parse_layer_map(raw.get("layer_map", "uniform")),
        student_layers=_parse_student_layers(raw.get("student_layers")),
        **numbers,
    )


def _parse_layer_map(value: Any) -> Literal["uniform"] | tuple[tuple[int, int], ...]:
    if value == "uniform":
        return value
    problem = (
        f"distillation.layer_map={value!r} must be 'uniform' or a list of [student_layer, teacher_layer] pairs of "
        "hidden-state indices (0 = embeddings, k = output of layer k), e.g. [[1, 2], [2, 4]]"
    )
    if not isinstance(value, list | tuple) or not value:
        raise RecipeError(problem)
    pairs = []
    for pair in value:
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in pair)
        ):
            raise RecipeError(problem)
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _parse_student_layers(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)
        or list(value) != sorted(set(value))
    ):
        raise RecipeError(
            f"distillation.student_layers={value!r} must be a non-empty, strictly increasing list of 0-based layer "
            "indices of the student checkpoint, e.g. [0, 2]"
        )
    return tuple(value)
