"""What `TrainingArguments` and `SoraConfig` accept (keys, choices, value types), read from their source files with
`ast` so that validating a recipe imports neither torch nor transformers; and the checks of the `model:` and
`training:` sections."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import logging
import typing
from pathlib import Path
from typing import Any

from ..validation.errors import RecipeError, check_keys
from ..validation.values import Kinds, _kinds_of_ast, _kinds_of_hint, typed_mapping
from .choices import check_choice

logger = logging.getLogger(__name__)

_CONFIG_SOURCE = Path(__file__).resolve().parents[1] / "configuration_sora.py"  # SoraConfig, read as text


# ---------------------------------------------------------------------------------------------------------------
# what transformers and SoraConfig accept, read from their source files so that validation imports neither


def _transformers_file(name: str) -> Path:
    spec = importlib.util.find_spec("transformers")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise LookupError("transformers is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / name


@functools.cache
def _module_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _class_node(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise LookupError(f"no class {name}")


def _dataclass_fields(tree: ast.Module, name: str) -> dict[str, ast.expr]:
    """The `__init__` fields a dataclass declares in its own body: annotated, not ClassVar, not `init=False`."""
    fields = {}
    for node in _class_node(tree, name).body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        if "ClassVar" in ast.unparse(node.annotation):
            continue
        value = node.value
        if isinstance(value, ast.Call) and any(
            k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False for k in value.keywords
        ):
            continue
        fields[node.target.id] = node.annotation
    return fields


def _enum_values(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Every string enum of a module: class name -> its values (`class IntervalStrategy(ExplicitEnum)`...)."""
    enums = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any("Enum" in ast.unparse(base) for base in node.bases):
            values = [
                stmt.value.value
                for stmt in node.body
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                if isinstance(stmt.value.value, str)
            ]
            if values:
                enums[node.name] = tuple(values)
    return enums


class _Schema(typing.NamedTuple):
    names: frozenset[str]
    choices: dict[str, tuple[str, ...]]  # enum-typed fields -> their values
    kinds: dict[str, Kinds]  # field -> the kinds of value its annotation allows


def _training_kinds(kinds: Kinds) -> Kinds:
    # TrainingArguments is no strict dataclass and documents its float steps and epochs as "int or float"
    # (`logging_steps: 50`, `num_train_epochs: 3`): an int stays an int there
    return kinds | {"int"} if "float" in kinds else kinds


@functools.cache
def _training_schema() -> _Schema:
    """TrainingArguments' field names, the values of its enum-typed fields (eval_strategy, optim...), and the kinds
    of value each field's annotation allows (int, float, bool, str, null...)."""
    try:
        fields = _dataclass_fields(_module_tree(_transformers_file("training_args.py")), "TrainingArguments")
        enums = {
            **_enum_values(_module_tree(_transformers_file("trainer_utils.py"))),
            **_enum_values(_module_tree(_transformers_file("training_args.py"))),
        }
        if len(fields) < 50:
            raise LookupError("TrainingArguments looks different from what this parser knows")
        choices = {}
        for name, annotation in fields.items():
            named = [n.id for n in ast.walk(annotation) if isinstance(n, ast.Name) and n.id in enums]
            if named:
                choices[name] = enums[named[0]]
        kinds = {name: _training_kinds(_kinds_of_ast(annotation, enums)) for name, annotation in fields.items()}
        return _Schema(frozenset(fields), choices, kinds)
    except (OSError, SyntaxError, LookupError):
        logger.debug("reading TrainingArguments from its source failed; importing transformers", exc_info=True)
        return _training_schema_imported()


def _training_schema_imported() -> _Schema:
    import enum

    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    names, choices, kinds = set(), {}, {}
    for f in dataclasses.fields(TrainingArguments):
        if not f.init:
            continue
        names.add(f.name)
        kinds[f.name] = _training_kinds(_kinds_of_hint(hints[f.name]))
        for arg in typing.get_args(hints[f.name]) or (hints[f.name],):
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                choices[f.name] = tuple(str(member.value) for member in arg)
                break
    return _Schema(frozenset(names), choices, kinds)


