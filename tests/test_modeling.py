"""The Sora model family: every head's forward/backward, save/reload through the Auto classes, and numerical
agreement between paths that must agree (eager vs sdpa, padded vs alone, cache vs no cache, checkpointing)."""

import pytest
import torch
from helpers import VOCAB, random_batch
from model_tester import HEADS, B, T, head_case, make_model
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
)

import sora_hf
from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
)


@pytest.mark.parametrize("head", HEADS)
def test_forward_backward_shapes_and_loss(head):
    model_class, _, inputs, shapes = head_case(head)
    model = make_model(model_class)
    model.train()
    torch.manual_seed(0)
    out = model(**inputs)
    for key, shape in shapes.items():
        assert tuple(out[key].shape) == shape, key
    if head in ("base", "sentence_embedding"):
        loss = (out.last_hidden_state if head == "base" else out.embeddings).pow(2).mean()
    else:
        assert out.loss is not None and out.loss.ndim == 0 and torch.isfinite(out.loss)
        loss = out.loss
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == [], f"parameters that got no gradient: {no_grad}"
    without_labels = {k: v for k, v in inputs.items() if k not in ("labels", "start_positions", "end_positions")}
    assert model(**without_labels).get("loss") is None


@pytest.mark.parametrize("head", HEADS)
def test_save_and_reload_with_auto_class(head, tmp_path):
    model_class, auto_class, inputs, shapes = head_case(head)
    model = make_model(model_class).eval()
    inputs = {k: v for k, v in inputs.items() if k != "labels" or head != "pretraining"}
    model.save_pretrained(tmp_path)
    reloaded = auto_class.from_pretrained(tmp_path).eval()
    assert type(reloaded) is model_class
    with torch.no_grad():
        a, b = model(**inputs), reloaded(**inputs)
    for key in shapes:
        if a.get(key) is None:  # generator logits exist only when labels drive the generator
            continue
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


def test_base_model_loads_from_a_head_checkpoint(tmp_path):
    mlm = make_model(SoraForMaskedLM).eval()
    mlm.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    ids, mask = random_batch(pad_rows={0: 2})
    with torch.no_grad():
        torch.testing.assert_close(base(ids, mask).last_hidden_state, mlm.model(ids, mask).last_hidden_state)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert torch.equal(clf.model.embed_tokens.weight, mlm.model.embed_tokens.weight)
    assert clf.classifier.out_proj.out_features == 4


