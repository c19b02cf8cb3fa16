"""Every fast path against the plain path on CPU: padding-free (unpadded, packed) encoding, packed sequences from
transformers' DataCollatorWithFlattening, sparse MLM loss under gradient accumulation, torch.compile without graph
breaks, and generation with a static cache."""

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs
from transformers import DataCollatorWithFlattening

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
)

PAD_ROWS = {0: 4, 2: 7}  # rows 0 and 2 padded, row 1 full


def _pair(model_class, padding_free: bool = True, **overrides):
    """The same weights twice: the plain model and its padding-free twin."""
    torch.manual_seed(0)
    plain = model_class(SoraConfig(**tiny_config_kwargs(padding_free=False, **overrides))).eval()
    fast = model_class(SoraConfig(**tiny_config_kwargs(padding_free=padding_free, **overrides))).eval()
    fast.load_state_dict(plain.state_dict())
    return plain, fast


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_encoder_matches_padded_outputs_and_gradients(attn):
    plain, fast = _pair(SoraModel, attn_implementation=attn)
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    real = mask.bool()
    assert fast._runs_padding_free(mask, None, None, {}) and not plain._runs_padding_free(mask, None, None, {})
    ref = plain(input_ids=ids, attention_mask=mask)
    out = fast(input_ids=ids, attention_mask=mask)
    assert out.last_hidden_state.shape == ref.last_hidden_state.shape
    torch.testing.assert_close(out.last_hidden_state[real], ref.last_hidden_state[real], atol=1e-5, rtol=1e-5)
    assert out.last_hidden_state[~real].abs().max() == 0  # pad positions come back as zeros
    assert ref.last_hidden_state[~real].abs().max() == 0  # on either path
    torch.testing.assert_close(out.pooler_output, ref.pooler_output, atol=1e-5, rtol=1e-5)
    # hidden states (every one on the autograd path) come from the padded path, zeros at the pads there too
    assert not fast._runs_padding_free(mask, None, None, {"output_hidden_states": True})
    states = fast(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(states) == 3 and all(h[~real].abs().max() == 0 for h in states)
    torch.testing.assert_close(states[-1][real], ref.last_hidden_state[real], atol=1e-5, rtol=1e-5)

    # a fixed random read-out (the squared norm would be nearly constant after the final RMSNorm)
    readout = torch.randn(ref.last_hidden_state[real].shape, generator=torch.Generator().manual_seed(3))
    (ref.last_hidden_state[real] * readout).sum().backward()
    (out.last_hidden_state[real] * readout).sum().backward()
    for (name, p_ref), p_fast in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, atol=2e-4, rtol=1e-4, msg=name)


