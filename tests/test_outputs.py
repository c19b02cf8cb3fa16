"""Never lose what a user saved: every command that writes refuses an output folder that is, contains or lies
inside an input, the working directory or home; refuses a non-empty folder without --overwrite; and with it, swaps
the new result in only once it exists, so a failed run leaves the previous one as it was."""

import json
import os

import pytest
import torch
from helpers import tiny_config_kwargs
from test_pretraining import corpus, tiny_recipe  # noqa: F401  (fixture)
from transformers import TrainerCallback

from sora_hf import SoraConfig, SoraForMaskedLM, SoraForSequenceClassification
from sora_hf.cli import main as cli_main
from sora_hf.folders.outputs import (
    STAGING_MARKER,
    OutputFolder,
    OutputFolderError,
    check_output_folder,
    complete_checkpoints,
)
from sora_hf.recipes import RecipeError, parse_finetune_recipe, parse_pretrain_recipe
from sora_hf.runs import run_finetuning, run_pretraining


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _precious(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("precious", encoding="utf-8")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return _snapshot(folder)


# ---- the policy ---------------------------------------------------------------------------------------------


def test_refuses_the_working_directory_and_what_contains_it(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for target in (".", str(work), str(tmp_path)):
        with pytest.raises(OutputFolderError, match="working directory"):
            check_output_folder(target, overwrite=True)
    assert check_output_folder("runs/x", overwrite=True).name == "x"  # inside it is fine


def test_refuses_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(OutputFolderError, match="home folder"):
        check_output_folder(tmp_path / "home", overwrite=True)
    with pytest.raises(OutputFolderError, match="home folder"):
        check_output_folder(tmp_path, overwrite=True)


def test_refuses_an_input_what_holds_one_and_what_lies_inside_one(tmp_path):
    checkpoint, data = tmp_path / "ckpt", tmp_path / "data" / "train.csv"
    checkpoint.mkdir()
    data.parent.mkdir()
    data.write_text("text,label\n", encoding="utf-8")
    inputs = [checkpoint, data, None, "org/hub-id"]
    with pytest.raises(OutputFolderError, match="is an input"):
        check_output_folder(checkpoint, inputs=inputs, overwrite=True)
    with pytest.raises(OutputFolderError, match="contains an input"):
        check_output_folder(tmp_path / "data", inputs=inputs, overwrite=True)
    with pytest.raises(OutputFolderError, match="lies inside an input"):
        check_output_folder(checkpoint / "finetuned", inputs=inputs, overwrite=True)
    check_output_folder(tmp_path / "out", inputs=inputs)


def test_refuses_a_file_and_a_non_empty_folder_without_overwrite(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        check_output_folder(tmp_path / "a-file", overwrite=True)
    _precious(tmp_path / "run")
    with pytest.raises(OutputFolderError, match="--overwrite") as refused:
        check_output_folder(tmp_path / "run")
    assert "--resume" not in str(refused.value)  # only commands that take --resume suggest it
    with pytest.raises(OutputFolderError, match="--resume"):
        check_output_folder(tmp_path / "run", can_resume=True)
    check_output_folder(tmp_path / "run", overwrite=True)
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty")


def test_overwrite_swaps_in_only_a_finished_run(tmp_path):
    target = tmp_path / "run"
    before = _precious(target)
    with pytest.raises(RuntimeError), OutputFolder(target, overwrite=True) as out:
        assert out.path != target and (out.path / STAGING_MARKER).is_file()
        (out.path / "model.safetensors").write_bytes(b"half")
        assert _snapshot(target) == before  # the old run is untouched while the new one is written
        raise RuntimeError("killed")
    assert _snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the partial run was removed
    with OutputFolder(target, overwrite=True) as out:
        (out.path / "model.safetensors").write_bytes(b"new")
        out.commit()
    assert _snapshot(target) == {"model.safetensors": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_stale_staging_folder_is_removed_only_when_it_is_ours(tmp_path):
    target = tmp_path / "run"
    _precious(target)
    stale = tmp_path / ".run.sora-hf-new"
    stale.mkdir()
    (stale / "junk").write_text("from a killed run")
    with pytest.raises(OutputFolderError, match="not written by sora-hf"):
        OutputFolder(target, overwrite=True).__enter__()
    assert (stale / "junk").is_file()
    (stale / STAGING_MARKER).write_text("")
    with OutputFolder(target, overwrite=True) as out:
        assert not (out.path / "junk").exists()
        out.commit()


def test_a_replacement_killed_between_its_renames_leaves_the_old_run_to_the_user(tmp_path):
    target, retired = tmp_path / "run", tmp_path / ".run.sora-hf-old"
    before = _precious(retired)  # the old run, renamed aside, then the process died before the new one moved in
    (target / "model.safetensors").parent.mkdir()
    (target / "model.safetensors").write_bytes(b"a later run")
    with pytest.raises(OutputFolderError, match="interrupted replacement"):
        OutputFolder(target, overwrite=True).__enter__()
    assert _snapshot(retired) == before and not (tmp_path / ".run.sora-hf-new").exists()


# ---- the commands -------------------------------------------------------------------------------------------


def _write_recipe(tmp_path, raw, name="recipe.yaml"):
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_pretrain_output_dir_dot_with_overwrite_leaves_the_working_directory(corpus, tmp_path, monkeypatch):  # noqa: F811
    work = tmp_path / "work"
    before = _precious(work)
    monkeypatch.chdir(work)
    recipe = _write_recipe(tmp_path, tiny_recipe(corpus, "unused"))
    assert cli_main(["pretrain", str(recipe), "--output-dir", ".", "--overwrite"]) == 2
    assert _snapshot(work) == before


def test_pretrain_output_holding_the_corpus_is_refused(corpus, tmp_path):  # noqa: F811
    before = _snapshot(tmp_path)
    with pytest.raises(OutputFolderError, match="contains an input"):
        run_pretraining(parse_pretrain_recipe(tiny_recipe(corpus, tmp_path)), overwrite=True)
    assert _snapshot(tmp_path) == before


def test_a_typo_in_the_data_path_with_overwrite_keeps_the_previous_run(corpus, tmp_path):  # noqa: F811
    good = tmp_path / "good"
    run_pretraining(parse_pretrain_recipe(tiny_recipe(corpus, good, max_steps=2)))
    before = _snapshot(good)
    with pytest.raises(FileNotFoundError, match="corpu.txt"):
        run_pretraining(parse_pretrain_recipe(tiny_recipe(tmp_path / "corpu.txt", good)), overwrite=True)
    assert _snapshot(good) == before


class Explode(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("the machine went down")


def test_a_run_that_fails_during_training_leaves_the_previous_one(corpus, tmp_path):  # noqa: F811
    good = tmp_path / "good"
    run_pretraining(parse_pretrain_recipe(tiny_recipe(corpus, good, max_steps=2)))
    before = _snapshot(good)
    with pytest.raises(RuntimeError, match="went down"):
        run_pretraining(parse_pretrain_recipe(tiny_recipe(corpus, good)), overwrite=True, callbacks=[Explode()])
    assert _snapshot(good) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "good"]
    metrics = run_pretraining(parse_pretrain_recipe(tiny_recipe(corpus, good, max_steps=3)), overwrite=True)
    assert json.loads((good / "metrics.json").read_text())["train_steps"] == metrics["train_steps"] == 3


@pytest.fixture(scope="module")
def encoder(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    SoraForMaskedLM(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer)))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _finetune_recipe(checkpoint, out, **training):
    return parse_finetune_recipe(
        {
            "name": "t",
            "checkpoint": str(checkpoint),
            "output_dir": str(out),
            "method": "full",
            "max_length": 32,
            "doc_stride": 8,
            "data": {"embedded": "sentiment", "max_train_examples": 16, "max_eval_examples": 8},
            "training": {"max_steps": 2, "per_device_train_batch_size": 8, "disable_tqdm": True, **training},
        }
    )


def test_finetune_into_its_own_checkpoint_is_refused_and_the_checkpoint_kept(encoder, tmp_path):
    before = _snapshot(encoder)
    with pytest.raises(OutputFolderError, match="is an input"):
        run_finetuning(_finetune_recipe(encoder, encoder), overwrite=True)
    with pytest.raises(OutputFolderError, match="lies inside an input"):
        run_finetuning(_finetune_recipe(encoder, encoder / "sentiment"), overwrite=True)
    assert _snapshot(encoder) == before


def test_finetune_overwrite_replaces_only_after_the_run(encoder, tmp_path):
    out = tmp_path / "ft"
    before = _precious(out)
    with pytest.raises(RecipeError, match="already holds files"):
        run_finetuning(_finetune_recipe(encoder, out))
    with pytest.raises(RuntimeError, match="went down"):
        run_finetuning(_finetune_recipe(encoder, out), overwrite=True, callbacks=[Explode()])
    assert _snapshot(out) == before
    run_finetuning(_finetune_recipe(encoder, out), overwrite=True)
    assert (out / "metrics.json").is_file() and not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft"]


@pytest.fixture(scope="module")
def classifier(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), **labels))
    SoraForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "command",
    [
        ["prune", "{src}", "{out}", "--max-examples", "8", "--importance-batches", "1"],
        ["quantize", "{src}", "{out}", "--task", "none"],
        ["export", "onnx", "{src}", "{out}"],
    ],
    ids=["prune", "quantize", "export"],
)
def test_deploy_commands_refuse_their_source_and_existing_folders(command, classifier, tmp_path, capsys):
    before = _snapshot(classifier)
    fill = {"src": str(classifier), "out": str(classifier)}
    assert cli_main([part.format(**fill) for part in command]) == 2
    assert "is an input" in capsys.readouterr().err
    assert _snapshot(classifier) == before

    out = tmp_path / "out"
    kept = _precious(out)
    fill["out"] = str(out)
    assert cli_main([part.format(**fill) for part in command]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _snapshot(out) == kept
    assert cli_main([*(part.format(**fill) for part in command), "--overwrite"]) == 0
    assert not (out / "notes.txt").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---- resume -------------------------------------------------------------------------------------------------


def test_complete_checkpoints_skip_half_written_ones(tmp_path):
    from safetensors.torch import save_file

    for step in (2, 4, 6):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"w": torch.zeros(4)}, str(folder / "model.safetensors"))
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-6" / "trainer_state.json").unlink()  # killed before the state was written
    (tmp_path / "checkpoint-4" / "model.safetensors").write_bytes(b"\x10\x00")  # killed while writing weights
    complete, skipped = complete_checkpoints(tmp_path)
    assert [p.name for p in complete] == ["checkpoint-2"]
    assert set(skipped) == {"checkpoint-4", "checkpoint-6"} and "trainer_state.json" in skipped["checkpoint-6"]
    assert "model.safetensors" in skipped["checkpoint-4"]
    assert os.listdir(tmp_path)  # nothing was removed


