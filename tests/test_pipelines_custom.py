"""Tests of sora_hf's own pipelines (question answering, text2text/summarization/translation, sentence similarity).

Model-agnostic on purpose: tiny randomly initialised BERT/T5 models and a WordPiece tokenizer built here, no
downloads. Where the answer must be known, the model's forward is replaced by one whose logits peak on given tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.modeling_outputs import QuestionAnsweringModelOutput
from transformers.utils import ModelOutput

from sora_hf.auto.registration import register_pipelines
from sora_hf.pipelines import (
    SoraQuestionAnsweringPipeline,
    SoraSentenceSimilarityPipeline,
    SoraSummarizationPipeline,
    SoraText2TextGenerationPipeline,
    SoraTranslationPipeline,
)
from sora_hf.pipelines.question_answering import _char_spans

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "where is the zebra ? what does a big striped live in city and river lake tree house green red blue small "
    "old new cat dog bird fish apple banana pie tart i you we they eat see run par ##is , . one two three four"
).split()

# A long context: "zebra" appears once, far past the first window of max_seq_len=16.
FILLER = "the small cat and the old dog see a green tree in the city . " * 3
LONG_CONTEXT = FILLER + "a big striped zebra lives in the river house . " + FILLER
QUESTION = "where is the zebra ?"


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def _bert_config(tokenizer: PreTrainedTokenizerFast) -> BertConfig:
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="module")
def qa_model(tokenizer: PreTrainedTokenizerFast) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    return BertForQuestionAnswering(_bert_config(tokenizer)).eval()


@pytest.fixture(scope="module")
def encoder(tokenizer: PreTrainedTokenizerFast) -> BertModel:
    torch.manual_seed(1)
    return BertModel(_bert_config(tokenizer), add_pooling_layer=False).eval()


@pytest.fixture(scope="module")
def seq2seq(tokenizer: PreTrainedTokenizerFast) -> T5ForConditionalGeneration:
    torch.manual_seed(2)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5ForConditionalGeneration(config).eval()


@pytest.fixture(scope="module", autouse=True)
def _registered_single_thread() -> Iterator[None]:
    """Register the pipelines; run the tiny models on one thread (thread handoff costs more than their maths,
    and more so on a busy machine), restoring the thread count for the other test modules."""
    register_pipelines()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _force_span(monkeypatch: pytest.MonkeyPatch, model: torch.nn.Module, start_id: int, end_id: int) -> None:
    """Make `model` put all start (end) probability on the tokens with id `start_id` (`end_id`)."""

    def forward(input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        start = (input_ids == start_id).float() * 30.0
        end = (input_ids == end_id).float() * 30.0
        return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)

    monkeypatch.setattr(model, "forward", forward)


def _qa(model, tokenizer, **kwargs) -> SoraQuestionAnsweringPipeline:
    return transformers.pipeline("question-answering", model=model, tokenizer=tokenizer, **kwargs)


# ----------------------------------------------------------------------------------------------- registration


def test_register_pipelines_makes_factory_return_our_classes(qa_model, seq2seq, encoder, tokenizer):
    expected = {
        "question-answering": (SoraQuestionAnsweringPipeline, qa_model),
        "summarization": (SoraSummarizationPipeline, seq2seq),
        "translation": (SoraTranslationPipeline, seq2seq),
        "text2text-generation": (SoraText2TextGenerationPipeline, seq2seq),
        "sentence-similarity": (SoraSentenceSimilarityPipeline, encoder),
    }
    removed = getattr(transformers.pipelines, "REMOVED_TASKS", {})
    for task, (cls, model) in expected.items():
        assert task not in removed
        pipe = transformers.pipeline(task, model=model, tokenizer=tokenizer)
        assert type(pipe) is cls
        assert pipe.task == task


def test_register_pipelines_is_idempotent_and_replaces_existing_entries():
    registry = transformers.pipelines.PIPELINE_REGISTRY
    before = {task: registry.supported_tasks[task] for task in ("question-answering", "summarization")}
    register_pipelines()
    assert all(registry.supported_tasks[task] is entry for task, entry in before.items())

    # transformers versions that still ship a built-in pipeline under the name: ours replaces it without error
    class BuiltinStandIn(transformers.Pipeline):
        pass

    registry.register_pipeline("summarization", pipeline_class=BuiltinStandIn, pt_model=(), type="text")
    register_pipelines()
    assert registry.supported_tasks["summarization"]["impl"] is SoraSummarizationPipeline
    assert registry.supported_tasks["summarization"]["pt"] == (transformers.AutoModelForSeq2SeqLM,)


# ----------------------------------------------------------------------------------------- question answering


def test_qa_answer_is_a_context_slice(qa_model, tokenizer):
    context = "the old cat and the small dog live in a red house ."
    result = _qa(qa_model, tokenizer)(question="where does the cat live ?", context=context)
    assert set(result) == {"score", "start", "end", "answer"}
    assert 0 <= result["start"] < result["end"] <= len(context)
    assert result["answer"] == context[result["start"] : result["end"]]
    assert 0.0 < result["score"] <= 1.0


def test_qa_top_k_returns_k_distinct_answers_sorted(qa_model, tokenizer):
    context = "the old cat and the small dog live in a red house by the blue lake ."
    answers = _qa(qa_model, tokenizer)(question="where is the cat ?", context=context, top_k=4)
    assert isinstance(answers, list) and len(answers) == 4
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)
    assert len({(a["start"], a["end"]) for a in answers}) == 4
    for answer in answers:
        assert answer["answer"] == context[answer["start"] : answer["end"]]


def test_qa_finds_forced_span_in_a_later_window_never_in_question(monkeypatch, qa_model, tokenizer):
    zebra = tokenizer.convert_tokens_to_ids("zebra")
    _force_span(monkeypatch, qa_model, zebra, zebra)
    pipe = _qa(qa_model, tokenizer)
    example = {"question": QUESTION, "context": LONG_CONTEXT}

    windows = list(pipe.preprocess(example, max_seq_len=16, doc_stride=4))
    with_zebra = [i for i, w in enumerate(windows) if (w["input_ids"][0] == zebra).sum() > 1]  # question has one
    assert len(windows) > 4 and with_zebra and with_zebra[0] >= 3
    for first, second in zip(
        windows[:-1], windows[1:], strict=True
    ):  # consecutive windows share doc_stride context tokens
        ids_first = first["input_ids"][0][first["p_mask"][0] == 0].tolist()
        ids_second = second["input_ids"][0][second["p_mask"][0] == 0].tolist()
        assert ids_first[-4:] == ids_second[:4]

    result = pipe(example, max_seq_len=16, doc_stride=4)
    start = LONG_CONTEXT.index("zebra")
    assert result["answer"] == "zebra"
    assert (result["start"], result["end"]) == (start, start + len("zebra"))
    assert result["score"] > 0.99


def test_qa_multi_token_span_and_max_answer_len(monkeypatch, qa_model, tokenizer):
    _force_span(
        monkeypatch, qa_model, tokenizer.convert_tokens_to_ids("big"), tokenizer.convert_tokens_to_ids("zebra")
    )
    pipe = _qa(qa_model, tokenizer, max_seq_len=16, doc_stride=4)
    result = pipe(question=QUESTION, context=LONG_CONTEXT)
    assert result["answer"] == "big striped zebra"
    assert LONG_CONTEXT[result["start"] : result["end"]] == "big striped zebra"

    short = pipe(question=QUESTION, context=LONG_CONTEXT, max_answer_len=2)
    assert short["answer"] != "big striped zebra"
    assert len(short["answer"].split()) <= 2


def test_qa_aligns_word_pieces_to_words(monkeypatch, qa_model, tokenizer):
    piece = tokenizer.convert_tokens_to_ids("##is")
    _force_span(monkeypatch, qa_model, piece, piece)
    context = "we live in paris city ."
    assert tokenizer.tokenize(context)[3:5] == ["par", "##is"]
    pipe = _qa(qa_model, tokenizer)
    word = pipe(question="where do we live ?", context=context)
    assert word["answer"] == "paris" and word["start"] == context.index("paris")
    piece_only = pipe(question="where do we live ?", context=context, align_to_words=False)
    assert piece_only["answer"] == "is" and piece_only["end"] == context.index("paris") + len("paris")


def test_char_spans_do_not_widen_cjk_words():
    context = "北京是首都 ok"
    # one pre-tokenizer "word" for the whole Chinese run (as with a Metaspace/whitespace pre-tokenizer)
    offsets = [(0, 0), (0, 2), (2, 5), (6, 8)]
    word_ids = [None, 0, 0, 1]
    is_context = [False, True, True, True]
    assert _char_spans(context, offsets, word_ids, is_context, True) == [(0, 0), (0, 2), (2, 5), (6, 8)]
    latin = "paris ok"
    spans = _char_spans(latin, [(0, 0), (0, 3), (3, 5), (6, 8)], word_ids, is_context, True)
    assert spans == [(0, 0), (0, 5), (0, 5), (6, 8)]


def test_char_spans_strip_whitespace():
    context = "in Berlin city"
    # Metaspace-style offsets: "▁Berlin" covers the space before it; a lone "▁" token is only whitespace
    offsets = [(0, 2), (2, 9), (9, 10), (10, 14)]
    spans = _char_spans(context, offsets, [0, 1, 2, 3], [True] * 4, True)
    assert [context[s:e] for s, e in spans] == ["in", "Berlin", "", "city"]


def test_qa_metaspace_tokenizer_answers_without_leading_space(monkeypatch, qa_model):
    words = ["where", "▁is", "▁the", "▁zebra", "?", "the", "▁big", "▁lives", "▁in", "▁city", "▁"]
    vocab = {token: i for i, token in enumerate(SPECIALS + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(prepend_scheme="never"), pre_tokenizers.Punctuation()]
    )
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    metaspace = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    context = "the big zebra lives in the city"
    offsets = metaspace(context, return_offsets_mapping=True)["offset_mapping"]
    assert context[slice(*offsets[3])] == " zebra"  # the tokenizer's own offsets include the space
    zebra = vocab["▁zebra"]
    _force_span(monkeypatch, qa_model, zebra, zebra)
    result = _qa(qa_model, metaspace)(question="where is the zebra?", context=context)
    assert result["answer"] == "zebra" and result["start"] == context.index("zebra")


def test_qa_impossible_answer(monkeypatch, qa_model, tokenizer):
    _force_span(monkeypatch, qa_model, tokenizer.cls_token_id, tokenizer.cls_token_id)
    pipe = _qa(qa_model, tokenizer)
    context = "the cat and the dog ."
    empty = pipe(question="where is the fish ?", context=context, handle_impossible_answer=True)
    assert empty == {"score": pytest.approx(1.0, abs=1e-4), "start": 0, "end": 0, "answer": ""}
    forced_answer = pipe(question="where is the fish ?", context=context)
    assert (
        forced_answer["answer"] and forced_answer["answer"] == context[forced_answer["start"] : forced_answer["end"]]
    )


def test_qa_batches_of_inputs(qa_model, tokenizer):
    pipe = _qa(qa_model, tokenizer)
    contexts = ["the cat lives in a red house .", LONG_CONTEXT]
    questions = ["where does the cat live ?", QUESTION]
    results = pipe(question=questions, context=contexts, max_seq_len=16, doc_stride=4)
    assert isinstance(results, list) and len(results) == 2
    for result, context in zip(results, contexts, strict=True):
        assert result["answer"] == context[result["start"] : result["end"]]

    # padded batches of windows (different window counts per example) give the unbatched answers
    examples = [{"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)]
    unbatched = pipe(examples, max_seq_len=16, doc_stride=4, top_k=2)
    batched = pipe(examples, max_seq_len=16, doc_stride=4, top_k=2, batch_size=3)
    for one, many in zip(unbatched, batched, strict=True):
        assert [(a["start"], a["end"]) for a in one] == [(a["start"], a["end"]) for a in many]
        assert [a["score"] for a in one] == pytest.approx([a["score"] for a in many], abs=1e-5)


def test_qa_rejects_bad_inputs(qa_model, tokenizer):
    pipe = _qa(qa_model, tokenizer)
    with pytest.raises(ValueError):
        pipe(question="where ?", context="")
    with pytest.raises(ValueError):
        pipe(question=["a", "b"], context=["c"])
    with pytest.raises(ValueError):
        pipe(question="where ?", context="the cat", top_k=0)


# ------------------------------------------------------------------------------------------- text2text family


def _reference(model, tokenizer, text: str, **generate_kwargs) -> torch.Tensor:
    encoded = tokenizer(text, return_tensors="pt")
    return model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], **generate_kwargs)


@pytest.mark.parametrize(
    ("task", "key"),
    [("text2text-generation", "generated"), ("summarization", "summary"), ("translation", "translation")],
)
def test_text2text_family_matches_generate(seq2seq, tokenizer, task, key):
    pipe = transformers.pipeline(task, model=seq2seq, tokenizer=tokenizer)
    text = "the big cat and the small dog eat a red apple ."
    kwargs = {"max_new_tokens": 6, "num_beams": 2}
    reference = _reference(seq2seq, tokenizer, text, **kwargs)

    records = pipe(text, **kwargs)
    assert records == [{f"{key}_text": tokenizer.decode(reference[0], skip_special_tokens=True)}]
    ids = pipe(text, return_tensors=True, **kwargs)
    assert torch.equal(ids[0][f"{key}_token_ids"], reference[0])


def test_text2text_init_kwargs_lists_and_num_return_sequences(seq2seq, tokenizer):
    pipe = transformers.pipeline("summarization", model=seq2seq, tokenizer=tokenizer, max_new_tokens=3)
    texts = ["the cat eats a fish .", "we see a big green tree by the blue river lake ."]
    out = pipe(texts)
    assert len(out) == 2 and all(set(record) == {"summary_text"} for record in out)
    for text, record in zip(texts, out, strict=True):
        reference = _reference(seq2seq, tokenizer, text, max_new_tokens=3)
        assert record["summary_text"] == tokenizer.decode(reference[0], skip_special_tokens=True)
    assert pipe(texts, batch_size=2) == out  # padded encoder batch, same texts

    several = pipe(texts, num_beams=3, num_return_sequences=2)
    assert len(several) == 2 and all(len(records) == 2 for records in several)


def test_translation_languages_from_task_name(seq2seq, tokenizer):
    pipe = SoraTranslationPipeline(model=seq2seq, tokenizer=tokenizer, task="translation_en_to_zh")
    preprocess_params, _, _ = pipe._sanitize_parameters()
    assert preprocess_params == {"src_lang": "en", "tgt_lang": "zh"}
    assert set(pipe("the cat .", max_new_tokens=2)[0]) == {"translation_text"}


# ---------------------------------------------------------------------------------------- sentence similarity


def _mean_pooled(model, tokenizer, text: str) -> torch.Tensor:
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state
    return hidden.mean(dim=1)


def test_similarity_mean_pooling(encoder, tokenizer):
    pipe = transformers.pipeline("sentence-similarity", model=encoder, tokenizer=tokenizer)
    source = "the cat eats a fish ."
    sentences = [source, "we see a big green tree by the river .", "a dog"]
    scores = pipe({"source_sentence": source, "sentences": sentences})
    assert isinstance(scores, list) and len(scores) == len(sentences)
    assert all(isinstance(score, float) for score in scores)
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    reference = [
        torch.nn.functional.cosine_similarity(
            _mean_pooled(encoder, tokenizer, source), _mean_pooled(encoder, tokenizer, s)
        ).item()
        for s in sentences
    ]
    assert scores == pytest.approx(reference, abs=1e-5)
    assert pipe(source_sentence=source, sentences=sentences, batch_size=3) == pytest.approx(scores, abs=1e-5)

    several = pipe(
        [{"source_sentence": source, "sentences": sentences[1:]}, {"source_sentence": "a", "sentences": []}]
    )
    assert several[0] == pytest.approx(scores[1:], abs=1e-5) and several[1] == []


def test_bert_folder_loads_as_before_for_similarity_and_feature_extraction(encoder, tokenizer, tmp_path):
    """The folder-aware model class of the embedding tasks changes nothing for BERT: `BertModel` either way, and the
    folder gives what the model object gives."""
    encoder.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    inputs = {"source_sentence": "the cat eats a fish .", "sentences": ["a dog", "we see a big green tree ."]}
    similarity = transformers.pipeline("sentence-similarity", model=str(tmp_path))
    assert type(similarity.model) is BertModel
    from_object = transformers.pipeline("sentence-similarity", model=encoder, tokenizer=tokenizer)
    assert similarity(inputs) == pytest.approx(from_object(inputs), abs=1e-6)
    extract = transformers.pipeline("feature-extraction", model=str(tmp_path))
    assert type(extract.model) is BertModel
    expected = transformers.pipeline("feature-extraction", model=encoder, tokenizer=tokenizer)("a dog")
    torch.testing.assert_close(torch.tensor(extract("a dog")), torch.tensor(expected))


@dataclass
class _EmbeddingOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


class _BertWithEmbeddings(BertModel):
    """Returns `embeddings` = one-hot of the first word: equal first words give similarity 1, others 0."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        hidden = super().forward(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        one_hot = torch.nn.functional.one_hot(input_ids[:, 1], self.config.vocab_size).float()
        return _EmbeddingOutput(last_hidden_state=hidden, embeddings=one_hot)


