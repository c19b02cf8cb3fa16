"""sora_hf's own pipelines (the tasks transformers 5.23 removed, plus sentence similarity) on Sora models and the
Sora tokenizer, through `transformers.pipeline(...)` after `import sora_hf`."""

import pytest
import torch
from helpers import tiny_config_kwargs
from transformers import pipeline

from sora_hf import SoraConfig, SoraForQuestionAnswering, SoraForSentenceEmbedding, SoraForSeq2SeqLM
from sora_hf.tokenizer import train_tokenizer

TEXTS = ["新华社记者在上海报道了这次会议。", "北京是中国的首都，人口众多。", "The meeting was held in Shanghai."] * 30


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(iter(TEXTS), vocab_size=200, min_frequency=1, model_max_length=64)


def build(model_class, tokenizer, **overrides):
    torch.manual_seed(0)
    return model_class(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), **overrides))).eval()


def test_question_answering_returns_a_span_of_the_context(tokenizer):
    model = build(SoraForQuestionAnswering, tokenizer)
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    context = "新华社记者在上海报道了这次会议。"
    result = qa(question="会议在哪里？", context=context)
    assert set(result) == {"score", "start", "end", "answer"}
    assert result["answer"] == context[result["start"] : result["end"]] and result["answer"]
    top = qa(question="会议在哪里？", context=context, top_k=3)
    assert len(top) == 3 and [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True)
    # the best span is the one the model's own logits prefer among context tokens
    enc = tokenizer("会议在哪里？", context, return_tensors="pt", return_offsets_mapping=True)
    offsets = enc.pop("offset_mapping")[0]
    with torch.no_grad():
        out = model(**enc)
    in_context = torch.tensor([s == 1 for s in enc.sequence_ids(0)])
    start = out.start_logits[0].masked_fill(~in_context, -1e9).softmax(-1)
    end = out.end_logits[0].masked_fill(~in_context, -1e9).softmax(-1)
    scores = torch.triu(start[:, None] * end[None, :])
    scores = torch.tril(scores, diagonal=14)
    s, e = divmod(int(scores.argmax()), scores.shape[1])
    assert (result["start"], result["end"]) == (int(offsets[s][0]), int(offsets[e][1]))


@pytest.mark.parametrize(
    ("task", "key"),
    [
        ("summarization", "summary_text"),
        ("translation", "translation_text"),
        ("text2text-generation", "generated_text"),
    ],
)
def test_seq2seq_pipelines_equal_generate(tokenizer, task, key):
    model = build(SoraForSeq2SeqLM, tokenizer, tie_word_embeddings=False)
    pipe = pipeline(task, model=model, tokenizer=tokenizer)
    text = "北京是中国的首都，人口众多。"
    out = pipe(text, max_new_tokens=6, do_sample=False)
    enc = tokenizer(text, return_tensors="pt")
    ids = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert out == [{key: tokenizer.decode(ids[0], skip_special_tokens=True)}]


def test_sentence_similarity(tokenizer):
    model = build(SoraForSentenceEmbedding, tokenizer)
    sim = pipeline("sentence-similarity", model=model, tokenizer=tokenizer)
    scores = sim({"source_sentence": "北京是中国的首都", "sentences": ["北京是中国的首都", "上海", "新华社记者"]})
    assert len(scores) == 3 and abs(scores[0] - 1.0) < 1e-5
    with torch.no_grad():
        a = model(**tokenizer("北京是中国的首都", return_tensors="pt")).embeddings
        b = model(**tokenizer("上海", return_tensors="pt")).embeddings
    assert abs(scores[1] - torch.nn.functional.cosine_similarity(a, b).item()) < 1e-5