def test_resume_with_another_model_size_is_refused_by_name(corpus, tmp_path):  # noqa: F811
    from test_pretraining import StopAt

    raw = tiny_recipe(corpus, tmp_path / "run", save_steps=2)
    run_pretraining(parse_pretrain_recipe(raw), callbacks=[StopAt(2)])
    raw["model"].update(hidden_size=64, intermediate_size=128)
    with pytest.raises(RecipeError, match=r"--resume: .*checkpoint-2 was trained with another model \(hidden_size"):
        run_pretraining(parse_pretrain_recipe(raw), resume=True)


def test_the_saved_recipe_is_the_effective_one(corpus, tmp_path):  # noqa: F811
    import yaml

    from sora_hf.recipes import load_pretrain_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(corpus, tmp_path / "unused")), encoding="utf-8")
    out = tmp_path / "run"
    assert cli_main(["pretrain", str(path), "--set", "training.max_steps='2'", "--output-dir", str(out)]) == 0
    saved = (out / "recipe.yaml").read_text(encoding="utf-8")
    assert "training.max_steps='2'" in saved.splitlines()[0]  # the header names the overrides as given
    again = load_pretrain_recipe(out / "recipe.yaml")
    assert again.training["max_steps"] == 2 and again.output_dir == str(out)
    assert json.loads((out / "metrics.json").read_text())["train_steps"] == 2
    assert "max_steps: 2" in (out / "README.md").read_text(encoding="utf-8")