def test_word_embeddings_are_tied_and_stay_tied_after_reload(tmp_path):
    model = make_model(SoraForMaskedLM)
    assert model.decoder.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    reloaded = SoraForMaskedLM.from_pretrained(tmp_path)
    assert reloaded.decoder.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    s2s = make_model(SoraForSeq2SeqLM)
    shared = s2s.model.encoder.embed_tokens.weight
    assert s2s.model.decoder.embed_tokens.weight is shared and s2s.lm_head.weight is shared
    untied = make_model(SoraForCausalLM, tie_word_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize(
    "head", ["masked_lm", "causal_lm", "seq2seq", "sequence_classification", "question_answering"]
)
def test_eager_and_sdpa_agree(head):
    model_class, _, inputs, shapes = head_case(head)
    sdpa = make_model(model_class, attn_implementation="sdpa").eval()
    eager = make_model(model_class, attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    with torch.no_grad():
        a, b = sdpa(**inputs), eager(**inputs)
    for key in shapes:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    if head != "masked_lm":
        return
    with torch.no_grad():
        attentions = eager(**inputs, output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[0].shape == (B, 4, T, T)
    # padded keys get no attention
    assert attentions[0][1, :, :, T - 3 :].abs().max() == 0


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("multi_level", [True, False])
def test_padded_rows_equal_rows_alone_for_encoder_heads(pooling, multi_level):
    ids, mask = random_batch(B, T, pad_rows={0: 4, 2: 1})
    for model_class in (SoraForSequenceClassification, SoraForTokenClassification, SoraForSentenceEmbedding):
        model = make_model(model_class, classifier_pooling=pooling, multi_level_attention=multi_level).eval()
        with torch.no_grad():
            batched = model(input_ids=ids, attention_mask=mask)
            for row in range(B):
                n = int(mask[row].sum())
                alone = model(input_ids=ids[row : row + 1, :n])
                key = "embeddings" if model_class is SoraForSentenceEmbedding else "logits"
                expected = alone[key][0]
                got = batched[key][row, :n] if model_class is SoraForTokenClassification else batched[key][row]
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_left_padded_decoder_rows_equal_rows_alone():
    model = make_model(SoraForCausalLM, tie_word_embeddings=False).eval()
    ids, _ = random_batch(2, 8, seed=3)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    ids[0, :3] = 0
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[:1, 3:]).logits
    torch.testing.assert_close(batched[0, 3:], alone[0], rtol=1e-5, atol=1e-5)


def test_causal_lm_is_causal_and_encoder_is_not():
    ids, _ = random_batch(1, 8, seed=4)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1 - 7) % (VOCAB - 7) + 7
    decoder = make_model(SoraForCausalLM).eval()
    encoder = make_model(SoraForMaskedLM).eval()
    with torch.no_grad():
        d0, d1 = decoder(input_ids=ids).logits, decoder(input_ids=changed).logits
        e0, e1 = encoder(input_ids=ids).logits, encoder(input_ids=changed).logits
    torch.testing.assert_close(d0[:, :-1], d1[:, :-1])  # the future does not leak into the past
    assert not torch.allclose(e0[:, 0], e1[:, 0])  # an encoder sees the whole sentence
    assert decoder.config.is_decoder and not encoder.config.is_decoder


def test_greedy_generation_with_cache_equals_without():
    model = make_model(SoraForCausalLM, tie_word_embeddings=False).eval()
    ids, _ = random_batch(2, 5, seed=7)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    ids[1, :2] = 0
    kwargs = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    with_cache = model.generate(ids, use_cache=True, **kwargs)
    without = model.generate(ids, use_cache=False, **kwargs)
    assert with_cache.shape == (2, 5 + 12)
    assert torch.equal(with_cache, without)
    assert len(set(with_cache[0, 5:].tolist())) > 1  # a non-degenerate model, so the comparison means something

    s2s = make_model(SoraForSeq2SeqLM, tie_word_embeddings=False).eval()
    src, src_mask = random_batch(2, 7, seed=8, pad_rows={0: 3})
    kwargs = dict(attention_mask=src_mask, max_new_tokens=10, do_sample=False, pad_token_id=0, eos_token_id=None)
    with_cache = s2s.generate(src, use_cache=True, **kwargs)
    without = s2s.generate(src, use_cache=False, **kwargs)
    assert torch.equal(with_cache, without)
    assert (with_cache[:, 0] == s2s.config.decoder_start_token_id).all()


def test_seq2seq_padded_source_rows_equal_rows_alone():
    s2s = make_model(SoraForSeq2SeqLM).eval()
    src, src_mask = random_batch(2, 7, seed=9, pad_rows={0: 3})
    labels = torch.randint(7, VOCAB, (2, 4))
    with torch.no_grad():
        batched = s2s(input_ids=src, attention_mask=src_mask, labels=labels).logits
        alone = s2s(input_ids=src[:1, :4], labels=labels[:1]).logits
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["masked_lm", "causal_lm", "seq2seq", "sequence_classification"])
def test_gradient_checkpointing_gives_same_loss_and_gradients(head):
    model_class, _, inputs, _ = head_case(head)
    plain = make_model(model_class).train()
    ckpt = make_model(model_class).train()
    ckpt.load_state_dict(plain.state_dict())
    # transformers 5.23 renamed it; 5.17 has only the old name
    if hasattr(ckpt, "activation_checkpointing_enable"):
        ckpt.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        ckpt.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in ckpt.model.modules() if hasattr(layer, "self_attn"))
    loss_plain = plain(**inputs).loss
    loss_ckpt = ckpt(**inputs).loss
    torch.testing.assert_close(loss_plain, loss_ckpt)
    loss_plain.backward()
    loss_ckpt.backward()
    grads = dict(ckpt.named_parameters())
    for name, param in plain.named_parameters():
        torch.testing.assert_close(param.grad, grads[name].grad, rtol=1e-5, atol=1e-6, msg=name)


