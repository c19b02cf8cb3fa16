"""`sora-hf` answers --help and refuses a bad recipe without importing torch or transformers, finds the shipped
recipes by name from any folder, and the wheel carries them (sora_hf/bundled_recipes)."""

from __future__ import annotations

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
    ],
    ids=["bad-corpus", "bad-embedded", "bad-training-key", "readme-path", "unknown-name"],
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