def training_argument_names() -> set[str]:
    """The keyword arguments of `transformers.TrainingArguments` (the keys of a recipe's `training:`)."""
    return set(_training_schema().names)


def training_argument_choices() -> dict[str, tuple[str, ...]]:
    """The enum-typed TrainingArguments (eval_strategy, save_strategy, lr_scheduler_type, optim...) and their values."""
    return dict(_training_schema().choices)


def training_argument_kinds() -> dict[str, Kinds]:
    """TrainingArguments field -> the kinds of value its annotation allows (`max_steps` -> {"int"})."""
    return dict(_training_schema().kinds)


EXTRA_MODEL_KEYS = {"num_labels", "attn_implementation"}
_EXTRA_MODEL_KINDS: dict[str, Kinds] = {
    "num_labels": frozenset({"int"}),
    "attn_implementation": frozenset({"str", "none"}),
}


@functools.cache
def _model_config_schema() -> tuple[frozenset[str], dict[str, Kinds]]:
    try:
        own = _dataclass_fields(_module_tree(_CONFIG_SOURCE), "SoraConfig")
        base = _dataclass_fields(_module_tree(_transformers_file("configuration_utils.py")), "PreTrainedConfig")
        if "vocab_size" not in own or "architectures" not in base:
            raise LookupError("SoraConfig or PreTrainedConfig looks different from what this parser knows")
        kinds = {name: _kinds_of_ast(annotation) for name, annotation in {**base, **own}.items()}
    except (OSError, SyntaxError, LookupError):
        logger.debug("reading SoraConfig from its source failed; importing it", exc_info=True)
        import torch

        from ..configuration_sora import SoraConfig

        hints = typing.get_type_hints(SoraConfig, localns={"torch": torch})  # PreTrainedConfig names torch.dtype
        kinds = {f.name: _kinds_of_hint(hints.get(f.name, Any)) for f in dataclasses.fields(SoraConfig)}
    kinds.update(_EXTRA_MODEL_KINDS)
    return frozenset(kinds), kinds


def model_config_names() -> set[str]:
    """The keyword arguments of `SoraConfig` (the keys of a recipe's `model:`)."""
    return set(_model_config_schema()[0])


def model_config_kinds() -> dict[str, Kinds]:
    """SoraConfig keyword argument -> the kinds of value its annotation allows (`hidden_size` -> {"int"})."""
    return dict(_model_config_schema()[1])


def _constant(tree: ast.Module, name: str) -> Any:
    """The value of a module-level constant `NAME = <literal>`."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"no constant {name}")


def _config_constant(name: str) -> tuple[str, ...]:
    """A tuple constant of configuration_sora, read from its source (imported only where the source cannot be read:
    the config imports transformers)."""
    try:
        return tuple(_constant(_module_tree(_CONFIG_SOURCE), name))
    except (OSError, SyntaxError, LookupError, ValueError):
        from .. import configuration_sora

        return tuple(getattr(configuration_sora, name))


@functools.cache
def pooling_modes() -> tuple[str, ...]:
    """The values `SoraConfig(classifier_pooling=...)` accepts (configuration_sora.POOLING_MODES)."""
    return _config_constant("POOLING_MODES")


@functools.cache
def multitask_head_types() -> tuple[str, ...]:
    """The task types `SoraForMultiTask` has a head for (configuration_sora.MULTITASK_TYPES)."""
    return _config_constant("MULTITASK_TYPES")


@functools.cache
def activation_names() -> tuple[str, ...]:
    """The activations `SoraConfig(hidden_act=...)` accepts: the keys of transformers' ACT2FN."""
    try:
        for node in _module_tree(_transformers_file("activations.py")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ACT2CLS" for t in node.targets):
                if isinstance(node.value, ast.Dict):
                    keys = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
                    if keys:
                        return tuple(sorted(keys))
        raise LookupError("no ACT2CLS mapping in transformers.activations")
    except (OSError, SyntaxError, LookupError):
        from transformers.activations import ACT2FN

        return tuple(sorted(ACT2FN))


# model sizes that must be at least 1 when given (SoraConfig checks the rest when it is built)
_POSITIVE_MODEL_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_decoder_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings", "num_labels",
    "generator_hidden_size", "generator_intermediate_size", "generator_num_hidden_layers",
    "generator_num_attention_heads",
)  # fmt: skip


