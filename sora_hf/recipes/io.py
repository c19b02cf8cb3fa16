"""Reading recipes: files (with `--set` overrides applied), the shipped recipes by name, and the typed result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..validation.errors import RecipeError, _suggest
from .schema import FinetuneRecipe, PretrainRecipe, parse_finetune_recipe, parse_pretrain_recipe


class RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping: PyYAML keeps the later value without a word,
    so a recipe that sets `learning_rate` at the top of `training:` and again below would run with a value the user
    may not have meant."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error names it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice (first at line {first})", key_node.start_mark
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


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
            raw = yaml.load(handle, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader
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
    package = Path(__file__).resolve().parents[1]  # sora_hf/
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


def load_finetune_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> FinetuneRecipe:
    recipe = parse_finetune_recipe(read_recipe(path, overrides), source_path=str(path))
    recipe.overrides = dict(overrides or {})
    return recipe
