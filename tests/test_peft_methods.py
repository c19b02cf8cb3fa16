"""Every peft method with default target modules for Llama or BERT needs none for Sora either.

peft keeps one table of default modules per method (`TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING`), most
of them copies of LoRA's made when peft is imported. The methods are enumerated from the tables of the installed peft,
and each one is first tried on a tiny Llama and BERT: a method that fails for both (its defaults do not fit models this
small, or it needs more than a config) is skipped with their errors. For the others, a Sora classifier and causal LM
get the adapter from `Config(task_type=...)` alone, train one step with only adapter and head parameters trainable,
and reload from the saved adapter with the same logits. Prefix tuning, which uses no table, has its own test.
"""

import re

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs
from peft import PeftModel, PrefixTuningConfig, get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils import constants
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
)

import sora_hf

TABLE_NAME = re.compile(r"TRANSFORMERS_MODELS_TO_(\w+?)_(?:TARGET_)?MODULES_MAPPING")
# method -> config arguments that fit 32-wide models (the defaults are sized for real ones); never target modules
TINY_SIZES = {
    "ADALORA": {"total_step": 4},
    "C3A": {"block_size": 16},
    "FOURIERFT": {"n_frequency": 64},
    "MISS": {"r": 8},
    "PSOFT": {"r": 8},
    "ROAD": {"group_size": 16},
    "SHIRA": {"r": 4},
    "VBLORA": {"vector_length": 16, "num_vectors": 32},
    "WAVEFT": {"n_frequency": 64},
}
FORWARD_KWARGS = {"POLY": {"task_ids": torch.zeros(3, dtype=torch.long)}}  # Poly routes each example by task
NUM_LABELS = 3
TINY_REFERENCE = dict(
    vocab_size=120,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    pad_token_id=0,
)


def _normalized(name: str) -> str:
    return name.replace("_", "").upper()


def _table_methods() -> dict[str, str]:
    """method of each table -> its peft type, e.g. `LNTUNING` -> `LN_TUNING`; IA3's feed-forward table is IA3's."""
    types = {_normalized(peft_type.value): peft_type.value for peft_type in PEFT_TYPE_TO_CONFIG_MAPPING}
    methods = {}
    for name, table in vars(constants).items():
        match = TABLE_NAME.fullmatch(name)
        if match and isinstance(table, dict):
            method = match.group(1).removesuffix("_FEEDFORWARD")
            if _normalized(method) in types:
                methods[name] = types[_normalized(method)]
    return methods


TABLES = _table_methods()
METHODS = sorted(set(TABLES.values()))


def _models() -> dict:
    """name -> (builder, task type); every builder seeds itself, so two calls give the same weights."""

    def seeded(build):
        def make():
            torch.manual_seed(0)
            return build()

        return make

    sora = sora_hf.SoraConfig
    return {
        "llama": (seeded(lambda: LlamaForCausalLM(LlamaConfig(**TINY_REFERENCE, num_key_value_heads=2))), "CAUSAL_LM"),
        "bert": (
            seeded(lambda: BertForSequenceClassification(BertConfig(**TINY_REFERENCE, num_labels=NUM_LABELS))),
            "SEQ_CLS",
        ),
        "sora_classifier": (
            seeded(lambda: sora_hf.SoraForSequenceClassification(sora(**tiny_config_kwargs(num_labels=NUM_LABELS)))),
            "SEQ_CLS",
        ),
        "sora_causal_lm": (seeded(lambda: sora_hf.SoraForCausalLM(sora(**tiny_config_kwargs()))), "CAUSAL_LM"),
    }


def _batch(task_type: str) -> dict:
    input_ids, attention_mask = random_batch(batch=3, seq=8, seed=3, pad_rows={2: 2})
    labels = input_ids.masked_fill(attention_mask == 0, -100) if task_type == "CAUSAL_LM" else torch.tensor([0, 2, 1])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _peft_config(method: str, task_type: str, **overrides):
    return PEFT_TYPE_TO_CONFIG_MAPPING[method](task_type=task_type, **TINY_SIZES.get(method, {}), **overrides)


def _train_step(model, method: str, task_type: str) -> None:
    """One forward/backward and SGD step, so that the saved adapter differs from its initialisation."""
    model.train()
    loss = model(**_batch(task_type), **FORWARD_KWARGS.get(method, {})).loss
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is not None:
                param -= 0.5 * param.grad


def _logits(model, method: str, task_type: str) -> torch.Tensor:
    model.eval()
    batch = {k: v for k, v in _batch(task_type).items() if k != "labels"}
    with torch.no_grad():
        return model(**batch, **FORWARD_KWARGS.get(method, {})).logits


