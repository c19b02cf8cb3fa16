"""Checkpoints saved by the model code before the layout change of issue 14 (tests/fixtures/sora_70862a8, the code
at 70862a8) load into today's classes with every weight used and give the same outputs."""

import sys
from pathlib import Path

import pytest
import torch
from helpers import import_model_code, random_batch, tiny_config_kwargs

import sora_hf

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sora_70862a8"
HEADS = {
    "SoraModel": {},
    "SoraForMaskedLM": {},
    "SoraForPreTraining": {},
    "SoraForCausalLM": {},
    "SoraForSeq2SeqLM": {"num_decoder_layers": 1},
    "SoraForSequenceClassification": {"num_labels": 3},
    "SoraForTokenClassification": {"num_labels": 5},
    "SoraForQuestionAnswering": {},
    "SoraForMultipleChoice": {},
    "SoraForSentenceEmbedding": {},
    "SoraForMultiTask": {
        "tasks": {
            "sentiment": {"type": "classification", "labels": ["neg", "pos"]},
            "ner": {"type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
        }
    },
}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """The old code as an importable package `sora_70862a8` (its own classes, nothing registered)."""
    root = tmp_path_factory.mktemp("legacy-code")
    try:
        yield import_model_code(root, FIXTURE, "sora_70862a8", ("modeling_sora",))["modeling_sora"]
    finally:
        sys.path.remove(str(root))


def _inputs(name):
    input_ids, attention_mask = random_batch(batch=2, seq=8, seed=3, pad_rows={1: 2})
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if name == "SoraForMultipleChoice":
        kwargs = {k: v.unsqueeze(1).expand(-1, 2, -1).contiguous() for k, v in kwargs.items()}
    if name == "SoraForSeq2SeqLM":
        kwargs["decoder_input_ids"] = input_ids[:, :5]
    if name == "SoraForMultiTask":
        kwargs["task"] = "ner"
    return kwargs


@pytest.mark.parametrize("name", sorted(HEADS))
def test_a_checkpoint_saved_before_the_layout_change_loads_and_answers_the_same(name, legacy, tmp_path):
    torch.manual_seed(0)
    old = getattr(legacy, name)(legacy.SoraConfig(**tiny_config_kwargs(**HEADS[name]))).eval()
    old.save_pretrained(tmp_path)
    model, info = getattr(sora_hf, name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(model).__module__.startswith("sora_hf.")  # today's class, not the saved code
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        expected = old(**_inputs(name))
        torch.manual_seed(1)
        out = model(**_inputs(name))
    compared = [k for k, v in expected.items() if isinstance(v, torch.Tensor) and k != "replaced_input_ids"]
    assert compared, name
    real = _inputs(name)["attention_mask"].bool()
    for key in compared:
        got, want = out[key], expected[key]
        if got.shape[: real.dim()] == real.shape:  # per encoder token: today's encoder returns zeros at the pads
            got, want = got[real], want[real]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"{name}.{key}")