def test_multi_level_attention_switch():
    ids, mask = random_batch(pad_rows={1: 2})
    with_ml = make_model(SoraForSentenceEmbedding, multi_level_attention=True).eval()
    without = make_model(SoraForSentenceEmbedding, multi_level_attention=False).eval()
    assert hasattr(with_ml.pooler, "level_query") and not hasattr(without.pooler, "level_query")
    with torch.no_grad():
        out = with_ml(input_ids=ids, attention_mask=mask)
    # one weight per layer, a distribution, uniform at initialisation (the query starts at zero)
    assert out.level_weights.shape == (B, 2)
    torch.testing.assert_close(out.level_weights.sum(-1), torch.ones(B))
    torch.testing.assert_close(out.level_weights, torch.full((B, 2), 0.5))
    # hidden states are not returned unless asked for, even though the pooler used them
    assert out.hidden_states is None
    assert len(with_ml(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states) == 3
    without.load_state_dict(with_ml.state_dict(), strict=False)
    with torch.no_grad():
        assert not torch.allclose(without(input_ids=ids, attention_mask=mask).embeddings, out.embeddings)
    # the level attention is trained: a step moves the layer weights away from uniform
    clf = make_model(SoraForSequenceClassification, multi_level_attention=True)
    opt = torch.optim.SGD(clf.parameters(), lr=1.0)
    clf(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 2])).loss.backward()
    opt.step()
    assert clf.classifier.pooler.level_query.abs().sum() > 0


def test_problem_types_and_their_losses():
    ids, mask = random_batch()
    multi = make_model(SoraForSequenceClassification, problem_type="multi_label_classification")
    out = multi(input_ids=ids, attention_mask=mask, labels=torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1]]))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out.logits, torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1]])
    )
    torch.testing.assert_close(out.loss, expected)
    reg = make_model(SoraForSequenceClassification, num_labels=1, id2label=None)
    out = reg(input_ids=ids, attention_mask=mask, labels=torch.tensor([0.5, -1.0, 2.0]))
    assert reg.config.problem_type == "regression"
    torch.testing.assert_close(
        out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), torch.tensor([0.5, -1.0, 2.0]))
    )
    single = make_model(SoraForSequenceClassification)
    out = single(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2, 1]))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2, 1])))


@pytest.mark.parametrize("sparse", [False, True])
def test_replaced_token_detection_targets(sparse):
    model_class, _, inputs, _ = head_case("pretraining")
    model = make_model(model_class, sparse_prediction=sparse)
    torch.manual_seed(0)
    out = model(**inputs)
    masked = inputs["labels"] != -100
    original = torch.where(masked, inputs["labels"], inputs["input_ids"])
    # unmasked tokens are never touched; the targets say exactly where the discriminator input differs
    assert torch.equal(out.replaced_input_ids[~masked], inputs["input_ids"][~masked])
    assert torch.equal(out.replaced_labels.bool(), out.replaced_input_ids != original)
    torch.testing.assert_close(out.loss, out.generator_loss + 50.0 * out.discriminator_loss)
    assert model.generator.config.hidden_size == 16 and model.model.config.hidden_size == 32


def test_grouped_query_attention_shapes():
    model = make_model(SoraModel, num_attention_heads=4, num_key_value_heads=1)
    attn = model.layers[0].self_attn
    assert attn.q_proj.out_features == 32 and attn.k_proj.out_features == 8 and attn.num_key_value_groups == 4


