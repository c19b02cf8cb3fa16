"""`sora-hf` answers --help and refuses a bad recipe without importing torch or transformers, finds the shipped
recipes by name from any folder, and the wheel carries them (sora_hf/bundled_recipes)."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = {"torch", "transformers"}


def _cli() -> list[str]:
    """The console script pip installed beside this interpreter (what a user runs), else `python -m sora_hf.cli`."""
    script = shutil.which("sora-hf", path=str(Path(sys.executable).parent))
    return [sys.executable, script] if script else [sys.executable, "-m", "sora_hf.cli"]


def _run(command: list[str], cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run with `-X importtime`; returns the process and the top-level names of every module it imported."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPROFILEIMPORTTIME": "1", **env}
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result, imported


def _messages(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if not line.startswith("import time:")]


@pytest.mark.parametrize(
    "args", [["--help"], ["pretrain", "--help"], ["finetune", "--help"], ["quickstart", "--help"]], ids=" ".join
)
def test_help_imports_neither_torch_nor_transformers(args, tmp_path):
    result, imported = _run([*_cli(), *args], tmp_path)
    assert result.returncode == 0, _messages(result)
    assert result.stdout.startswith("usage: sora-hf")
    assert "sora_hf" in imported and not HEAVY & imported, sorted(HEAVY & imported)


def test_module_entry_point_help_is_light_too(tmp_path):
    result, imported = _run([sys.executable, "-m", "sora_hf.cli", "--help"], tmp_path)
    assert result.returncode == 0 and not HEAVY & imported


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["pretrain", "zh-tiny-mlm", "--set", "data.corpus=reviws"],
            "data.corpus='reviws' is not one of peoples_daily, reviews, all (did you mean 'reviews'?)",
        ),
        (
            ["finetune", "sentiment", "--set", "data.embedded=sentimnet"],
            "data.embedded='sentimnet' is not one of sentiment, ner, pos, seg, qa, pinyin (did you mean 'sentiment'?)",
        ),
        (
            ["finetune", "sentiment", "--set", "training.lerning_rate=0.1"],
            "unknown key training.lerning_rate (did you mean 'learning_rate'?)",
        ),
        (
            ["pretrain", "recipes/pretrain/zh-tiny-mlm.yaml", "--set", "training.max_stepz=3"],
            "unknown key training.max_stepz (did you mean 'max_steps'?)",
        ),
        (["pretrain", "zh-tiny-mlx"], "'zh-tiny-mlx' is neither a file nor a shipped pretrain recipe"),
        (
            ["finetune", "sentiment", "--set", "training.learning_rate=fast"],
            "training.learning_rate='fast' must be a number (float)",
        ),
        (["serve", "some/model", "--port", "99999"], "argument --port: 99999 is not a TCP port: use 0..65535"),
        (
            ["export", "onnx", "in", "out", "--opset", "5"],
            "argument --opset: opset 5 cannot export Sora: torchscript: ",
        ),
    ],
    ids=["bad-corpus", "bad-embedded", "bad-training-key", "readme-path", "unknown-name", "bad-type", "port", "opset"],
)
def test_refused_recipe_answers_from_outside_the_repo_without_torch(args, expected, tmp_path):
    result, imported = _run([*_cli(), *args], tmp_path)
    messages = _messages(result)
    assert result.returncode == 2
    assert len(messages) == 1 and messages[0].startswith("sora-hf: error: ") and expected in messages[0], messages
    assert not HEAVY & imported, sorted(HEAVY & imported)


def test_packages_list_covers_every_sora_hf_folder_and_recipe_kind():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from setuptools import find_packages

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    assert {p for p in listed if not p.startswith("sora_hf.bundled_recipes")} == set(
        find_packages(str(REPO), include=["sora_hf", "sora_hf.*"])
    )
    kinds = {p.name for p in (REPO / "recipes").iterdir() if p.is_dir() and any(p.glob("*.yaml"))}
    assert {p for p in listed if p.startswith("sora_hf.bundled_recipes.")} == {
        f"sora_hf.bundled_recipes.{kind}" for kind in kinds
    }
    assert setuptools["package-dir"] == {"sora_hf.bundled_recipes": "recipes"}


def test_wheel_carries_the_recipes_and_the_installed_cli_finds_them(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("sora_hf", "recipes"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("sora_hf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    shipped = {f"sora_hf/bundled_recipes/{p.relative_to(REPO / 'recipes')}" for p in REPO.glob("recipes/*/*.yaml")}
    assert shipped and shipped <= names

    # the unpacked wheel first on the path, run from a folder with no recipes/: the package's own lookup answers
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "sora_hf.cli", "pretrain", "zh-tiny-mlm", "--set", "training.max_stepz=3"]
    result, imported = _run(command, elsewhere, PYTHONPATH=str(tmp_path / "site"))
    (message,) = _messages(result)
    bundled = tmp_path.resolve() / "site" / "sora_hf" / "bundled_recipes" / "pretrain" / "zh-tiny-mlm.yaml"
    assert message.startswith(f"sora-hf: error: {bundled}: unknown key training.max_stepz"), message
    assert not HEAVY & imported


# ---------------------------------------------------------------------------------------------------------------
# issue 13: every user error is one line, `sora-hf: error: ...`, exit status 2, no traceback (`-v` shows it)


@pytest.fixture(autouse=True)
def _logging_levels():
    """`main` runs in this process here: leave the logging levels as they were."""
    import logging

    loggers = [logging.getLogger(), logging.getLogger("sora_hf")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def _main(capsys, *args: str) -> tuple[int, list[str]]:
    from sora_hf.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err.splitlines()


def _one_line(capsys, *args: str) -> str:
    code, lines = _main(capsys, *args)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("sora-hf: error: "), lines
    return lines[0].removeprefix("sora-hf: error: ")


USER_ERRORS = [
    (["pretrain", "zh-tiny-mlm", "--set", "training.max_steps=2.5"], "training.max_steps=2.5 must be an integer"),
    (["pretrain", "zh-tiny-mlm", "--set", "training.max_steps=0"], "training.max_steps=0 must be a positive number"),
    (
        ["pretrain", "zh-tiny-mlm", "--set", "training.num_train_epochs=-1", "--set", "training.max_steps=-1"],
        "training.num_train_epochs=-1 must be positive",
    ),  # fmt: skip
    (
        ["finetune", "sentiment", "--set", "training.per_device_train_batch_size=0"],
        "training.per_device_train_batch_size=0 must be at least 1",
    ),  # fmt: skip
    (["pretrain", "zh-tiny-mlm", "--set", "foo"], "--set expects KEY=VALUE"),
    (["pretrain", "zh-tiny-mlm", "--set", "=3"], "--set '=3' names no key"),
    (["pretrain", "zh-tiny-mlm", "--set", "training.max_steps="], "--set 'training.max_steps=' gives no value"),
    (["pretrain", "zh-tiny-mlm", "--set", "a..b=1"], "--set 'a..b=1': the key 'a..b' has an empty part"),
    (["pretrain", "zh-tiny-mlm", "--set", "seed=[1,"], "--set 'seed=[1,': the value is not valid YAML"),
    (["pretrain", "zh-tiny-mlm", "--set", "training=3"], "--set training=3: training is a section"),
    (["finetune", "sentiment", "--set", "name.x=1"], "--set name.x=...: name is 'zh-sentiment', not a section"),
    (["serve", "m", "--port", "-1"], "argument --port: -1 is not a TCP port: use 0..65535"),
    (["serve", "m", "--threads", "0"], "argument --threads: 0 must be a positive integer"),
    (["serve", "m", "--max-batch-size", "0"], "argument --max-batch-size: 0 must be a positive integer"),
    (["serve", "m", "--max-wait-ms", "-1"], "argument --max-wait-ms: -1 must be a finite number >= 0"),
    (
        ["export", "onnx", "a", "b", "--opset", "5"],
        "argument --opset: opset 5 cannot export Sora: torchscript: 14..20",
    ),
    (
        ["export", "onnx", "a", "b", "--exporter", "dynamo", "--opset", "17"],
        "argument --opset: the dynamo exporter writes Sora at opset 18..22, not 17",
    ),  # fmt: skip
    (["quantize", "a", "b", "--max-examples", "many"], "argument --max-examples: 'many' is not an integer"),
    (["quantize", "a", "b", "--threads", "-2"], "argument --threads: -2 must be a positive integer"),
    (["prune", "a", "b", "--mlp", "-0.1"], "argument --mlp: mlp=-0.1: the fraction to prune must be in [0, 1)"),
    (["prune", "a", "b", "--heads", "1"], "argument --heads: heads=1.0: the fraction to prune must be in [0, 1)"),
    (["prune", "a", "b", "--importance-batches", "0"], "argument --importance-batches: 0 must be a positive integer"),
    (["quickstart", "--max-steps", "0"], "argument --max-steps: 0 must be a positive integer"),
    ([], "the following arguments are required: command"),
]


@pytest.mark.parametrize(("args", "expected"), USER_ERRORS, ids=[" ".join(a[-2:]) for a, _ in USER_ERRORS])
def test_user_errors_are_one_line_with_status_2(args, expected, capsys):
    assert expected in _one_line(capsys, *args)


def test_invalid_yaml_recipe_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nobjective: mlm\noutput_dir: out\ntraining: {max_steps: 2\n", encoding="utf-8")
    message = _one_line(capsys, "pretrain", str(path))
    assert message.startswith(f"recipe file {path} is not valid YAML: line 5, column 1: "), message


@pytest.mark.parametrize(
    "error",
    [
        OSError("Can't load the configuration of 'runs/none'.\n\nMake sure the folder holds a config.json."),
        FileNotFoundError(2, "No such file or directory", "runs/none/config.json"),
        PermissionError(13, "Permission denied", "runs/locked"),
        NotADirectoryError(20, "Not a directory", "runs/file.txt"),
        ValueError("a value\nover two lines"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_os_and_value_errors_are_user_errors(error, capsys, monkeypatch):
    from sora_hf import recipes

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(recipes, "load_pretrain_recipe", fail)
    message = _one_line(capsys, "pretrain", "zh-tiny-mlm")
    assert message == " ".join(line.strip() for line in str(error).splitlines() if line.strip())

    code, lines = _main(capsys, "-v", "pretrain", "zh-tiny-mlm")  # -v: the traceback, then the same line
    assert code == 2 and lines[0] == "Traceback (most recent call last):" and lines[-1] == f"sora-hf: error: {message}"
    code, lines = _main(capsys, "pretrain", "-v", "zh-tiny-mlm")  # after the command too
    assert code == 2 and lines[0] == "Traceback (most recent call last):"


def test_yaml_errors_interrupts_and_bugs(capsys, monkeypatch):
    import yaml

    from sora_hf import recipes

    def raising(error):
        def fail(*args, **kwargs):
            raise error

        return fail

    monkeypatch.setattr(recipes, "load_pretrain_recipe", raising(yaml.YAMLError("bad YAML somewhere")))
    assert _one_line(capsys, "pretrain", "zh-tiny-mlm") == "bad YAML somewhere"
    monkeypatch.setattr(recipes, "load_pretrain_recipe", raising(KeyboardInterrupt()))
    assert _main(capsys, "pretrain", "zh-tiny-mlm") == (130, ["sora-hf: interrupted"])
    monkeypatch.setattr(recipes, "load_pretrain_recipe", raising(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # not a user error: the traceback is the report
        _main(capsys, "pretrain", "zh-tiny-mlm")


def test_the_recipe_errors_name_the_file_once(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nobjective: mlm\noutput_dir: out\ntraining: {learning_rate: fast}\n", encoding="utf-8")
    assert (
        _one_line(capsys, "pretrain", str(path)) == f"{path}: training.learning_rate='fast' must be a number (float)"
    )
    assert _one_line(capsys, "pretrain", str(tmp_path)).count(str(tmp_path)) == 1  # a folder is no recipe


def test_logging_is_warning_except_sora_hf_and_info_with_verbose(capsys, monkeypatch):
    import logging

    from sora_hf import recipes

    seen = []

    def record(*args, **kwargs):
        seen.append(
            {
                name: logging.getLogger(name).isEnabledFor(logging.INFO)
                for name in ("sora_hf.data.tasks", "sora_hf.pretraining", "urllib3", "filelock")
            }
        )
        raise recipes.RecipeError("stop here")

    monkeypatch.setattr(recipes, "load_pretrain_recipe", record)
    root = logging.getLogger().level
    _main(capsys, "pretrain", "zh-tiny-mlm")
    _main(capsys, "-v", "pretrain", "zh-tiny-mlm")
    assert seen == [
        {"sora_hf.data.tasks": True, "sora_hf.pretraining": True, "urllib3": False, "filelock": False},
        {"sora_hf.data.tasks": True, "sora_hf.pretraining": True, "urllib3": True, "filelock": True},
    ]
    assert logging.getLogger().level == root  # main leaves the process's logging as it found it


@pytest.mark.parametrize(
    ("args", "target"),
    [
        (["export", "onnx", "ckpt", "out"], "sora_hf.deploy.onnx_export.export_onnx"),
        (["quantize", "ckpt", "out"], "sora_hf.deploy.quantization.run_quantization"),
        (["prune", "ckpt", "out"], "sora_hf.deploy.pruning.run_pruning"),
    ],
    ids=["export", "quantize", "prune"],
)
def test_deploy_commands_pass_overwrite(args, target, capsys, monkeypatch):
    import types

    from sora_hf import cli

    module_name, function = target.rsplit(".", 1)
    calls = []

    class Info:
        def to_json(self):
            return "{}"

    real = getattr(importlib.import_module(module_name), function)
    keywords_seen = []

    def fake(*positional, **keywords):
        calls.append(keywords["overwrite"])
        keywords_seen.append(keywords)
        return Info() if function == "export_onnx" else {}

    fake.__signature__ = inspect.signature(real)  # the command passes the flags its function takes, by name
    monkeypatch.setattr(cli, "_library", lambda: None)  # no model is loaded: the functions are stand-ins
    monkeypatch.setitem(sys.modules, "sora_hf.deploy", types.ModuleType("sora_hf.deploy"))
    monkeypatch.setitem(sys.modules, module_name, types.SimpleNamespace(**{function: fake}))
    assert cli.main(args) == 0
    assert cli.main([*args, "--overwrite"]) == 0
    assert calls == [False, True]
    # every keyword is one of the function's parameters, the output folder among them as given
    assert set(keywords_seen[0]) <= set(inspect.signature(real).parameters)
    assert keywords_seen[0]["output_dir"] == "out" and len(keywords_seen[0]) >= 4
    with pytest.raises(SystemExit):
        cli.main([*args[: 2 if args[0] == "export" else 1], "--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "--overwrite replace an existing output folder (only after the new one is written)" in usage
