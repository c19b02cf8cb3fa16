"""What `sora-hf serve --engine vllm` asks vLLM for, per head, and what it refuses before vLLM starts (no vLLM
needed here: tests/test_vllm.py runs the engine in .venv-vllm)."""

import json
import shlex

import pytest
import torch
from helpers import tiny_config_kwargs

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
)
from sora_hf.cli import main as cli_main
from sora_hf.serving.vllm_engine import VllmServingError, engine_arguments, serve_command


def _saved(tmp_path, cls, name="model", **options):
    torch.manual_seed(0)
    folder = tmp_path / name
    cls(SoraConfig(**tiny_config_kwargs(**options))).save_pretrained(folder)
    return folder


def test_a_causal_lm_is_generated_by_the_transformers_backend_as_remote_code(tmp_path):
    folder = _saved(tmp_path, SoraForCausalLM)
    assert engine_arguments(folder, trust_remote_code=True) == {
        "model": str(folder),
        "model_impl": "transformers",
        "trust_remote_code": True,
        "runner": "generate",
    }


@pytest.mark.parametrize("pooling, expected", [("cls", "CLS"), ("mean", "MEAN"), ("last", "LAST")])
def test_a_classifier_is_pooled_as_it_was_trained(tmp_path, pooling, expected):
    """vLLM pools with CLS unless told; a mean-pooled head read that way gives other probabilities."""
    folder = _saved(tmp_path, SoraForSequenceClassification, num_labels=3, classifier_pooling=pooling)
    arguments = engine_arguments(folder, trust_remote_code=True)
    assert arguments["runner"] == "pooling" and arguments["pooler_config"] == {"seq_pooling_type": expected}
    assert "hf_overrides" not in arguments


def test_an_embedding_head_is_served_as_vllms_embedding_model(tmp_path):
    folder = _saved(tmp_path, SoraForSentenceEmbedding, classifier_pooling="mean")
    arguments = engine_arguments(folder, trust_remote_code=True)
    # vLLM picks its embedding class by the architecture's suffix; SoraModel's weights are the head's under `model.`
    assert arguments["hf_overrides"] == {"architectures": ["SoraModel"]}
    assert arguments["pooler_config"] == {"seq_pooling_type": "MEAN"}


def test_a_token_classifier_points_vllms_classifier_lookup_at_itself(tmp_path):
    folder = _saved(tmp_path, SoraForTokenClassification, num_labels=5)
    arguments = engine_arguments(folder, trust_remote_code=True)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert arguments["hf_overrides"]["auto_map"] == {
        **auto_map,
        "AutoModelForSequenceClassification": "modeling_sora.SoraForTokenClassification",
    }
    assert arguments["pooler_config"] == {"task": "token_classify"}


@pytest.mark.parametrize(
    "cls, options, says",
    [
        (SoraForQuestionAnswering, {}, "serve this head with `sora-hf serve"),
        (SoraForSeq2SeqLM, {}, "serve this head with `sora-hf serve"),
        (SoraForTokenClassification, {"num_labels": 5, "use_crf": True}, "CRF"),
        (SoraForSequenceClassification, {"num_labels": 2, "multi_level_attention": True}, "every layer"),
    ],
)
def test_heads_vllm_would_serve_differently_are_refused_with_where_to_serve_them(tmp_path, cls, options, says):
    folder = _saved(tmp_path, cls, **options)
    with pytest.raises(VllmServingError, match="vLLM") as error:
        engine_arguments(folder, trust_remote_code=True)
    assert says in str(error.value)


def test_remote_code_is_run_only_when_the_user_says_so(tmp_path):
    folder = _saved(tmp_path, SoraForCausalLM)
    with pytest.raises(VllmServingError, match="--trust-remote-code"):
        engine_arguments(folder)
    (folder / "modeling_sora.py").unlink()
    with pytest.raises(ValueError, match="no modeling_sora.py"):
        engine_arguments(folder, trust_remote_code=True)


def test_a_folder_that_is_not_sora_is_left_to_vllm(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(**tiny_config_kwargs(), tie_word_embeddings=False)).save_pretrained(folder)
    assert engine_arguments(folder) == {"model": str(folder)}


def test_the_server_command_carries_the_engine_arguments_as_flags(tmp_path):
    folder = _saved(tmp_path, SoraForTokenClassification, num_labels=5)
    arguments = engine_arguments(folder, trust_remote_code=True)
    command = serve_command(
        folder, port=9000, trust_remote_code=True, tensor_parallel_size=2, engine_args=["--max-model-len", "64"]
    )
    assert command[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", str(folder)]

    def flag(name):
        return command[command.index(name) + 1]

    assert flag("--port") == "9000" and flag("--tensor-parallel-size") == "2" and flag("--runner") == "pooling"
    assert json.loads(flag("--hf-overrides")) == arguments["hf_overrides"]
    assert json.loads(flag("--pooler-config")) == arguments["pooler_config"]
    assert "--trust-remote-code" in command and command[-2:] == ["--max-model-len", "64"]


def test_print_command_writes_the_vllm_serve_line_and_starts_nothing(tmp_path, capsys):
    """For machines where vLLM runs without sora_hf: the plain `vllm serve` line with what the folder needs."""
    folder = _saved(tmp_path, SoraForSequenceClassification, num_labels=3, classifier_pooling="mean")
    argv = ["serve", "--engine", "vllm", str(folder), "--trust-remote-code", "--port", "9001", "--print-command"]
    assert cli_main([*argv, "--", "--dtype", "bfloat16"]) == 0
    command = shlex.split(capsys.readouterr().out)
    assert command[:3] == ["vllm", "serve", str(folder)]
    assert command[command.index("--pooler-config") + 1] == json.dumps({"seq_pooling_type": "MEAN"})
    assert command[command.index("--model-impl") + 1] == "transformers" and "--trust-remote-code" in command
    assert command[command.index("--port") + 1] == "9001" and command[-2:] == ["--dtype", "bfloat16"]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["serve", "FOLDER", "--tensor-parallel-size", "2"], "only with --engine vllm"),
        (["serve", "FOLDER", "--print-command"], "only with --engine vllm"),
        (["serve", "FOLDER", "--", "--max-model-len", "64"], "only with `serve --engine vllm`"),
        (["serve", "FOLDER", "--engine", "vllm"], "--trust-remote-code"),
    ],
)
def test_the_command_line_refuses_vllm_flags_out_of_place(tmp_path, capsys, argv, says):
    folder = _saved(tmp_path, SoraForCausalLM)
    assert cli_main([str(folder) if a == "FOLDER" else a for a in argv]) == 2
    assert says in capsys.readouterr().err
