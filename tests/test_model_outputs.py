"""What a transformers user reads off a Sora forward, beside BERT and Llama: hidden states on the autograd path,
hidden states selected by index, `pooler_output`, the cache argument's old name, one position rule under padding
on both encoder paths, and an all-padding batch."""

import warnings

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs

from sora_hf import (
    SoraConfig,
    SoraDecoderModel,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForMultipleChoice,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
)
from sora_hf.modeling_sora import CACHE_ARG

ENCODER_HEADS = [
    SoraModel,
    SoraForMaskedLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
]
PAD_ROWS = {0: 4, 2: 7}  # 11 of 30 positions: the padding-free path's share on sdpa


def _model(model_class, **overrides):
    torch.manual_seed(0)
    return model_class(SoraConfig(**tiny_config_kwargs(**overrides))).eval()


@pytest.mark.parametrize("padding_free", [None, False])
def test_first_hidden_state_is_on_the_autograd_path(padding_free):
    """Attribution methods keep `hidden_states[0]` and read its gradient, as BERT's gives one (issue 26, 7a)."""
    model = _model(SoraForSequenceClassification, num_labels=3, padding_free=padding_free)
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    kept = out.hidden_states[0]
    kept.retain_grad()
    out.logits[:, 1].sum().backward()
    assert kept.grad is not None and kept.grad[mask.bool()].abs().sum() > 0


@pytest.mark.parametrize("model_class", ENCODER_HEADS + [SoraForMultipleChoice])
@pytest.mark.parametrize("padding_free", [None, False])
def test_hidden_states_selected_by_index_equal_the_full_capture(model_class, padding_free):
    """`output_hidden_states=[0, 2, -1]` (transformers 5.25's selective capture) on every encoder head (7b)."""
    model = _model(model_class, num_labels=3, padding_free=padding_free)
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    if model_class is SoraForMultipleChoice:
        ids, mask = ids[None].expand(2, -1, -1), mask[None].expand(2, -1, -1)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        some = model(input_ids=ids, attention_mask=mask, output_hidden_states=[0, 2, -1]).hidden_states
    assert len(full) == 3
    picked = [h for h in some if h is not None]
    assert len(picked) == 2  # indices 2 and -1 name the same (last) state
    torch.testing.assert_close(picked[0], full[0])
    torch.testing.assert_close(picked[1], full[2])


def test_past_key_values_warns_as_transformers_own_models_do_and_equals_cache():
    """5.24+ renamed the argument; Llama's forward warns on the old name, and so does Sora's (7c)."""
    from transformers import DynamicCache

    model = _model(SoraForCausalLM)
    ids, _ = random_batch(2, 6)
    with torch.no_grad():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = model(input_ids=ids, past_key_values=DynamicCache(config=model.config), use_cache=True)
        new = model(input_ids=ids, **{CACHE_ARG: DynamicCache(config=model.config)}, use_cache=True)
    renamed = CACHE_ARG == "cache"
    assert any("`past_key_values` is deprecated" in str(w.message) for w in caught) == renamed
    torch.testing.assert_close(old.logits, new.logits)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_encoder_returns_pooler_output_as_bert_does(pooling):
    model = _model(SoraModel, classifier_pooling=pooling)
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
        alone = model(input_ids=ids[2:, :3], attention_mask=mask[2:, :3])
        as_tuple = model(input_ids=ids, attention_mask=mask, return_dict=False)
    assert out.pooler_output.shape == (3, 32)
    states, real = out.last_hidden_state, mask[..., None].float()
    expected = states[:, 0] if pooling == "cls" else (states * real).sum(1) / real.sum(1)
    torch.testing.assert_close(out.pooler_output, expected)
    torch.testing.assert_close(out.pooler_output[2:], alone.pooler_output, atol=1e-5, rtol=1e-5)
    assert any(t is not None and torch.equal(t, out.pooler_output) for t in as_tuple)
    decoder = _model(SoraDecoderModel, is_decoder=True, type_vocab_size=0)
    assert "pooler_output" not in decoder(input_ids=ids) and not hasattr(
        decoder(input_ids=ids), "pooler_output"
    )  # as Llama


def _bert_like(padding_free):
    """The layout `sora-hf convert` gives a BERT: learned absolute positions, post-norm LayerNorm, plain MLP."""
    return _model(
        SoraModel,
        padding_free=padding_free,
        position_embedding_type="absolute",
        norm_type="layer_norm",
        norm_position="post",
        embedding_norm=True,
        mlp_type="plain",
        hidden_act="gelu",
        attention_bias=True,
        mlp_bias=True,
    )


@pytest.mark.parametrize("pads", [1, 6], ids=["under-an-eighth", "over-an-eighth"])
@pytest.mark.parametrize("padding_free", [None, False])
def test_left_padded_row_gives_the_row_alone_whatever_the_batch_around_it(pads, padding_free):
    """One rule for positions under padding on both paths (issue 26, 8): a row's positions count its real tokens,
    so a left-padded row of an absolute-position encoder gives what it gives alone, with little padding in the batch
    (padded path) or much (padding-free path)."""
    model = _bert_like(padding_free)
    ids, _ = random_batch(4, 12, seed=1)
    mask = torch.ones_like(ids)
    mask[0, :pads] = 0  # left padding on row 0 only
    ids[0, :pads] = 0
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask).last_hidden_state
        alone = model(input_ids=ids[:1, pads:]).last_hidden_state
    torch.testing.assert_close(batch[0, pads:], alone[0], atol=1e-5, rtol=1e-5)
    assert batch[0, :pads].abs().max() == 0


@pytest.mark.parametrize("padding_free", [None, True, False])
def test_all_padding_batch_answers_on_either_path(padding_free):
    """An all-padding batch (every row empty) used to fail on the padding-free path (`cannot reshape tensor of 0
    elements`); it answers as the padded path does: zeros at every pad."""
    model = _model(SoraForTokenClassification, num_labels=3, padding_free=padding_free)
    ids = torch.zeros(2, 5, dtype=torch.long)
    mask = torch.zeros(2, 5, dtype=torch.long)
    with torch.no_grad():
        out = model.model(input_ids=ids, attention_mask=mask)
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert out.last_hidden_state.shape == (2, 5, 32) and out.last_hidden_state.abs().max() == 0
    assert torch.isfinite(logits).all()
