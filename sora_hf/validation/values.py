"""Values as their fields declare them: YAML strings that are numbers, ints for int fields, floats for float ones,
refused with a one-line RecipeError naming the key when they do not fit."""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import typing
from typing import Any, Literal

from .errors import RecipeError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


def _number(text: str) -> int | float:
    text = text.strip()
    return int(text) if _INTEGER.match(text) else float(text)


def coerce_numbers(values: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads `5e-4` (no dot) as a string; a user means the number (`"20"` -> 20, `"5e-4"` -> 0.0005).

    For sections whose fields have no declared types (adversarial, robustness, distillation: their own parsers
    check them); the others go through `typed_value`."""
    return {k: _number(v) if isinstance(v, str) and _NUMBER.match(v.strip()) else v for k, v in values.items()}


# ---------------------------------------------------------------------------------------------------------------
# types: a value keeps the type its field declares (TrainingArguments, SoraConfig, the recipe dataclasses)

# the kinds of value a field's annotation allows: "bool", "int", "float", "str", "none" (null), "list", "dict",
# and "any" (a type this parser does not model: the value is passed on as written)
Kinds = frozenset[str]
_SCALAR_NAMES = ("bool", "int", "float", "str")
_CONTAINER_NAMES = {
    "list": "list", "List": "list", "tuple": "list", "Tuple": "list", "set": "list", "Sequence": "list",
    "dict": "dict", "Dict": "dict", "Mapping": "dict",
}  # fmt: skip


def _kind_of_value(value: Any) -> str:
    if value is None:
        return "none"
    return type(value).__name__ if type(value).__name__ in _SCALAR_NAMES else "any"


def _kinds_of_ast(node: ast.expr, enums: set[str] | dict[str, Any] = frozenset()) -> Kinds:
    """The kinds an annotation, as written in a source file, allows (`float | None` -> {"float", "none"})."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _kinds_of_ast(node.left, enums) | _kinds_of_ast(node.right, enums)
    if isinstance(node, ast.Constant):
        if node.value is None:
            return frozenset({"none"})
        if isinstance(node.value, str):  # a quoted annotation
            try:
                return _kinds_of_ast(ast.parse(node.value, mode="eval").body, enums)
            except SyntaxError:
                return frozenset({"any"})
        return frozenset({"any"})
    head = node.value if isinstance(node, ast.Subscript) else node
    name = ast.unparse(head).rsplit(".", 1)[-1]  # typing.Optional -> Optional, torch.dtype -> dtype
    if isinstance(node, ast.Subscript):
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if name == "Optional":
            return _kinds_of_ast(args[0], enums) | {"none"}
        if name == "Union":
            return frozenset().union(*(_kinds_of_ast(a, enums) for a in args))
        if name == "Annotated":
            return _kinds_of_ast(args[0], enums)
        if name == "Literal":
            return frozenset(_kind_of_value(a.value) if isinstance(a, ast.Constant) else "any" for a in args)
        return frozenset({_CONTAINER_NAMES.get(name, "any")})
    if name in _SCALAR_NAMES:
        return frozenset({name})
    if name == "None":
        return frozenset({"none"})
    if name in _CONTAINER_NAMES:
        return frozenset({_CONTAINER_NAMES[name]})
    if name in enums:  # the string enums of transformers (IntervalStrategy, OptimizerNames...)
        return frozenset({"str"})
    return frozenset({"any"})


def _kinds_of_hint(hint: Any) -> Kinds:
    """The kinds a resolved type hint allows: what `_kinds_of_ast` reads from source, for imported classes."""
    import enum
    import types

    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return frozenset().union(*(_kinds_of_hint(a) for a in typing.get_args(hint)))
    if origin is typing.Annotated:
        return _kinds_of_hint(typing.get_args(hint)[0])
    if origin is Literal:
        return frozenset(_kind_of_value(a) for a in typing.get_args(hint))
    if hint is None or hint is type(None):
        return frozenset({"none"})
    base = origin or hint
    name = getattr(base, "__name__", "")
    if base in (bool, int, float, str):
        return frozenset({name})
    if name in _CONTAINER_NAMES and getattr(base, "__module__", "") in ("builtins", "typing", "collections.abc"):
        return frozenset({_CONTAINER_NAMES[name]})
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return frozenset({"str"})
    return frozenset({"any"})


_DESCRIPTIONS = {
    "int": "an integer", "float": "a number (float)", "bool": "true or false", "str": "a string",
    "list": "a list", "dict": "a mapping", "none": "null",
}  # fmt: skip


def _describe(kinds: Kinds) -> str:
    shown = [k for k in _DESCRIPTIONS if k in kinds and not (k == "int" and "float" in kinds)]
    return " or ".join(_DESCRIPTIONS[k] for k in shown)


def _typed_number(key: str, shown: Any, number: int | float, kinds: Kinds) -> int | float:
    if "int" in kinds and (isinstance(number, int) or ("float" not in kinds and float(number).is_integer())):
        return int(number)
    if "float" in kinds:
        return float(number)
    raise RecipeError(f"{key}={shown!r} must be an integer")


def _takes(kinds: Kinds, kind: str) -> bool:
    """Whether a field of `kinds` takes a value of `kind` as it is written."""
    return kind in kinds or "any" in kinds


def typed_value(key: str, value: Any, kinds: Kinds) -> Any:
    """`value` as the type its field declares, or a RecipeError naming the dotted `key`.

    A number written as a string (`"20"`, and `5e-4`, which YAML 1.1 reads as a string) becomes the number; an int
    goes to a float field as a float and an integral float (`2.0`, `2e3`) to an int field as an int; a number in a
    string field (`run_name: 2024`) is the string, and so is `no` (which YAML reads as false). Anything else that the
    annotation does not allow is refused."""
    numbers = kinds & {"int", "float"}
    if value is None:
        if _takes(kinds, "none"):
            return None
    elif isinstance(value, bool):
        if _takes(kinds, "bool"):
            return value
        if "str" in kinds:
            # YAML 1.1 reads `no` (and `off`, `false`) as false: in a string field (`eval_strategy: no`, `--set
            # training.save_strategy=no`) the user wrote the word "no"; `yes` / `on` / `true` has no such meaning
            if value is False:
                return "no"
            raise RecipeError(f"{key}: YAML reads yes/on/true as true, and {key} takes a string: quote it")
    elif isinstance(value, str):
        if numbers and _NUMBER.match(value.strip()):
            return _typed_number(key, value, _number(value), kinds)
        if _takes(kinds, "str"):
            return value
    elif isinstance(value, int | float):
        if numbers:
            return _typed_number(key, value, value, kinds)
        if "any" in kinds:
            return value
        if "str" in kinds:
            return str(value)
    elif isinstance(value, list | dict):
        if _takes(kinds, "list" if isinstance(value, list) else "dict"):
            return value
    elif "any" in kinds:
        return value
    raise RecipeError(f"{key}={value!r} must be {_describe(kinds)}")


def typed_mapping(section: str, values: dict[str, Any], kinds: dict[str, Kinds]) -> dict[str, Any]:
    """Every value of a section as its field declares (`typed_value`); keys without a declared type are kept."""
    prefix = f"{section}." if section else ""
    return {
        key: typed_value(f"{prefix}{key}", value, kinds[key]) if key in kinds else value
        for key, value in values.items()
    }


@functools.cache
def _dataclass_kinds(cls: type) -> dict[str, Kinds]:
    """The kinds each field of one of this module's dataclasses allows, from its annotations."""
    hints = typing.get_type_hints(cls)
    return {f.name: _kinds_of_hint(hints[f.name]) for f in dataclasses.fields(cls)}
