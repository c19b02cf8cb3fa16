"""A careless user's training runs: each mistake is one line naming the file, key or limit (exit status 2), a full
disk leaves nothing half-written, and what transformers' Trainer would refuse or warn about is refused here too."""

import errno
import json

import pytest
import yaml
from test_pretraining import LINES, tiny_recipe

from sora_hf.cli import main as cli_main
from sora_hf.metrics import reporting
from sora_hf.recipes import RecipeError, load_pretrain_recipe, parse_pretrain_recipe, parse_set_options


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"{line}第{i}条。" for i in range(40) for line in LINES) + "\n", encoding="utf-8")
    return path


def _recipe_file(tmp_path, raw, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _error_line(capsys) -> str:
    """The one error line a command ends with (progress bars and warnings may come before it; no traceback)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("sora-hf: error: "), err[-3000:]
    assert sum(line.startswith("sora-hf: error") for line in lines) == 1
    return lines[-1]


# ---- recipes ---------------------------------------------------------------------------------------------------


def test_a_key_given_twice_is_refused_naming_the_key_and_lines(corpus, tmp_path, capsys):
    text = yaml.safe_dump(tiny_recipe(corpus, tmp_path / "run"), allow_unicode=True, sort_keys=False)
    text = text.replace("  learning_rate: 0.003\n", "  learning_rate: 0.003\n  learning_rate: 0.1\n")
    path = tmp_path / "twice.yaml"
    path.write_text(text, encoding="utf-8")
    first = text.splitlines().index("  learning_rate: 0.003") + 1
    assert cli_main(["pretrain", str(path)]) == 2
    line = _error_line(capsys)
    assert str(path) in line and f"the key 'learning_rate' is given twice (first at line {first})" in line
    assert f"line {first + 1}" in line
    assert not (tmp_path / "run").exists()


def test_yaml_no_in_a_string_field_is_the_word_no(corpus, tmp_path):
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run"))
    overrides = parse_set_options(["training.eval_strategy=no", "training.save_strategy=no"])
    recipe = load_pretrain_recipe(path, overrides)
    assert recipe.training["eval_strategy"] == "no" and recipe.training["save_strategy"] == "no"
    assert recipe.effective["training"]["eval_strategy"] == "no"  # what recipe.yaml of the run records
    with pytest.raises(RecipeError, match=r"training.eval_strategy: YAML reads yes/on/true as true.*quote it"):
        load_pretrain_recipe(path, parse_set_options(["training.eval_strategy=yes"]))


def test_learning_rate_zero_is_refused(corpus, tmp_path, capsys):
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run"))
    assert cli_main(["pretrain", str(path), "--set", "training.learning_rate=0"]) == 2
    assert "training.learning_rate=0 trains nothing" in _error_line(capsys)
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match="learning_rate=0"):
        parse_pretrain_recipe(tiny_recipe(corpus, tmp_path / "run", learning_rate=0.0))


# ---- pre-training: --resume --------------------------------------------------------------------------------------


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _stopped_run(corpus, out, objective="mlm", at=2, **training):
    """A run of 6 steps stopped after step `at` (checkpoint-`at` saved), as a killed one would be."""
    from test_pretraining import StopAt

    from sora_hf.runs import run_pretraining

    raw = tiny_recipe(corpus, out, objective=objective, save_steps=2, eval_steps=100, **training)
    run_pretraining(parse_pretrain_recipe(raw), callbacks=[StopAt(at)])
    return raw


def test_resume_without_a_run_folder_is_refused(corpus, tmp_path, capsys):
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run"))
    assert cli_main(["pretrain", str(path), "--resume"]) == 2
    line = _error_line(capsys)
    assert f"--resume: {tmp_path / 'run'} does not exist: there is no run to resume" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("held", ["nothing", "files"])
def test_resume_of_a_folder_without_checkpoints_is_refused_and_left_as_it_was(held, corpus, tmp_path, capsys):
    """The regression of issue 26: an output folder without a checkpoint trained from scratch under --resume."""
    run = tmp_path / "run"
    run.mkdir()
    if held == "files":
        (run / "notes.txt").write_text("mine", encoding="utf-8")
        (run / "checkpoint-3").mkdir()  # half-written: no trainer_state.json, no weights
    before = _snapshot(run)
    path = _recipe_file(tmp_path, tiny_recipe(corpus, run))
    assert cli_main(["pretrain", str(path), "--resume"]) == 2
    assert f"--resume: {run} holds no complete checkpoint-* folder to resume from" in _error_line(capsys)
    assert _snapshot(run) == before


def test_resume_with_another_objective_is_refused_naming_both(corpus, tmp_path, capsys):
    raw = _stopped_run(corpus, tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    raw = tiny_recipe(corpus, tmp_path / "run", objective="clm", save_steps=2, eval_steps=100)
    assert cli_main(["pretrain", str(_recipe_file(tmp_path, raw)), "--resume"]) == 2
    line = _error_line(capsys)
    assert "checkpoint-2 was trained as SoraForMaskedLM; the recipe (objective clm) trains SoraForCausalLM" in line
    assert _snapshot(tmp_path / "run") == before


def test_resume_of_a_finished_run_says_so_and_changes_nothing(corpus, tmp_path, caplog):
    import logging

    raw = tiny_recipe(corpus, tmp_path / "run", max_steps=2, save_steps=2, eval_steps=100)
    path = _recipe_file(tmp_path, raw)
    assert cli_main(["pretrain", str(path)]) == 0
    before = _snapshot(tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="sora_hf"):
        assert cli_main(["pretrain", str(path), "--resume"]) == 0
    assert f"{tmp_path / 'run'} is complete (step 2 of 2, checkpoint-2): nothing to resume" in caplog.text
    assert _snapshot(tmp_path / "run") == before
    # more steps asked for: the run continues
    assert cli_main(["pretrain", str(path), "--resume", "--set", "training.max_steps=3"]) == 0
    assert (tmp_path / "run" / "checkpoint-3").is_dir()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train_steps"] == 3


def test_resume_refuses_a_pickle_with_an_unexpected_global_in_one_line(corpus, tmp_path, capsys):
    import datetime

    import torch

    _stopped_run(corpus, tmp_path / "run")
    rng_file = tmp_path / "run" / "checkpoint-2" / "rng_state.pth"
    torch.save({"python": datetime.date(2020, 1, 1)}, rng_file)  # not a tensor: weights_only refuses it
    before = _snapshot(tmp_path / "run")
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run", save_steps=2, eval_steps=100))
    assert cli_main(["pretrain", str(path), "--resume"]) == 2
    line = _error_line(capsys)
    assert f"refused to load {rng_file}" in line and "(datetime.date)" in line
    assert _snapshot(tmp_path / "run") == before


# ---- a full disk -------------------------------------------------------------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_in_a_checkpoint_save_removes_the_new_folder(corpus, tmp_path, capsys, monkeypatch):
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", _no_space)
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run", save_steps=2, eval_steps=100))
    assert cli_main(["pretrain", str(path)]) == 2
    line = _error_line(capsys)
    assert f"no space left on {tmp_path / 'run'}" in line and "nothing was left behind" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "recipe.yaml"]


def test_full_disk_in_the_final_save_keeps_the_existing_run_whole(corpus, tmp_path, capsys, monkeypatch):

    keep = {"save_steps": 2, "eval_steps": 100, "save_total_limit": 5}  # Trainer removes no checkpoint of ours
    _stopped_run(corpus, tmp_path / "run", save_total_limit=5)
    before = _snapshot(tmp_path / "run")
    monkeypatch.setattr(reporting, "write_model_card", _no_space)  # the last file every run writes (runs.common)
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run", **keep))
    assert cli_main(["pretrain", str(path), "--resume"]) == 2
    line = _error_line(capsys)
    assert f"no space left on {tmp_path / 'run'}" in line and "checkpoint-6" in line and "--resume" in line
    after = _snapshot(tmp_path / "run")
    assert {k: v for k, v in after.items() if k in before} == before  # the model, metrics... as they were
    new = {k.split("/")[0] for k in after.keys() - before.keys()}
    assert new == {"checkpoint-4", "checkpoint-6"}  # complete checkpoints to resume from; nothing half-written
    # --overwrite on a full disk: the previous run stays, and no staging folder is left
    assert cli_main(["pretrain", str(path), "--overwrite"]) == 2
    assert "no space left on" in _error_line(capsys)
    assert _snapshot(tmp_path / "run") == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "recipe.yaml", "run"]


# ---- fine-tuning -------------------------------------------------------------------------------------------------


def _own_data_recipe(checkpoint, train_file, out) -> dict:
    return {
        "name": "own",
        "checkpoint": str(checkpoint),
        "output_dir": str(out),
        "method": "full",
        "max_length": 32,
        "doc_stride": 8,
        "data": {"task_type": "classification", "train_file": str(train_file)},
        "training": {"max_steps": 2, "per_device_train_batch_size": 4, "disable_tqdm": True},
    }


def test_a_training_file_with_one_label_is_refused_naming_file_and_label(encoder_checkpoint, tmp_path, capsys):
    train = tmp_path / "reviews.csv"
    train.write_text("text,label\n" + "".join(f"第{i}条评论很好,positive\n" for i in range(20)), encoding="utf-8")
    path = _recipe_file(tmp_path, _own_data_recipe(encoder_checkpoint, train, tmp_path / "ft"))
    assert cli_main(["finetune", str(path)]) == 2
    line = _error_line(capsys)
    assert f"{train}: every training row has the label 'positive'" in line and "at least 2 classes" in line
    assert not (tmp_path / "ft").exists()


def test_full_disk_while_fine_tuning_leaves_the_target_as_it_was(encoder_checkpoint, tmp_path, capsys, monkeypatch):
    from test_outputs import _finetune_recipe

    import sora_hf.runs.finetune as finetune

    out = tmp_path / "ft"
    raw = _finetune_recipe(encoder_checkpoint, out, max_steps=1).effective
    path = _recipe_file(tmp_path, raw)
    monkeypatch.setattr(finetune, "save_finetuned", _no_space)
    assert cli_main(["finetune", str(path)]) == 2
    line = _error_line(capsys)
    assert f"no space left on {out}" in line and "nothing was left behind" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]
    monkeypatch.undo()
    assert cli_main(["finetune", str(path)]) == 0
    before = _snapshot(out)
    monkeypatch.setattr(reporting, "write_model_card", _no_space)
    assert cli_main(["finetune", str(path), "--overwrite"]) == 2
    assert f"no space left on {out}" in _error_line(capsys)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft", "recipe.yaml"]


def test_torch_reports_a_full_disk_without_an_errno(tmp_path, monkeypatch):
    """torch.save on a full disk raises a RuntimeError from its zip writer (no errno): taken for a full disk only when
    the folder's filesystem has (almost) no space left."""
    import shutil

    from sora_hf.folders.outputs import disk_space_errors, is_disk_full

    # what torch.save raises when a write fails (pytorch/pytorch issues on full disks)
    error = RuntimeError(
        "[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file data/0: file write failed"
    )
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2**30))
    assert not is_disk_full(error, tmp_path)  # space left: another problem, reported as it is
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=4096))
    assert is_disk_full(error, tmp_path) and not is_disk_full(RuntimeError("shape mismatch"), tmp_path)
    with pytest.raises(RecipeError, match=rf"no space left on {tmp_path / 'out'} \(4.0 KiB free\)"):
        with disk_space_errors(tmp_path / "out"):
            raise error
