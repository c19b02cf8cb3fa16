"""`sora-hf convert` and `export llama` verify what they read before they write: a source whose config.json does not
describe its weights (another architecture, other sizes), damaged or pickled weights, a folder without a config, an
unknown architecture with custom code, and a Sora model that is not a causal decoder are each refused with one line,
exit status 2, advice that works, and nothing written; a full disk leaves nothing half-written.

Each bad input is built here from a tiny model saved and then edited as a careless user would."""

import errno
import json
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, LlamaConfig, LlamaForCausalLM, LlamaModel

from sora_hf import SoraConfig, SoraForCausalLM, SoraForMaskedLM, SoraForSequenceClassification
from sora_hf.cli import main

ENCODER = dict(
    vocab_size=160, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=64, pad_token_id=0,
)  # fmt: skip
DECODER = dict(
    vocab_size=160, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=5, eos_token_id=6,
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_progress_bars():
    """transformers' "Loading weights" bars write to stderr too; the error line is what these tests read."""
    from transformers.utils import logging as transformers_logging

    was = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    yield
    if was:
        transformers_logging.enable_progress_bar()


def refused(capsys, *args) -> str:
    """`sora-hf ARGS` in this process: exit status 2 and one line on stderr; returns the message."""
    code = main([str(arg) for arg in args])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("sora-hf: error: "), lines
    return lines[0].removeprefix("sora-hf: error: ")


def edit_config(folder, **changes):
    path = folder / "config.json"
    saved = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            saved.pop(key, None)
        else:
            saved[key] = value
    path.write_text(json.dumps(saved))


def save(model, folder):
    torch.manual_seed(0)
    model.eval().save_pretrained(folder)
    return folder


# ---- export llama: only a Sora causal decoder ----


@pytest.mark.parametrize("head", [SoraForMaskedLM, SoraForSequenceClassification], ids=lambda c: c.__name__)
def test_export_llama_refuses_an_encoder_instead_of_exporting_it_as_a_decoder(head, tmp_path, capsys):
    """Before: a LlamaForCausalLM folder, the head dropped, exit 0 and a parity.json that compared the encoder made
    causal with its own copy."""
    torch.manual_seed(0)
    extra = {"num_labels": 3} if head is SoraForSequenceClassification else {}
    source = save(head(SoraConfig(**ENCODER, **extra)), tmp_path / "sora")
    message = refused(capsys, "export", "llama", source, tmp_path / "llama")
    assert f"is a {head.__name__} encoder (is_decoder=false)" in message
    assert "export llama takes a Sora causal decoder (SoraForCausalLM" in message
    # a command that deploys it: export onnx for the heads it exports, serve for the others
    deploy = f"sora-hf export onnx {source}" if head is SoraForSequenceClassification else f"sora-hf serve {source}"
    assert deploy in message
    assert not (tmp_path / "llama").exists()


def test_export_llama_refuses_weights_that_its_decoder_would_drop(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    source = save(SoraForCausalLM(SoraConfig(**DECODER)), tmp_path / "sora")
    weights = load_file(source / "model.safetensors")
    save_file({**weights, "head.dense.weight": torch.zeros(4, 4)}, source / "model.safetensors", {"format": "pt"})
    message = refused(capsys, "export", "llama", source, tmp_path / "llama")
    assert "holds 1 weights that SoraForCausalLM has no place for (e.g. head.dense.weight)" in message
    assert not (tmp_path / "llama").exists()


# ---- convert: the config must describe the weights ----


def test_bert_weights_under_a_roberta_config_are_refused_and_the_advice_works(tmp_path, capsys):
    """Before: refused with advice to add --head sentence-embedding, which then wrote a random model with a passing
    parity.json (every weight UNEXPECTED)."""
    source = save(BertForMaskedLM(BertConfig(**ENCODER)), tmp_path / "source")
    edit_config(source, model_type="roberta")
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert "says model_type 'roberta' but architectures 'BertForMaskedLM' (a bert model)" in message
    assert "Set model_type to 'bert'" in message
    message = refused(capsys, "convert", source, tmp_path / "out", "--head", "sentence-embedding")
    assert "model_type 'roberta'" in message
    edit_config(source, architectures=None)  # the architectures edited away too: the weights' names tell
    for head in ("masked-lm", "sentence-embedding"):
        message = refused(capsys, "convert", source, tmp_path / "out", "--head", head)
        assert "weights are not a roberta model's" in message and "the names are those of a bert model" in message
        assert "--head" not in message
    assert not (tmp_path / "out").exists()
    edit_config(source, model_type="bert")  # following the advice converts it
    assert main(["convert", str(source), str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "parity.json").read_text())["max_abs_logit_diff"] <= 1e-5


def test_a_bert_model_saved_under_roberta_is_refused_by_its_architectures(tmp_path, capsys):
    """BertModel's names fit RobertaModel, so only the saved architectures tell that the maths is the wrong one."""
    source = save(BertModel(BertConfig(**ENCODER)), tmp_path / "source")
    edit_config(source, model_type="roberta")
    message = refused(capsys, "convert", source, tmp_path / "out", "--head", "sentence-embedding")
    assert "architectures 'BertModel' (a bert model)" in message
    assert not (tmp_path / "out").exists()


def test_llama_weights_under_a_bert_config_are_refused_whatever_the_head(tmp_path, capsys):
    source = save(LlamaForCausalLM(LlamaConfig(**DECODER)), tmp_path / "source")
    (source / "config.json").write_text(json.dumps(BertConfig(**ENCODER).to_dict()))  # no architectures at all
    for head in ("masked-lm", "sentence-embedding", "sequence-classification"):
        message = refused(capsys, "convert", source, tmp_path / "out", "--head", head)
        assert "weights are not a bert model's" in message
        assert "the names are those of a Llama-family decoder" in message
        assert "--head" not in message
    assert not (tmp_path / "out").exists()


def test_the_refusal_is_the_only_line_on_stderr_without_transformers_load_report(tmp_path):
    """Before: transformers' LOAD REPORT (a table of every UNEXPECTED and MISSING weight) and its progress bars came
    first, on stderr. Run as a user runs it (a process of its own, stderr not a terminal)."""
    source = save(BertForMaskedLM(BertConfig(**ENCODER)), tmp_path / "source")
    edit_config(source, model_type="roberta", architectures=None)
    command = [sys.executable, "-m", "sora_hf.cli", "convert", str(source), str(tmp_path / "out")]
    result = subprocess.run([*command, "--head", "sentence-embedding"], capture_output=True, text=True, timeout=240)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert "weights are not a roberta model's" in lines[0]


def test_bert_weights_under_a_llama_config_get_no_empty_head_advice(tmp_path, capsys):
    """Before: "convert it with --head  instead", with nothing after --head (a decoder has no other head)."""
    source = save(BertForMaskedLM(BertConfig(**ENCODER)), tmp_path / "source")
    (source / "config.json").write_text(json.dumps(LlamaConfig(**DECODER).to_dict()))
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert "weights are not a llama model's" in message and "the names are those of a bert model" in message
    assert "--head" not in message


def test_a_decoder_saved_without_its_head_gets_advice_not_an_empty_option(tmp_path, capsys):
    source = save(LlamaModel(LlamaConfig(**DECODER)), tmp_path / "source")
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert "saved without its causal-lm head (LlamaModel)" in message
    assert "--head  " not in message and "LlamaForCausalLM" in message


def test_config_sizes_that_disagree_with_the_weights_are_one_line(tmp_path, capsys):
    """Before: transformers' RuntimeError about ignore_mismatched_sizes, as a traceback."""
    source = save(BertForMaskedLM(BertConfig(**ENCODER)), tmp_path / "source")
    edit_config(source, hidden_size=64)
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert "config.json gives sizes the weights do not have" in message
    assert "e.g. bert.embeddings.LayerNorm.bias is [32] in the weights and [64] by the config" in message
    assert not (tmp_path / "out").exists()


def test_a_fine_tuned_classifier_source_says_its_head_is_not_converted(tmp_path, caplog):
    from transformers import BertForSequenceClassification

    from sora_hf.conversion import convert

    source = save(BertForSequenceClassification(BertConfig(**ENCODER, num_labels=3)), tmp_path / "source")
    with caplog.at_level("WARNING", logger="sora_hf"):
        convert(source, tmp_path / "out", head="sequence-classification")
    assert "holds a trained task head (classifier." in caplog.text and "starts new, to fine-tune" in caplog.text


# ---- convert: damaged, pickled, missing or foreign inputs ----


def test_a_folder_without_config_json_says_so(tmp_path, capsys):
    source = save(BertForMaskedLM(BertConfig(**ENCODER)), tmp_path / "source")
    (source / "config.json").unlink()
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert "has no config.json" in message and "model.safetensors" in message
    assert "model_type key" not in message


@pytest.mark.parametrize("damage", ["truncated", "header"])
def test_damaged_safetensors_are_one_line_naming_the_file(damage, tmp_path, capsys):
    source = save(BertForMaskedLM(BertConfig(**ENCODER)), tmp_path / "source")
    weights = source / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[10:20] = b"x" * 10
    weights.write_bytes(bytes(data))
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert f"{weights} is not a readable safetensors file" in message


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_pickle_that_holds_more_than_tensors_is_refused_without_suggesting_to_unpickle_it(tmp_path, capsys):
    source = tmp_path / "source"
    BertConfig(**ENCODER, architectures=["BertForMaskedLM"]).save_pretrained(source)
    torch.save({"bert.embeddings.word_embeddings.weight": _RunsCode()}, source / "pytorch_model.bin")
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert f"refused to load {source / 'pytorch_model.bin'}" in message and "could run code" in message
    assert "weights_only" not in message
    assert "this ran" not in capsys.readouterr().out


def test_an_unknown_architecture_with_custom_code_never_prompts(tmp_path, capsys, monkeypatch):
    """Before: transformers asked "Do you wish to run the custom code? [y/N]" (even without a terminal)."""

    def no_prompt(*args):
        raise AssertionError("convert asked a question on the terminal")

    monkeypatch.setattr("builtins.input", no_prompt)
    source = tmp_path / "source"
    source.mkdir()
    auto_map = {"AutoConfig": "configuration_mine.MineConfig", "AutoModel": "modeling_mine.MineModel"}
    (source / "config.json").write_text(json.dumps({"model_type": "mine", "auto_map": auto_map}))
    (source / "configuration_mine.py").write_text(
        "from transformers import PretrainedConfig\n\nclass MineConfig(PretrainedConfig):\n    model_type = 'mine'\n"
    )
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert message.startswith("cannot convert a 'mine' checkpoint into Sora; supported: llama")


def test_a_supported_architecture_with_custom_code_converts_without_running_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda *args: pytest.fail("convert asked a question on the terminal"))
    source = save(LlamaForCausalLM(LlamaConfig(**DECODER)), tmp_path / "source")
    edit_config(source, auto_map={"AutoConfig": "configuration_mine.MineConfig"})
    (source / "configuration_mine.py").write_text("raise SystemExit('the custom code ran')\n")
    assert main(["convert", str(source), str(tmp_path / "out")]) == 0


# ---- a full disk ----


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, capsys, monkeypatch):
    import transformers.modeling_utils

    source = save(LlamaForCausalLM(LlamaConfig(**DECODER)), tmp_path / "source")
    sora = save(SoraForCausalLM(SoraConfig(**DECODER)), tmp_path / "sora")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    message = refused(capsys, "convert", source, tmp_path / "out")
    assert message.startswith(f"no space left on {tmp_path} while writing {tmp_path / 'out'}: nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sora", "source"]  # no staging folder left behind
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    message = refused(capsys, "convert", source, tmp_path / "out", "--overwrite")
    assert f"{tmp_path / 'out'} was left as it was" in message
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "sora", "source"]
    message = refused(capsys, "export", "llama", sora, tmp_path / "llama")
    assert message.startswith(f"no space left on {tmp_path} while writing {tmp_path / 'llama'}")
    assert not (tmp_path / "llama").exists() and not list(tmp_path.glob(".llama*"))