def check_model_section(model: dict[str, Any], exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Keys, value types and enumerated values of a `model:` section (SoraConfig keyword arguments).

    Returns the section with every value as its SoraConfig field declares (`hidden_size: "64"` -> 64,
    `rms_norm_eps: 1e-5` -> 1e-05), since SoraConfig is a strict dataclass that refuses an int for a float."""
    check_keys("model", model, model_config_names() - set(exclude))
    model = typed_mapping("model", model, model_config_kinds())
    if "classifier_pooling" in model:
        check_choice("model.classifier_pooling", model["classifier_pooling"], pooling_modes())
    if "hidden_act" in model:
        check_choice("model.hidden_act", model["hidden_act"], activation_names())
    for key in _POSITIVE_MODEL_KEYS:
        if isinstance(model.get(key), int) and model[key] < 1:
            raise RecipeError(f"model.{key}={model[key]} must be at least 1")
    return model


def check_training_section(training: dict[str, Any]) -> dict[str, Any]:
    """Keys, value types, ranges and enumerated values (eval_strategy, optim...) of a `training:` section.

    Returns the section with every value as its TrainingArguments field declares (`max_steps: "20"` -> 20,
    `learning_rate: 5e-4` -> 0.0005); a value that does not fit (`learning_rate: fast`, `max_steps: 2.5`), or that
    would fail only once training starts (`max_steps: 0`, `per_device_train_batch_size: 0`), is refused."""
    check_keys("training", training, training_argument_names())
    training = typed_mapping("training", training, training_argument_kinds())
    choices = training_argument_choices()
    for key, value in training.items():
        if key in choices and isinstance(value, str):
            check_choice(f"training.{key}", value, choices[key])
    _check_training_ranges(training)
    return training


def _check_training_ranges(training: dict[str, Any]) -> None:
    def number(key: str) -> int | float | None:
        value = training.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    steps, epochs = number("max_steps"), number("num_train_epochs")
    if steps is not None and (steps == 0 or steps < -1):
        raise RecipeError(
            f"training.max_steps={steps} must be a positive number of steps (or -1: train for num_train_epochs)"
        )
    if epochs is not None and not epochs > 0 and not (steps is not None and steps > 0):
        raise RecipeError(
            f"training.num_train_epochs={epochs} must be positive (or give a positive training.max_steps)"
        )
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if number(key) is not None and training[key] < 1:
            raise RecipeError(f"training.{key}={training[key]} must be at least 1")
    for key in ("learning_rate", "warmup_steps", "weight_decay"):
        if number(key) is not None and not training[key] >= 0:
            raise RecipeError(f"training.{key}={training[key]} must be >= 0")
    if number("learning_rate") == 0:  # Trainer would run every step and leave the weights as they were
        raise RecipeError("training.learning_rate=0 trains nothing (the weights never change): give a positive rate")
    for key in ("logging_steps", "save_steps", "eval_steps"):
        value = number(key)
        if value is None:
            continue
        if not value > 0:
            raise RecipeError(f"training.{key}={value} must be positive: a number of steps, or a fraction of the run")
        if value > 1 and value != int(value):
            raise RecipeError(f"training.{key}={value} must be a whole number of steps (or a fraction below 1)")
