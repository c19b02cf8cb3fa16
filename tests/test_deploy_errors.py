"""Commands that ship or serve a model refuse, in one line and before doing anything, what nobody could use:
`push` of weights cut short, `export onnx` of a folder without a tokenizer, and `serve` / `export onnx` of a folder
whose config asks for custom code (never transformers' interactive "run the custom code? [y/N]" prompt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from helpers import tiny_config_kwargs
from hub_server import TOKEN, HubServer

from sora_hf import SoraConfig, SoraForSequenceClassification
from sora_hf.cli import main as cli_main
from sora_hf.hub import push
from sora_hf.tokenizer import train_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["今天天气很好", "this movie is bad 你好", "质量不错，推荐购买"] * 5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tokenizer = train_tokenizer(TEXTS, vocab_size=60, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), num_labels=2))
    folder = tmp_path_factory.mktemp("deploy") / "classifier"
    SoraForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def online(monkeypatch, tmp_path):
    with HubServer(lifetime=120) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
        yield hub


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-64])
    elif how == "extra bytes":
        path.write_bytes(data + b"\0" * 16)
    else:  # a header whose offsets run past the data, the file length unchanged
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        name = next(key for key in header if key != "__metadata__")
        header[name]["data_offsets"][1] += 4
        raw = json.dumps(header, separators=(",", ":")).encode().ljust(size)
        assert len(raw) == size
        path.write_bytes(data[:8] + raw + data[8 + size :])


@pytest.mark.parametrize("how", ["truncated", "extra bytes", "bad offsets"])
def test_push_refuses_weights_that_would_not_load(online, checkpoint, tmp_path, capsys, how):
    folder = tmp_path / "copy"
    shutil.copytree(checkpoint, folder)
    _corrupt(folder / "model.safetensors", how)
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="model.safetensors.*nothing was pushed"):
        push(folder, "tester/broken")
    assert cli_main(["push", str(folder), "tester/broken"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sora-hf: error: ") and err.count("\n") == 1 and "model.safetensors" in err
    assert "tester/broken" not in online.repos  # refused before any request to the Hub
    assert (folder / "model.safetensors").read_bytes() == before
    push(checkpoint, "tester/whole")  # the intact folder still pushes
    assert (
        "model.safetensors"
        in online.repos["tester/whole"].commits[online.repos["tester/whole"].branches["main"]].files
    )
