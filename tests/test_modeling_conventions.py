"""Sora follows the stock models' conventions where a transformers user expects them: the cache argument under both of
its names (5.24's `cache`, earlier `past_key_values`), configs left as the caller built them, BART's `AutoModel` for an
encoder-decoder and its decoder depth, BERT's tuples with `return_dict=False` and its new head for new `num_labels`,
Llama's causal classifier on a causal checkpoint, and embeddings resized everywhere they live."""

import logging
import warnings

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs
from model_tester import HEADS, head_case, make_model
from transformers import AutoModel, AutoModelForSequenceClassification, DynamicCache
from transformers.utils import logging as hf_logging

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForPreTraining,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraModel,
)
from sora_hf.modeling_sora import CACHE_FIELD, SoraSeq2SeqModel


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
def test_decoding_step_reads_the_cache_under_either_name(name):
    """On 5.24 `generate()` passes `cache=`; a forward that ignored it would start every step from nothing."""
    model = make_model(SoraForCausalLM).eval()
    ids, _ = random_batch(2, 8)
    with torch.no_grad():
        full = model(ids).logits[:, -1]
        prefix = model(ids[:, :-1], use_cache=True)
        step = model(ids[:, -1:], use_cache=True, **{name: prefix[CACHE_FIELD]}).logits[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)


def test_both_cache_names_at_once_are_refused():
    model = make_model(SoraForCausalLM).eval()
    ids, _ = random_batch(1, 4)
    with pytest.raises(ValueError, match="not both"):
        model(ids, cache=DynamicCache(), past_key_values=DynamicCache())


@pytest.mark.parametrize("model_class", [SoraForCausalLM, SoraForSeq2SeqLM])
def test_generate_prints_no_deprecation_of_its_own(model_class):
    """Sora speaks to the installed transformers in its own argument names: no `past_key_values` deprecation."""
    model = make_model(model_class).eval()
    ids, mask = random_batch(2, 6, pad_rows={1: 2})
    hf_logging.get_logger("transformers").warning_once.cache_clear()  # shown once per process otherwise
    logger = hf_logging.get_logger("transformers")
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False)
    finally:
        logger.removeHandler(handler)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in seen]
    assert not [m for m in messages if "deprecated" in m and ("past_key_values" in m or "cache" in m)], messages


def test_heads_leave_the_callers_config_as_it_was():
    """`SoraForCausalLM(cfg)` used to set `cfg.is_decoder`: a `SoraModel(cfg)` built next was silently causal."""
    config = SoraConfig(**tiny_config_kwargs())
    decoder, seq2seq = SoraForCausalLM(config), SoraForSeq2SeqLM(config)
    assert (config.is_decoder, config.is_encoder_decoder) == (False, False)
    assert decoder.config.is_decoder and seq2seq.config.is_encoder_decoder
    assert SoraModel(config).is_causal is False
    assert SoraForSequenceClassification(config).config.is_decoder is False


def test_automodel_of_a_seq2seq_checkpoint_is_the_encoder_decoder(tmp_path):
    """As BartModel for a BartForConditionalGeneration folder: every weight loads, outputs equal the trained model's."""
    model = make_model(SoraForSeq2SeqLM).eval()
    model.save_pretrained(tmp_path)
    base, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(base) is SoraSeq2SeqModel
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    assert not [k for k in info["unexpected_keys"] if not k.startswith("lm_head")]
    assert type(AutoModel.from_config(model.config)) is SoraSeq2SeqModel
    ids, mask = random_batch(2, 7, pad_rows={0: 2})
    decoder_ids = ids[:, :4]
    with torch.no_grad():
        expected = model.model(ids, mask, decoder_input_ids=decoder_ids).last_hidden_state
        got = base.eval()(ids, mask, decoder_input_ids=decoder_ids).last_hidden_state
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("encoder_layers,decoder_layers", [(3, 1), (1, 3)])
def test_num_decoder_layers_sets_the_decoder_depth(encoder_layers, decoder_layers):
    """The documented option was never read (3 + 1 gave 3 + 3); every cache must size itself from the decoder."""
    model = make_model(SoraForSeq2SeqLM, num_hidden_layers=encoder_layers, num_decoder_layers=decoder_layers).eval()
    assert (len(model.model.encoder.layers), len(model.model.decoder.layers)) == (encoder_layers, decoder_layers)
    ids, mask = random_batch(2, 7, pad_rows={1: 3})
    runs = {
        mode: model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False, **kwargs)
        for mode, kwargs in {
            "dynamic": {},
            "static": {"cache_implementation": "static"},
            "none": {"use_cache": False},
        }.items()
    }
    assert torch.equal(runs["dynamic"], runs["none"]) and torch.equal(runs["static"], runs["none"])


