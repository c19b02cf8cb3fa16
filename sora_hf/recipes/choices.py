"""One table of the allowed values of every enumerated recipe key (the `Literal` types of
`sora_hf.validation.choices`), and the check."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from ..validation.choices import (
    Corpus,
    DataSource,
    EmbeddedTask,
    Method,
    Objective,
    OnMalformed,
    TagScheme,
    TaskType,
)
from ..validation.errors import RecipeError, _suggest

# ---------------------------------------------------------------------------------------------------------------
# choices: one table, the allowed values of every enumerated recipe key

# dotted recipe key -> its choices; `X | None` where null (or leaving the key out) means "not given"
CHOICES: dict[str, Any] = {
    "recipe.objective": Objective,
    "recipe.method": Method,
    "data.source": DataSource,
    "data.corpus": Corpus,
    "data.embedded": EmbeddedTask | None,
    "data.task_type": TaskType | None,
    "data.tag_scheme": TagScheme | None,  # null: the tags are not checked
    "data.on_malformed": OnMalformed,
}
# the `model:` and `training:` sections take SoraConfig's and TrainingArguments' own choices, read from their
# sources: pooling_modes(), activation_names(), training_argument_choices()


def choices_of(key: str) -> tuple[tuple[str, ...], bool]:
    """The allowed values of a dotted recipe key, and whether null is allowed too."""
    literal, nullable = CHOICES[key], False
    if typing.get_origin(literal) is not Literal:  # `Literal[...] | None`
        args = typing.get_args(literal)
        nullable = type(None) in args
        literal = next(arg for arg in args if typing.get_origin(arg) is Literal)
    return typing.get_args(literal), nullable


def _allowed(choices: tuple[str, ...]) -> str:
    if len(choices) == 2:
        return f"must be {choices[0]!r} or {choices[1]!r}"
    return f"is not one of {', '.join(map(str, choices))}"


def check_choice(key: str, value: Any, choices: tuple[str, ...] | None = None) -> None:
    """Raise RecipeError when `value` is not among the choices of the dotted `key` (by default `CHOICES[key]`)."""
    nullable = False
    if choices is None:
        choices, nullable = choices_of(key)
    if (value is None and nullable) or (isinstance(value, str) and value in choices):
        return
    raise RecipeError(f"{key}={value!r} {_allowed(choices)}{_suggest(str(value), choices)}")


def _check_section_choices(section: str, values: Any) -> None:
    """Check every field of a parsed section (a dataclass) that has an entry in CHOICES."""
    for f in dataclasses.fields(values):
        if f"{section}.{f.name}" in CHOICES:
            check_choice(f"{section}.{f.name}", getattr(values, f.name))