def test_similarity_prefers_model_embeddings(tokenizer):
    torch.manual_seed(3)
    model = _BertWithEmbeddings(_bert_config(tokenizer), add_pooling_layer=False).eval()
    pipe = transformers.pipeline("sentence-similarity", model=model, tokenizer=tokenizer)
    scores = pipe({"source_sentence": "apple pie", "sentences": ["apple tart .", "banana pie"]})
    assert scores == [pytest.approx(1.0, abs=1e-6), pytest.approx(0.0, abs=1e-6)]


@pytest.mark.parametrize("text", ["", "  ", "\u200b\u200c", "\ufeff \u2060"])
def test_similarity_and_text2text_refuse_text_with_no_visible_character(encoder, seq2seq, tokenizer, text):
    """A text of only whitespace or zero-width characters would be answered from the special tokens alone (issue 26):
    the pipelines refuse it naming the input, as the server and the QA pipeline do."""
    similarity = transformers.pipeline("sentence-similarity", model=encoder, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"sentences\[1\] has no visible character"):
        similarity({"source_sentence": "a dog", "sentences": ["a cat", text]})
    with pytest.raises(ValueError, match="source_sentence has no visible character"):
        similarity({"source_sentence": text, "sentences": ["a cat"]})
    summarize = transformers.pipeline("summarization", model=seq2seq, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="no visible character"):
        summarize(text, max_new_tokens=2)
    assert summarize("the cat eats a fish .", max_new_tokens=2)  # a visible text still answers
