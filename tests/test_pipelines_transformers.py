"""transformers' own pipelines run Sora models: fill-mask, text-classification, token-classification,
feature-extraction and text-generation, with the Sora tokenizer, and give the documented shape of result."""

import pytest
import torch
from helpers import tiny_config_kwargs
from transformers import AutoTokenizer, pipeline

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForSentenceEmbedding,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
)
from sora_hf.tokenizer import check_tokenizer_fits, train_tokenizer

TEXTS = [
    "这个手机的屏幕很好，电池也耐用。",
    "物流太慢了，包装也破了，很失望。",
    "北京是中国的首都，Beijing is the capital of China.",
    "新华社记者在上海报道了这次会议。",
    "价格便宜，质量不错，推荐购买！",
    "The quick brown fox jumps over the lazy dog.",
] * 20


@pytest.fixture(scope="module")
def encoder_tokenizer():
    return train_tokenizer(iter(TEXTS), vocab_size=300, min_frequency=1, model_max_length=64)


@pytest.fixture(scope="module")
def decoder_tokenizer():
    return train_tokenizer(iter(TEXTS), vocab_size=300, min_frequency=1, model_max_length=64, template="decoder")


def build(model_class, tokenizer, **overrides):
    torch.manual_seed(0)
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), **overrides))
    check_tokenizer_fits(tokenizer, config)
    return model_class(config).eval()


def test_fill_mask(encoder_tokenizer, tmp_path):
    model = build(SoraForMaskedLM, encoder_tokenizer)
    model.save_pretrained(tmp_path)
    encoder_tokenizer.save_pretrained(tmp_path)
    fill = pipeline("fill-mask", model=str(tmp_path), top_k=3)
    results = fill("北京是中国的[MASK]都。")
    assert len(results) == 3
    assert {"score", "token", "token_str", "sequence"} <= set(results[0])
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    # the pipeline's best token is the model's argmax at the mask
    enc = encoder_tokenizer("北京是中国的[MASK]都。", return_tensors="pt")
    position = (enc["input_ids"][0] == encoder_tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        logits = model(**enc).logits[0, position]
    assert results[0]["token"] == int(logits.argmax())


def test_text_classification(encoder_tokenizer):
    id2label = {0: "negative", 1: "positive"}
    model = build(
        SoraForSequenceClassification, encoder_tokenizer, id2label=id2label, label2id={"negative": 0, "positive": 1}
    )
    clf = pipeline("text-classification", model=model, tokenizer=encoder_tokenizer)
    out = clf(["物流太慢了，很失望。", "质量不错，推荐！"])
    assert len(out) == 2 and all(o["label"] in id2label.values() for o in out)
    every = clf("质量不错，推荐！", top_k=None)
    assert sorted(o["label"] for o in every) == ["negative", "positive"]
    assert abs(sum(o["score"] for o in every) - 1) < 1e-5
    enc = encoder_tokenizer("质量不错，推荐！", return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1)[0]
    assert abs(max(o["score"] for o in every) - float(probs.max())) < 1e-5


def test_token_classification_with_offsets(encoder_tokenizer):
    labels = ["O", "B-LOC", "I-LOC"]
    model = build(
        SoraForTokenClassification,
        encoder_tokenizer,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    # make the classifier say B-LOC for 北 and I-LOC for 京 whatever the encoder computes
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    bei, jing = encoder_tokenizer.convert_tokens_to_ids(["北", "京"])
    original_forward = model.forward

    def forward(*args, **kwargs):
        out = original_forward(*args, **kwargs)
        ids = kwargs["input_ids"]
        out.logits[..., 1] += 5.0 * (ids == bei)
        out.logits[..., 2] += 5.0 * (ids == jing)
        return out

    model.forward = forward
    ner = pipeline("token-classification", model=model, tokenizer=encoder_tokenizer, aggregation_strategy="simple")
    text = "我住在北京。"
    entities = ner(text)
    assert len(entities) == 1
    assert entities[0]["entity_group"] == "LOC" and entities[0]["word"].replace(" ", "") == "北京"
    assert text[entities[0]["start"] : entities[0]["end"]] == "北京"


def test_feature_extraction(encoder_tokenizer):
    model = build(SoraModel, encoder_tokenizer)
    extract = pipeline("feature-extraction", model=model, tokenizer=encoder_tokenizer)
    features = extract("北京欢迎你")
    n_tokens = len(encoder_tokenizer("北京欢迎你")["input_ids"])
    assert len(features) == 1 and len(features[0]) == n_tokens and len(features[0][0]) == 32
    # a sentence-embedding model gives one vector per text: its pooled embedding
    embedder = build(SoraForSentenceEmbedding, encoder_tokenizer)
    vector = torch.tensor(pipeline("feature-extraction", model=embedder, tokenizer=encoder_tokenizer)("北京"))
    with torch.no_grad():
        expected = embedder(**encoder_tokenizer("北京", return_tensors="pt")).embeddings
    torch.testing.assert_close(vector, expected)


def test_text_generation(decoder_tokenizer):
    model = build(SoraForCausalLM, decoder_tokenizer, tie_word_embeddings=False)
    generate = pipeline("text-generation", model=model, tokenizer=decoder_tokenizer)
    out = generate("北京是", max_new_tokens=8, do_sample=False)
    assert len(out) == 1 and out[0]["generated_text"].startswith("北京是")
    ids = decoder_tokenizer("北京是", return_tensors="pt")["input_ids"]
    assert ids[0, 0] == decoder_tokenizer.bos_token_id and ids[0, -1] != decoder_tokenizer.eos_token_id
    expected = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out[0]["generated_text"] == decoder_tokenizer.decode(expected[0], skip_special_tokens=True)


def test_tokenizer_that_does_not_fit_the_model_is_refused(encoder_tokenizer):
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(encoder_tokenizer) - 10))
    with pytest.raises(ValueError, match=r"vocab_size"):
        check_tokenizer_fits(encoder_tokenizer, config)


def test_saved_tokenizer_reloads_with_auto_tokenizer(encoder_tokenizer, tmp_path):
    encoder_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "新华社记者在上海报道 the meeting."
    assert reloaded(text)["input_ids"] == encoder_tokenizer(text)["input_ids"]
    assert reloaded.model_max_length == 64
