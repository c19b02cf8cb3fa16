"""Fault injection: a pre-training run is SIGKILLed at chosen and at random points (during training, in the middle
of a checkpoint save, while it replaces an earlier run); the previous state is intact and `--resume` continues to the
same loss curve as a run that was never interrupted."""

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml
from test_pretraining import LINES, tiny_recipe

from sora_hf.cli import main as cli_main
from sora_hf.folders.outputs import STAGING_MARKER
from sora_hf.recipes import parse_pretrain_recipe
from sora_hf.runs import run_pretraining

STEPS, SAVE_EVERY = 24, 4

# run in a child process: SIGKILL itself in the middle of the checkpoint save of step KILL_AT_SAVE (after the
# weights and the optimizer were written, before the RNG and trainer states), as a power cut would
KILL_IN_SAVE = """
import os, signal, sys
from transformers import Trainer
from sora_hf.cli import main
step = int(os.environ["KILL_AT_SAVE"])
original = Trainer._save_rng_state
def dying(self, output_dir):
    if self.state.global_step == step:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir)
Trainer._save_rng_state = dying
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def recipe_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{line}第{i}条。" for i in range(40) for line in LINES) + "\n", encoding="utf-8")
    raw = tiny_recipe(
        corpus, tmp_path / "run", max_steps=STEPS, eval_steps=1000, save_steps=SAVE_EVERY, save_total_limit=2
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _losses(folder) -> dict[int, float]:
    state = json.loads((folder / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


@pytest.fixture
def uninterrupted(recipe_file, tmp_path):
    recipe = parse_pretrain_recipe(yaml.safe_load(recipe_file.read_text(encoding="utf-8")))
    recipe.output_dir = str(tmp_path / "whole")
    run_pretraining(recipe)
    return _losses(tmp_path / "whole")


def _child(args, tmp_path, script=None, **env):
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "sora_hf.cli", *args]
    return subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the child never reached the point to kill it at"
        time.sleep(0.01)
    return True


def test_a_kill_in_the_middle_of_a_save_resumes_from_the_previous_checkpoint(
    recipe_file, uninterrupted, tmp_path, caplog
):
    child = _child(["pretrain", str(recipe_file)], tmp_path, script=KILL_IN_SAVE, KILL_AT_SAVE="8")
    child.wait(timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    run = tmp_path / "run"
    assert (run / "checkpoint-8").is_dir() and not (run / "checkpoint-8" / "trainer_state.json").exists()
    with caplog.at_level(logging.WARNING, logger="sora_hf"):
        assert cli_main(["pretrain", str(recipe_file), "--resume"]) == 0
    assert "skipping checkpoint-8" in caplog.text
    resumed = _losses(run)
    assert sorted(resumed) == sorted(uninterrupted) == list(range(1, STEPS + 1))
    for step, loss in uninterrupted.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-4), step


# SIGKILL itself once every step is trained and checkpointed, while the final files are put in place
KILL_AT_THE_END = """
import os, signal, sys
from sora_hf.runs import pretrain
def dying(final, output_dir):
    os.kill(os.getpid(), signal.SIGKILL)
pretrain._move_in = dying
from sora_hf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_after_the_last_step_before_the_final_files_resumes_to_them(recipe_file, uninterrupted, tmp_path):
    """`--resume` of a run that trained every step but was killed before its model and metrics were in place
    writes them (training nothing more), as the uninterrupted run did; a complete run is then left as it is."""
    child = _child(["pretrain", str(recipe_file)], tmp_path, script=KILL_AT_THE_END)
    child.wait(timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    run = tmp_path / "run"
    assert (run / f"checkpoint-{STEPS}" / "trainer_state.json").exists() and not (run / "metrics.json").exists()
    assert cli_main(["pretrain", str(recipe_file), "--resume"]) == 0
    assert (run / "metrics.json").exists() and (run / "model.safetensors").exists()
    state = json.loads((run / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    resumed = _losses(run)
    for step, loss in uninterrupted.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-4), step
    before = (run / "metrics.json").read_bytes()
    assert cli_main(["pretrain", str(recipe_file), "--resume"]) == 0  # complete: nothing changes
    assert (run / "metrics.json").read_bytes() == before


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_a_random_point_then_resume_matches_an_uninterrupted_run(
    seed, recipe_file, uninterrupted, tmp_path
):
    run = tmp_path / "run"
    child = _child(["pretrain", str(recipe_file)], tmp_path)
    started = _wait_for(lambda: (run / f"checkpoint-{SAVE_EVERY}").is_dir(), child)
    if started:
        time.sleep(random.Random(seed).uniform(0.0, 0.5))  # somewhere in training or in a later save
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=300)
    assert cli_main(["pretrain", str(recipe_file), "--resume"]) == 0
    resumed = _losses(run)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step, loss in uninterrupted.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-4), step


def test_a_kill_while_replacing_a_run_leaves_the_previous_run(recipe_file, tmp_path):
    run = tmp_path / "run"
    assert cli_main(["pretrain", str(recipe_file), "--set", "training.max_steps=4"]) == 0
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    staging = tmp_path / ".run.sora-hf-new"
    child = _child(["pretrain", str(recipe_file), "--overwrite"], tmp_path)
    assert _wait_for(lambda: (staging / f"checkpoint-{SAVE_EVERY}").is_dir(), child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=300)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert (staging / STAGING_MARKER).is_file()  # the killed run's partial output, marked as ours
    assert cli_main(["pretrain", str(recipe_file), "--overwrite"]) == 0
    assert json.loads((run / "metrics.json").read_text())["train_steps"] == STEPS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "recipe.yaml", "run"]
