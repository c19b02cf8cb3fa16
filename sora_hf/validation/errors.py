"""The recipe error and the key checker: the leaf every recipe section parser (and each training extension's
options) imports, and that imports nothing of sora_hf."""

from __future__ import annotations

import difflib
from typing import Any


class RecipeError(ValueError):
    """A recipe that cannot run as written."""


def _suggest(key: str, valid: set[str] | list[str] | tuple[str, ...]) -> str:
    same_but_case = [v for v in valid if v.lower() == key.lower()]
    close = same_but_case or difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(section: str, given: dict[str, Any], valid: set[str] | list[str]) -> None:
    """Raise RecipeError for the first key of `given` that is not in `valid`."""
    for key in given:
        if key not in valid:
            raise RecipeError(
                f"unknown key {section}.{key}{_suggest(key, valid)}; valid keys: {', '.join(sorted(valid))}"
            )