def test_a_tiny_model_learns(tiny_config):
    """Overfits one batch: the loss falls by an order of magnitude in 60 AdamW steps."""
    torch.manual_seed(0)
    model = SoraForMaskedLM(tiny_config(initializer_range=0.02))
    ids, mask = random_batch(4, 12, seed=11)
    labels = ids.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10


def test_package_registers_everything():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    from transformers import AutoConfig

    assert isinstance(AutoConfig.for_model("sora"), SoraConfig)
    assert "q_proj" in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["sora"]
    sora_hf.register()  # idempotent


@pytest.mark.parametrize("model_class", [SoraForMaskedLM, SoraForCausalLM])
def test_flex_attention_agrees_with_sdpa_on_real_tokens(model_class):
    pytest.importorskip("torch.nn.attention.flex_attention")
    sdpa = make_model(model_class, attn_implementation="sdpa").eval()
    flex = make_model(model_class, attn_implementation="flex_attention").eval()
    flex.load_state_dict(sdpa.state_dict())
    ids, mask = random_batch(2, 16, pad_rows={1: 4})
    with torch.no_grad():
        a = sdpa(input_ids=ids, attention_mask=mask).logits
        b = flex(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(a[real], b[real], rtol=1e-4, atol=1e-4)


def test_sparse_prediction_gives_the_same_loss_and_masked_logits():
    model_class, _, inputs, _ = head_case("masked_lm")
    dense = make_model(SoraForMaskedLM).eval()
    sparse = make_model(SoraForMaskedLM, sparse_prediction=True).eval()
    sparse.load_state_dict(dense.state_dict())
    a, b = dense(**inputs), sparse(**inputs)
    keep = inputs["labels"] != -100
    assert b.logits.shape == (int(keep.sum()), VOCAB)
    torch.testing.assert_close(a.logits[keep], b.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-6)
    b.loss.backward()
    assert sparse.model.embed_tokens.weight.grad is not None
    # without labels the sparse model still returns every position, as fill-mask needs
    no_labels = {k: v for k, v in inputs.items() if k != "labels"}
    assert sparse(**no_labels).logits.shape == a.logits.shape


def test_each_stack_has_one_shape():
    """As T5Gemma: self- and cross-attention are separate classes; `SoraModel` (encoder or causal decoder) has no
    cross-attention, and only the encoder-decoder's own decoder stack has it, in every layer."""
    from sora_hf.modeling_sora import (
        SoraCrossAttention,
        SoraDecoderLayer,
        SoraLayer,
        SoraSelfAttention,
        SoraSeq2SeqDecoder,
    )

    def kinds(module):
        return {type(m) for m in module.modules()}

    for model in (make_model(SoraModel), make_model(SoraForCausalLM).model, make_model(SoraForMaskedLM).model):
        assert {type(layer) for layer in model.layers} == {SoraLayer}
        assert SoraCrossAttention not in kinds(model) and SoraDecoderLayer not in kinds(model)
    s2s = make_model(SoraForSeq2SeqLM, num_decoder_layers=3).model
    assert type(s2s.encoder) is SoraModel and not s2s.encoder.is_causal
    assert type(s2s.decoder) is SoraSeq2SeqDecoder and len(s2s.decoder.layers) == 3
    assert SoraCrossAttention not in kinds(s2s.encoder)
    for layer in s2s.decoder.layers:
        assert type(layer) is SoraDecoderLayer
        assert type(layer.self_attn) is SoraSelfAttention and layer.self_attn.is_causal
        assert type(layer.cross_attn) is SoraCrossAttention and not layer.cross_attn.is_causal
    # the encoder and the causal decoder are two classes over one stack: what one holds the other lacks
    from sora_hf.modeling_sora import SoraDecoderModel, SoraStack

    decoder = make_model(SoraForCausalLM).model
    assert type(decoder) is SoraDecoderModel and isinstance(decoder, SoraStack) and decoder.is_causal
    assert decoder.token_type_embeddings is None and not hasattr(decoder, "_padding_free_forward")
    encoder = make_model(SoraForMaskedLM, is_decoder=True).model  # a masked LM is an encoder of any config
    assert type(encoder) is SoraModel and not encoder.is_causal
    with pytest.raises(ValueError, match=r"SoraModel is Sora's encoder .* SoraDecoderModel\(config\)"):
        make_model(SoraModel, is_decoder=True)
    # what device maps keep whole (transformers gathers the submodels' lists): only layers the model has
    assert set(make_model(SoraForSeq2SeqLM)._no_split_modules) == {"SoraLayer", "SoraDecoderLayer"}
    assert set(make_model(SoraForMaskedLM)._no_split_modules) == {"SoraLayer"}
    assert set(make_model(SoraForMaskedLM, norm_position="post")._no_split_modules) == {"SoraPostNormLayer"}


def test_seq2seq_records_decoder_cross_and_encoder_outputs_apart():
    model = make_model(SoraForSeq2SeqLM, num_hidden_layers=2, num_decoder_layers=3, attn_implementation="eager")
    ids, mask = random_batch(2, 7, pad_rows={0: 2})
    with torch.no_grad():
        out = model.eval()(ids, mask, decoder_input_ids=ids[:, :4], output_attentions=True, output_hidden_states=True)
    assert len(out.encoder_attentions) == 2 and out.encoder_attentions[0].shape == (2, 4, 7, 7)
    assert len(out.decoder_attentions) == 3 and out.decoder_attentions[0].shape == (2, 4, 4, 4)
    assert len(out.cross_attentions) == 3 and out.cross_attentions[0].shape == (2, 4, 4, 7)
    assert len(out.encoder_hidden_states) == 3 and len(out.decoder_hidden_states) == 4
    assert out.cross_attentions[0][0, :, :, 5:].abs().max() == 0  # padded source tokens get no attention
    assert torch.all(out.decoder_attentions[0].triu(1) == 0)  # the decoder's self-attention is causal


@pytest.mark.parametrize(
    ("shape", "expected"),
    [({}, "SoraModel"), ({"is_decoder": True}, "SoraDecoderModel"), ({"num_decoder_layers": 1}, "SoraSeq2SeqModel")],
)
def test_the_bare_model_of_a_checkpoint_is_the_stack_it_was_saved_with(shape, expected, tmp_path):
    """`AutoModel` and `SoraModel.from_pretrained` (with or without a config) give the stack the checkpoint holds:
    every weight used, the same last hidden state as the head's own stack."""
    from transformers import AutoModel

    head_class = {"SoraModel": SoraForMaskedLM, "SoraDecoderModel": SoraForCausalLM}.get(expected, SoraForSeq2SeqLM)
    head = make_model(head_class, **shape).eval()
    head.save_pretrained(tmp_path)
    for loaded in (
        AutoModel.from_pretrained(tmp_path),
        SoraModel.from_pretrained(tmp_path),
        AutoModel.from_config(head.config),
    ):
        assert type(loaded).__name__ == expected
    model, info = SoraModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], info
    if expected != "SoraSeq2SeqModel":
        ids = torch.randint(7, 100, (2, 6))
        with torch.no_grad():
            assert torch.equal(model.eval()(ids).last_hidden_state, head.model(ids).last_hidden_state)


def test_every_head_of_the_table_has_a_tester_case():
    """The tests parametrised over `HEADS` cover every class of the registry (but the multi-task model's own)."""
    from sora_hf.auto.heads import HEADS as TABLE

    tested = {head_case(name)[0].__name__ for name in HEADS}
    assert tested == {row.name for row in TABLE} - {"SoraForMultiTask"}
    assert {head_case(name)[1].__name__ for name in HEADS} == {
        row.auto_class for row in TABLE if row.name != "SoraForMultiTask"
    }
