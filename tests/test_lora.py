"""LoRA through peft for every Sora head: the default target modules, the head modules trained whole, the count of
trainable parameters, and a merged model that answers as the adapter does."""

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs

import sora_hf
from sora_hf import SoraConfig
from sora_hf.training.lora import HEAD_TASK_TYPES, LoraOptions, apply_lora, count_parameters, lora_config_for

PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def _model(name):
    torch.manual_seed(0)
    extra = {"num_labels": 3} if "Classification" in name or "Choice" in name else {}
    return getattr(sora_hf, name)(SoraConfig(**tiny_config_kwargs(**extra)))


@pytest.mark.parametrize("name", sorted(HEAD_TASK_TYPES))
def test_every_head_gets_lora_on_its_projections_without_target_modules(name):
    peft_model = apply_lora(_model(name))
    wrapped = {n.rsplit(".", 1)[-1] for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == PROJECTIONS, name
    counts = count_parameters(peft_model)
    assert 0 < counts["trainable_parameters"] < counts["total_parameters"]
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or "modules_to_save" in n for n in trainable), sorted(trainable)[:5]


def test_the_embedding_pooler_is_trained_whole_and_user_modules_are_added():
    config = lora_config_for(_model("SoraForSentenceEmbedding"))
    assert config.task_type == "FEATURE_EXTRACTION" and "pooler" in config.modules_to_save
    config = lora_config_for(_model("SoraForSequenceClassification"), LoraOptions(r=4, modules_to_save=["norm"]))
    assert config.r == 4 and config.modules_to_save == ["norm"]
    with pytest.raises(ValueError, match="no LoRA set-up for SoraForPreTraining"):
        lora_config_for(_model("SoraForPreTraining"))


def test_a_merged_adapter_answers_as_the_adapter():
    peft_model = apply_lora(_model("SoraForSequenceClassification"), LoraOptions(r=4, dropout=0.0))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)  # LoRA B starts at zero: move it so the adapter changes the outputs
    input_ids, attention_mask = random_batch(pad_rows={1: 3})
    peft_model.eval()
    with torch.no_grad():
        adapted = peft_model(input_ids=input_ids, attention_mask=attention_mask).logits
        merged = peft_model.merge_and_unload()(input_ids=input_ids, attention_mask=attention_mask).logits
        plain = _model("SoraForSequenceClassification").eval()(input_ids=input_ids, attention_mask=attention_mask)
    torch.testing.assert_close(adapted, merged, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain.logits, merged, atol=1e-4)
