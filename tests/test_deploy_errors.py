"""Commands that ship or serve a model refuse, in one line and before doing anything, what nobody could use:
`push` of weights cut short, `export onnx` of a folder without a tokenizer, and `serve` / `export onnx` of a folder
whose config asks for custom code (never transformers' interactive "run the custom code? [y/N]" prompt)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI
from helpers import tiny_config_kwargs

from sora_hf import SoraConfig, SoraForSequenceClassification
from sora_hf.cli import main as cli_main
from sora_hf.hub import push
from sora_hf.serving import create_app
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


# ---------------------------------------------------------------------------------------------------- server input


def _answer_everything(items, parameters):
    return [{"label": "positive", "score": 1.0} for _ in items]


def _post_all(bodies: list[dict]) -> tuple[list[httpx.Response], FastAPI]:
    app = create_app(object(), "text-classification", batch_function=_answer_everything)

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sora.test") as client:
                return [await client.post("/v1/predict", **body) for body in bodies]

    return asyncio.run(main()), app


@pytest.mark.parametrize("text", ["\u200b", "\u200c\u200d", "\ufeff", " \u2060\u200b\n", "\u200b\t\u3000"])
def test_server_refuses_text_of_only_zero_width_characters(text):
    (refused, listed, fine), app = _post_all(
        [{"json": {"inputs": text}}, {"json": {"inputs": ["好", text]}}, {"json": {"inputs": "好\u200b"}}]
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"].startswith("inputs[0] has an empty text (only invisible format characters: U+")
    assert listed.status_code == 422 and listed.json()["error"].startswith("inputs[1] has an empty text")
    assert fine.status_code == 200  # a visible character with a zero-width one is a text
    assert app.state.metrics.registry.get_sample_value("sora_serving_items_total") == 1


def test_question_answering_pipeline_refuses_zero_width_question():
    from sora_hf.pipelines.question_answering import SoraQuestionAnsweringPipeline

    with pytest.raises(ValueError, match="`question` must be a non-empty string with a visible character"):
        SoraQuestionAnsweringPipeline._check_example({"question": "\u200b\ufeff", "context": "会议在上海举行。"})
    assert (
        SoraQuestionAnsweringPipeline._check_example({"question": "哪里？", "context": "上海"})["question"] == "哪里？"
    )


def test_server_names_the_encoding_and_the_nesting_of_a_body_it_cannot_parse():
    gbk = '{"inputs": "质量不错"}'.encode("gbk")
    latin1 = '{"inputs": "caf\u00e9"}'.encode("latin-1")
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = {"content-type": "application/json"}
    (gbk_answer, latin1_answer, deep_answer, utf8_answer), app = _post_all(
        [
            {"content": gbk, "headers": headers},
            {"content": latin1, "headers": headers},
            {"content": deep, "headers": headers},
            {"content": '{"inputs": "质量不错"}'.encode(), "headers": headers},
        ]
    )
    position = gbk.index("质".encode("gbk"))
    assert gbk_answer.status_code == 400
    assert gbk_answer.json()["error"].startswith(
        f"the body is not valid UTF-8 JSON (byte 0x{gbk[position]:02x} at position {position}"
    )
    assert "send the JSON encoded as UTF-8" in gbk_answer.json()["error"]
    assert latin1_answer.status_code == 400 and "byte 0xe9 at position 15" in latin1_answer.json()["error"]
    assert deep_answer.status_code == 400 and "nested too deeply" in deep_answer.json()["error"]
    assert utf8_answer.status_code == 200
    assert app.state.metrics.registry.get_sample_value("sora_serving_errors_total", {"kind": "invalid_json"}) == 3


# ---------------------------------------------------------------------------------------------------- commands


@pytest.fixture
def custom_code_folder(checkpoint, tmp_path) -> Path:
    """A folder whose config needs code shipped with it (a model_type transformers does not know, an auto_map);
    the code leaves a marker file if it ever runs."""
    folder = tmp_path / "mystery"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="mystery",
        architectures=["MysteryForSequenceClassification"],
        auto_map={
            "AutoConfig": "configuration_mystery.MysteryConfig",
            "AutoModelForSequenceClassification": "configuration_mystery.MysteryForSequenceClassification",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "code-ran"
    (folder / "configuration_mystery.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import PretrainedConfig\n\n\nclass MysteryConfig(PretrainedConfig):\n"
        "    model_type = 'mystery'\n"
    )
    return folder


@pytest.mark.parametrize("command", [["serve"], ["export", "onnx"]])
def test_custom_code_is_refused_in_one_line_without_a_prompt(custom_code_folder, tmp_path, capsys, command):
    argv = [*command, str(custom_code_folder)] + ([str(tmp_path / "onnx")] if command[0] == "export" else [])
    assert cli_main(argv) == 2
    out, err = capsys.readouterr()
    assert "[y/N]" not in out + err and "Do you wish" not in out + err  # transformers' interactive prompt
    assert err.startswith("sora-hf: error: ") and err.count("\n") == 1, err
    assert "custom code" in err and str(custom_code_folder) in err
    assert not (tmp_path / "code-ran").exists() and not (tmp_path / "onnx").exists()


def test_export_onnx_refuses_a_folder_without_its_tokenizer(checkpoint, tmp_path, capsys):
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(checkpoint, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    assert cli_main(["export", "onnx", str(folder), str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sora-hf: error: ") and err.count("\n") == 1, err
    assert f"{folder} has no tokenizer (tokenizer_config.json, tokenizer.json missing)" in err
    assert not (tmp_path / "onnx").exists()