def _reference_errors(method: str) -> dict[str, str]:
    """How the method fares on the tiny Llama and BERT: model name -> error ("" when it works)."""
    errors = {}
    for name in ("llama", "bert"):
        build, task_type = _models()[name]
        try:
            _train_step(get_peft_model(build(), _peft_config(method, task_type)), method, task_type)
            errors[name] = ""
        except Exception as error:
            errors[name] = f"{type(error).__name__}: {str(error)[:200]}"
    return errors


def test_every_peft_table_has_sora_defaults():
    """Each table of the installed peft has a `sora` entry whose names are modules of a Sora model."""
    assert "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING" in TABLES
    assert "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING" in TABLES
    config = sora_hf.SoraConfig(**tiny_config_kwargs())
    names = {name.rsplit(".", 1)[-1] for name, _ in sora_hf.SoraForSeq2SeqLM(config).named_modules()}
    names |= {name.rsplit(".", 1)[-1] for name, _ in sora_hf.SoraForSequenceClassification(config).named_modules()}
    for table_name in TABLES:
        modules = getattr(constants, table_name).get("sora")
        assert modules, f"{table_name} has no defaults for model_type 'sora'"
        assert set(modules) <= names, (table_name, sorted(set(modules) - names))
    ia3_targets = constants.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING["sora"]
    assert set(constants.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING["sora"]) <= set(ia3_targets)


@pytest.mark.parametrize("method", METHODS)
def test_peft_method_needs_no_target_modules(method, tmp_path):
    reference = _reference_errors(method)
    if all(reference.values()):
        pytest.skip(f"{method} fails for Llama and BERT too: {reference}")

    for name in ("sora_classifier", "sora_causal_lm"):
        build, task_type = _models()[name]
        model = get_peft_model(build(), _peft_config(method, task_type))  # no target_modules
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable, (method, name)
        # adapter parameters are keyed by the adapter's name; the head is trained whole through modules_to_save
        not_adapter = [n for n in trainable if ".default" not in n and "modules_to_save" not in n]
        assert not not_adapter, f"{method} on {name} trains base parameters: {not_adapter[:5]}"
        if task_type == "SEQ_CLS":
            assert any("classifier.modules_to_save" in n for n in trainable), (method, name)

        _train_step(model, method, task_type)
        expected = _logits(model, method, task_type)
        model.save_pretrained(tmp_path / name)
        reloaded = PeftModel.from_pretrained(build(), tmp_path / name)
        assert reloaded.peft_config["default"].peft_type == method
        got = _logits(reloaded, method, task_type)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=f"{method} on {name}: reloaded adapter")
        assert not torch.allclose(expected, _logits(build(), method, task_type)), f"{method} on {name} changed nothing"


def _prefix_tuning_error(model, task_type: str) -> str:
    try:
        peft_model = get_peft_model(model, PrefixTuningConfig(task_type=task_type, num_virtual_tokens=4))
        _train_step(peft_model, "PREFIX_TUNING", task_type)
        return ""
    except Exception as error:
        return f"{type(error).__name__}: {error}"


PEFT_PREFIX_ERROR = "Model does not support past key values which are required for prefix tuning."


def test_prefix_tuning_classifier(tmp_path):
    """Prefix tuning trains a Sora classifier where it trains Llama's or BERT's; where it does not (transformers 5.24
    renamed their cache argument), the error must at least be peft's own."""
    build, task_type = _models()["sora_classifier"]
    sora_error = _prefix_tuning_error(build(), task_type)
    reference = {
        "llama": _prefix_tuning_error(
            LlamaForSequenceClassification(LlamaConfig(**TINY_REFERENCE, num_labels=NUM_LABELS)), task_type
        ),
        "bert": _prefix_tuning_error(_models()["bert"][0](), task_type),
    }
    if all(reference.values()):
        assert sora_error in ("", f"ValueError: {PEFT_PREFIX_ERROR}"), sora_error
        if sora_error:
            return
    assert sora_error == "", f"Llama/BERT: {reference}; Sora: {sora_error}"

    model = get_peft_model(build(), PrefixTuningConfig(task_type=task_type, num_virtual_tokens=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith("prompt_encoder.") or "modules_to_save" in n for n in trainable), trainable
    base = _logits(build(), "PREFIX_TUNING", task_type)
    _train_step(model, "PREFIX_TUNING", task_type)
    # the virtual tokens are attended to: their parameters get a gradient through the encoder
    prefix_grads = [p.grad for n, p in model.named_parameters() if n.startswith("prompt_encoder.")]
    assert prefix_grads and all(g is not None and g.abs().sum() > 0 for g in prefix_grads)
    expected = _logits(model, "PREFIX_TUNING", task_type)
    assert not torch.allclose(expected, base)
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(build(), tmp_path)
    torch.testing.assert_close(_logits(reloaded, "PREFIX_TUNING", task_type), expected, rtol=0, atol=1e-5)