@pytest.mark.parametrize("head", HEADS)
def test_return_dict_false_gives_tuples_like_bert(head):
    """`config.return_dict = False` used to raise AttributeError in every head; BERT's heads return tuples."""
    model_class, _, inputs, shapes = head_case(head)
    model = make_model(model_class).eval()
    inputs = {k: v for k, v in inputs.items() if k not in ("labels", "start_positions", "end_positions")}
    with torch.no_grad():
        torch.manual_seed(0)
        as_dict = model(**inputs)
        model.config.return_dict = False
        torch.manual_seed(0)
        as_tuple = model(**inputs)
    assert isinstance(as_tuple, tuple)
    first = next(iter(shapes))
    torch.testing.assert_close(as_tuple[0], as_dict[first])


def test_new_num_labels_on_a_labelled_checkpoint_builds_a_new_head(tmp_path):
    """Fine-tuning a fine-tuned classifier on other labels: BERT warns and re-sizes the head; so does Sora."""
    config = SoraConfig(**tiny_config_kwargs(id2label={0: "negative", 1: "positive"}))
    SoraForSequenceClassification(config).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert model.classifier.out_proj.out_features == 5
    assert model.config.id2label == {i: f"LABEL_{i}" for i in range(5)}
    with pytest.raises(ValueError, match="num_labels=5"):  # by hand, the disagreement is still a mistake
        SoraConfig(**tiny_config_kwargs(id2label={0: "negative", 1: "positive"}, num_labels=5))


def test_causal_checkpoint_as_a_classifier_stays_causal(tmp_path):
    """Llama's classifier on a causal checkpoint is causal and pools the last real token; Sora's used to turn
    bidirectional and add a freshly initialised token-type embedding to every token."""
    make_model(SoraForCausalLM).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2).eval()
    assert model.model.is_causal and model.model.token_type_embeddings is None
    ids, _ = random_batch(1, 8)
    with torch.no_grad():
        alone = model(ids[:, :5]).logits
        right = model(ids, attention_mask=torch.tensor([[1] * 5 + [0] * 3])).logits
        left_ids = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids[:, :5]], dim=1)
        left = model(left_ids, attention_mask=torch.tensor([[0] * 3 + [1] * 5])).logits
        longer = model(ids).logits
    torch.testing.assert_close(right, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(left, alone, rtol=1e-4, atol=1e-4)  # rotary sees only relative positions
    assert not torch.allclose(longer, alone)  # the last real token decides, and it saw the whole row


def test_resized_vocabulary_reaches_the_rtd_generator():
    """`resize_token_embeddings` on the ELECTRA model used to leave the generator at the old vocabulary."""
    model = make_model(SoraForPreTraining)
    vocab = model.config.vocab_size
    model.resize_token_embeddings(vocab + 7)
    assert model.generator.get_input_embeddings().num_embeddings == vocab + 7
    assert model.generator.get_output_embeddings().out_features == vocab + 7
    ids, mask = random_batch(2, 6)
    ids[0, 1] = vocab + 5  # a new token
    labels = torch.full_like(ids, -100)
    labels[:, 2] = vocab + 6
    ids[:, 2] = model.config.mask_token_id
    out = model(ids, attention_mask=mask, labels=labels)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("head", ["masked_lm", "question_answering", "multiple_choice", "pretraining"])
def test_padded_rows_equal_rows_alone_for_the_other_encoder_heads(head):
    """No stock model holds Sora encoder weights, so each head is its own oracle: a padded row scores as it does alone
    (the pooled heads and token classification are checked in test_modeling)."""
    model_class, _, _, shapes = head_case(head)
    model = make_model(model_class).eval()
    ids, mask = random_batch(3, 9, pad_rows={0: 4, 2: 1})
    key = next(iter(shapes))
    with torch.no_grad():
        if head == "multiple_choice":  # one question, three choices of different lengths
            batched = model(ids[None], attention_mask=mask[None])[key][0]
            alone = [model(ids[None, row, : int(mask[row].sum())][None])[key][0, 0] for row in range(3)]
            torch.testing.assert_close(batched, torch.stack(alone), rtol=1e-5, atol=1e-5)
            return
        batched = model(ids, attention_mask=mask)[key]
        for row in range(3):
            n = int(mask[row].sum())
            torch.testing.assert_close(batched[row, :n], model(ids[row : row + 1, :n])[key][0], rtol=1e-5, atol=1e-5)