def test_padding_free_tuple_output_and_token_types():
    plain, fast = _pair(SoraModel)
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    token_types = (torch.arange(10) >= 4).long().expand(3, -1)
    ref = plain(input_ids=ids, attention_mask=mask, token_type_ids=token_types, return_dict=False)
    out = fast(input_ids=ids, attention_mask=mask, token_type_ids=token_types, return_dict=False)
    assert isinstance(out, tuple)
    real = mask.bool()
    torch.testing.assert_close(out[0][real], ref[0][real], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_padding_free_with_flex_attention_block_mask():
    plain, fast = _pair(SoraModel, attn_implementation="flex_attention")
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    real = mask.bool()
    ref = plain(input_ids=ids, attention_mask=mask).last_hidden_state
    out = fast(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_free_heads_match(pooling):
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    plain, fast = _pair(SoraForSequenceClassification, num_labels=3, classifier_pooling=pooling)
    torch.testing.assert_close(
        fast(input_ids=ids, attention_mask=mask).logits, plain(input_ids=ids, attention_mask=mask).logits
    )
    plain, fast = _pair(SoraForTokenClassification, num_labels=5)
    real = mask.bool()
    torch.testing.assert_close(
        fast(input_ids=ids, attention_mask=mask).logits[real],
        plain(input_ids=ids, attention_mask=mask).logits[real],
    )
    labels = torch.where(real & (torch.arange(10) % 3 == 0), ids, torch.full_like(ids, -100))
    plain, fast = _pair(SoraForMaskedLM, sparse_prediction=True)
    torch.testing.assert_close(
        fast(input_ids=ids, attention_mask=mask, labels=labels).loss,
        plain(input_ids=ids, attention_mask=mask, labels=labels).loss,
    )


def test_padding_free_is_automatic_from_an_eighth_of_padding_with_sdpa():
    model = SoraModel(SoraConfig(**tiny_config_kwargs()))  # sdpa, padding_free None
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)  # 11 pads in 30 tokens
    assert model._runs_padding_free(mask, None, None, {})
    few = torch.ones(3, 10, dtype=torch.long)
    few[0, -3:] = 0  # 3 pads in 30: under an eighth
    assert not model._runs_padding_free(few, None, None, {})
    model.config._attn_implementation = "flex_attention"
    assert not model._runs_padding_free(mask, None, None, {})  # flex: only when asked
    model.config._attn_implementation = "sdpa"
    model.config.padding_free = True
    assert model._runs_padding_free(few, None, None, {})
    assert not model._runs_padding_free(torch.ones_like(mask), None, None, {})  # nothing to drop
    assert not model._runs_padding_free(mask, None, None, {"output_attentions": True})  # maps are per row
    model.config.padding_free = False
    assert not model._runs_padding_free(mask, None, None, {})


def test_padding_free_is_not_traced_into_an_onnx_graph(monkeypatch):
    model = SoraModel(SoraConfig(**tiny_config_kwargs(padding_free=True)))
    _, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert not model._runs_padding_free(mask, None, None, {})


def _rows(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(7, 120, (n,), generator=g).tolist() for n in (6, 9, 4)]


@pytest.mark.parametrize("model_class", [SoraModel, SoraForCausalLM])
def test_packed_rows_from_data_collator_with_flattening_equal_separate_rows(model_class):
    """transformers' padding-free collator: one row, position ids restarting per sequence, no attention mask."""
    torch.manual_seed(0)
    model = model_class(SoraConfig(**tiny_config_kwargs())).train()  # packing is a training set-up: no cache
    rows = _rows()
    batch = DataCollatorWithFlattening(return_tensors="pt")([{"input_ids": r} for r in rows])
    assert batch["input_ids"].shape == (1, sum(map(len, rows)))
    packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
    packed = packed.last_hidden_state if model_class is SoraModel else packed.logits
    start = 0
    for row in rows:
        alone = model(input_ids=torch.tensor([row]))
        alone = alone.last_hidden_state if model_class is SoraModel else alone.logits
        torch.testing.assert_close(packed[0, start : start + len(row)], alone[0], atol=1e-5, rtol=1e-5)
        start += len(row)


def test_sparse_mlm_loss_counts_tokens_across_accumulated_batches_like_dense_loss():
    """Trainer passes `num_items_in_batch` (masked tokens over all micro-batches): both losses must divide by it."""
    ids, mask = random_batch(3, 10, pad_rows=PAD_ROWS)
    labels = torch.where(mask.bool() & (torch.arange(10) % 3 == 0), ids, torch.full_like(ids, -100))
    dense, sparse = _pair(SoraForMaskedLM, padding_free=False)
    sparse.config.sparse_prediction = True
    count = torch.tensor(40)  # as if other micro-batches held more masked tokens
    want = dense(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=count).loss
    got = sparse(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=count).loss
    torch.testing.assert_close(got, want)
    n_masked = int((labels != -100).sum())
    plain = sparse(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(got, plain * n_masked / 40)
    none_masked = torch.full_like(labels, -100)
    assert sparse(input_ids=ids, attention_mask=mask, labels=none_masked).loss.item() == 0.0


@pytest.mark.parametrize("model_class", [SoraForSequenceClassification, SoraForMaskedLM, SoraForCausalLM])
def test_compile_fullgraph_inference_matches_eager(model_class):
    """`fullgraph=True` fails on any graph break in the layers; the traced graph must give the eager numbers."""
    torch.manual_seed(0)
    model = model_class(SoraConfig(**tiny_config_kwargs())).eval()
    ids, mask = random_batch(3, 10, pad_rows={0: 4})
    want = model(input_ids=ids, attention_mask=mask).logits
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(input_ids=ids, attention_mask=mask).logits, want)


@pytest.mark.parametrize("sparse", [False, True])
def test_compile_fullgraph_training_step_matches_eager(sparse):
    torch.manual_seed(0)
    model = SoraForMaskedLM(SoraConfig(**tiny_config_kwargs(sparse_prediction=sparse))).train()
    ids, mask = random_batch(3, 10, pad_rows={0: 4})
    labels = torch.where(mask.bool() & (torch.arange(10) % 3 == 0), ids, torch.full_like(ids, -100))
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        compiled_loss = compiled(input_ids=ids, attention_mask=mask, labels=labels).loss
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, loss)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[name], msg=name)


def test_generate_with_static_cache_equals_dynamic_cache():
    torch.manual_seed(0)
    model = SoraForCausalLM(SoraConfig(**tiny_config_kwargs(eos_token_id=None))).eval()
    prompt = torch.randint(7, 120, (2, 5), generator=torch.Generator().manual_seed(1))
    dynamic = model.generate(prompt, max_new_tokens=12, do_sample=False)
    static = model.generate(prompt, max_new_tokens=12, do_sample=False, cache_implementation="static")
    assert dynamic.shape == (2, 17)
    assert torch.equal(static, dynamic)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rms_norm_equals_llamas_ops_and_the_export_path(dtype, monkeypatch):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from sora_hf.modeling_sora import SoraRMSNorm

    torch.manual_seed(0)
    sora, llama = SoraRMSNorm(48, eps=1e-6), LlamaRMSNorm(48, eps=1e-6)
    with torch.no_grad():
        sora.weight.normal_(1.0, 0.5)
        llama.weight.copy_(sora.weight)
    sora, llama = sora.to(dtype), llama.to(dtype)
    x = (3 * torch.randn(2, 7, 48)).to(dtype)
    fused = sora(x)
    assert torch.equal(fused, llama(x))  # bit for bit, also in bf16 (float32 inside, scaled after the cast)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)  # the ops ONNX gets
    assert torch.equal(sora(x), fused)
