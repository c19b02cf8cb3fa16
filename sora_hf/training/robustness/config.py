"""The recipe's `robustness:` section, parsed once into `RobustnessOptions` (imports no torch)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ...validation import RecipeError, check_keys

logger = logging.getLogger(__name__)


PerturbationKind = Literal["homophone", "visual", "delete", "insert", "swap"]
KINDS: tuple[PerturbationKind, ...] = get_args(PerturbationKind)
DEFAULT_KINDS: tuple[PerturbationKind, ...] = ("homophone", "delete", "insert", "swap")
ROBUSTNESS_KEYS = {"rate", "kinds", "seed", "per_kind", "visual_table", "examples_file"}


@dataclass(frozen=True)
class RobustnessOptions:
    """A parsed `robustness:` recipe section (see the module docstring)."""

    rate: float = 0.1
    kinds: tuple[PerturbationKind, ...] = DEFAULT_KINDS
    seed: int = 0
    per_kind: bool = True
    visual_table: str | None = None
    examples_file: str | None = "robustness_examples.jsonl"  # a sample of perturbed texts, in the run folder


def parse_robustness_options(raw: dict[str, Any]) -> RobustnessOptions:
    """Validate a `robustness:` section; raises RecipeError naming the key, its value and what is allowed."""
    check_keys("robustness", raw, ROBUSTNESS_KEYS)
    rate = raw.get("rate", 0.1)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise RecipeError(
            f"robustness.rate={rate!r} must be a fraction in (0, 1]: the share of characters edited (0.1 = 10%)"
        )
    kinds = raw.get("kinds", list(DEFAULT_KINDS))
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list | tuple) or not kinds:
        raise RecipeError(f"robustness.kinds={kinds!r} must be a non-empty list of {', '.join(KINDS)}")
    for kind in kinds:
        if kind not in KINDS:
            raise RecipeError(f"robustness.kinds has {kind!r}, which is not one of {', '.join(KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise RecipeError(f"robustness.kinds={list(kinds)} names a kind twice")
    visual_table = raw.get("visual_table")
    if "visual" in kinds and not visual_table:
        raise RecipeError(
            "robustness.kinds has 'visual' but robustness.visual_table is not set: no table of visually similar "
            "characters ships offline with snownlp or any installed package; give a file with one group of "
            "look-alike characters per line (e.g. 己已巳)"
        )
    if visual_table and not Path(visual_table).is_file():
        raise RecipeError(f"robustness.visual_table={visual_table!r} is not a file")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecipeError(f"robustness.seed={seed!r} must be a whole number >= 0")
    per_kind = raw.get("per_kind", True)
    if not isinstance(per_kind, bool):
        raise RecipeError(f"robustness.per_kind={per_kind!r} must be true or false")
    examples_file = raw.get("examples_file", RobustnessOptions.examples_file)
    return RobustnessOptions(float(rate), tuple(kinds), seed, per_kind, visual_table, examples_file)
