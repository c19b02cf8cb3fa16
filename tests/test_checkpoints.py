"""No silent wrong model: a checkpoint is loaded only into a class its weights fit, a corrupt file is named, and a
path that does not exist is "no such folder" at once, never a Hub lookup."""

import json
import os
import pickle
import time

import pytest
import torch
from helpers import tiny_config_kwargs
from test_outputs import _finetune_recipe
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
)

from sora_hf import SoraConfig, SoraForMaskedLM, SoraForSequenceClassification
from sora_hf.cli import main as cli_main
from sora_hf.folders.checkpoints import CheckpointError, load_checked, looks_like_path, resolve_checkpoint
from sora_hf.recipes import RecipeError
from sora_hf.runs import run_finetuning


@pytest.fixture(scope="module")
def folders(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    vocab = len(tokenizer)
    SoraForMaskedLM(SoraConfig(**tiny_config_kwargs(vocab_size=vocab))).save_pretrained(root / "mlm")
    SoraForSequenceClassification(SoraConfig(**tiny_config_kwargs(vocab_size=vocab, num_labels=2))).save_pretrained(
        root / "classifier"
    )
    bert = BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertForMaskedLM(bert).save_pretrained(root / "bert")
    for name in ("mlm", "classifier", "bert"):
        tokenizer.save_pretrained(root / name)
    return root


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _finetune(checkpoint, out):
    return _finetune_recipe(checkpoint, out, max_steps=1)


def test_a_head_the_checkpoint_lacks_is_refused_a_new_task_head_is_not(folders):
    with pytest.raises(CheckpointError, match=r"no weights for 4 model parameters of SoraForMaskedLM.*SoraForSeq"):
        load_checked(AutoModelForMaskedLM, folders / "classifier")
    fine = load_checked(AutoModelForSequenceClassification, folders / "mlm", heads="new_head", num_labels=3)
    assert fine.config.num_labels == 3
    with pytest.raises(CheckpointError, match="classifier"):
        load_checked(AutoModelForSequenceClassification, folders / "mlm")  # serving: no random head
    assert type(load_checked(AutoModelForMaskedLM, folders / "mlm")).__name__ == "SoraForMaskedLM"


def test_another_model_type_is_refused_for_finetuning(folders, tmp_path):
    with pytest.raises(RecipeError, match="'bert' model, not a Sora one"):
        run_finetuning(_finetune(folders / "bert", tmp_path / "a"))
    # a Sora folder whose config.json says llama: SoraConfig would read it, every weight would be MISSING
    relabelled = _copy(folders / "mlm", tmp_path / "relabelled")
    config = json.loads((relabelled / "config.json").read_text())
    config["model_type"] = "llama"
    (relabelled / "config.json").write_text(json.dumps(config))
    with pytest.raises(RecipeError, match="'llama' model, not a Sora one"):
        run_finetuning(_finetune(relabelled, tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_weights_file_is_named(damage, folders, tmp_path, capsys):
    broken = _copy(folders / "mlm", tmp_path / "broken")
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checked(AutoModelForMaskedLM, broken)
    assert cli_main(["export", "onnx", str(broken), str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_invalid_config_json_is_named(folders, tmp_path, capsys):
    broken = _copy(folders / "mlm", tmp_path / "broken")
    (broken / "config.json").write_text('{"model_type": "sora", ', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        load_checked(AutoModelForMaskedLM, broken)
    assert cli_main(["prune", str(broken), str(tmp_path / "pruned")]) == 2
    assert "config.json is not valid JSON" in capsys.readouterr().err


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_booby_trapped_pickle_is_refused_without_suggesting_to_trust_it(folders, tmp_path):
    trapped = _copy(folders / "mlm", tmp_path / "trapped")
    (trapped / "model.safetensors").unlink()
    marker = tmp_path / "it-ran"
    with open(trapped / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"model.embed_tokens.weight": _Payload(marker)}, handle)
    with pytest.raises((CheckpointError, OSError)) as refused:
        load_checked(AutoModelForMaskedLM, trapped)
    assert not marker.exists()
    assert "pytorch_model.bin" in str(refused.value) and "weights_only" not in str(refused.value)


def test_a_mistyped_local_path_is_no_such_folder_at_once(folders, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(folders)
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("a local path was looked up on the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    for typo in ("mlmm/", "./mlmm", str(folders / "mlmm"), "mlm/extra", "~/nope-sora-ckpt", "a/b/c"):
        assert looks_like_path(typo), typo
        started = time.perf_counter()
        with pytest.raises(FileNotFoundError, match="no such folder"):
            resolve_checkpoint(typo)
        assert time.perf_counter() - started < 1.0
    assert not looks_like_path("org/model") and not looks_like_path("bert-base-chinese")
    assert cli_main(["finetune", "sentiment", "--checkpoint", "mlmm/", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "huggingface.co" not in err


def test_a_hub_id_offline_must_be_in_the_cache(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not a Hub repo in the local cache"):
        resolve_checkpoint("someone/not-cached-sora")


def test_a_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(tmp_path / "model.safetensors")


@pytest.mark.parametrize("command", ["export", "prune"])
def test_a_tokenizer_larger_than_the_embedding_is_refused(command, tokenizer, tmp_path, capsys):
    small = tmp_path / "small"
    config = SoraConfig(**tiny_config_kwargs(vocab_size=64, num_labels=2))
    SoraForSequenceClassification(config).save_pretrained(small)
    tokenizer.save_pretrained(small)  # ~2000 tokens for a 64-row embedding
    args = ["export", "onnx"] if command == "export" else ["prune"]
    assert cli_main([*args, str(small), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "vocab_size is 64" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("answer", ["missing", "unreachable"])
def test_online_a_hub_id_is_looked_up_once_and_a_miss_is_one_line(answer, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def model_info(self, repo_id, timeout=None, **kwargs):
        calls.append((repo_id, timeout))
        if answer == "missing":
            error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # what a 404 raises
            Exception.__init__(error, "404 Repository Not Found")
            raise error
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    expected = "no such model repo on the Hub" if answer == "missing" else "the Hub could not be reached"
    with pytest.raises(FileNotFoundError, match=expected):
        resolve_checkpoint("someone/sora-typo")
    assert calls == [("someone/sora-typo", 10.0)]
    with pytest.raises(FileNotFoundError, match=expected):  # a miss is asked again, never remembered
        resolve_checkpoint("someone/sora-typo")
    assert len(calls) == 2


def test_online_a_found_hub_id_is_looked_up_once_per_process(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **kw: calls.append(repo_id))
    for _ in range(3):  # run_finetuning, load_model and load_checked each resolve the checkpoint
        assert resolve_checkpoint("someone/sora-found-once") == "someone/sora-found-once"
    assert calls == ["someone/sora-found-once"]
