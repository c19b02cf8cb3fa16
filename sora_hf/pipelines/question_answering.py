"""Extractive question answering, for transformers versions that no longer ship a `question-answering` pipeline.

transformers 5.x removed `QuestionAnsweringPipeline`. This is a lean re-implementation of its fast-tokenizer path,
written against the v5 `ChunkPipeline` API and duck-typed on the model: any model whose output has
`start_logits`/`end_logits` (or returns them as the first two tuple items) works, with a fast tokenizer that gives
offsets.

Differences from the old transformers pipeline, on purpose:
- slow tokenizers (SQuAD feature conversion) are not supported;
- the same character span found in two overlapping windows keeps its best score (the old pipeline summed the scores
  of equal answer texts, which could exceed 1);
- `top_k > 1` always returns a list, and list inputs always return a list.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator
from typing import Any

import torch
from transformers.pipelines.base import ChunkPipeline

from ._utils import (
    TextPipelineMixin,
    default_max_length,
    forward_accepts,
    is_blank,
    model_input_names,
    output_field,
)

logger = logging.getLogger(__name__)

# Keys that travel from `preprocess` through `_forward` to `postprocess` next to the model inputs.
_CARRIED = ("p_mask", "char_spans", "null_index", "example", "is_last")


def _has_cjk(text: str) -> bool:
    """True if `text` holds Chinese/Japanese characters, whose "words" (runs without spaces) are not answer units."""
    for char in text:
        code = ord(char)
        if (
            0x3040 <= code <= 0x30FF  # Hiragana, Katakana
            or 0x3400 <= code <= 0x4DBF  # CJK extension A
            or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
            or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
            or 0x20000 <= code <= 0x2FA1F  # CJK extensions B-F, compatibility supplement
        ):
            return True
    return False


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """`(start, end)` narrowed to exclude leading and trailing whitespace of `text[start:end]`."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _char_spans(
    context: str,
    offsets: list[tuple[int, int]],
    word_ids: list[int | None],
    is_context: list[bool],
    align_to_words: bool,
) -> list[tuple[int, int]]:
    """Character span in `context` of every token of one window; (0, 0) for tokens outside the context.

    Spans are trimmed of whitespace: SentencePiece-style tokenizers (Metaspace, as in the Sora tokenizer) count the
    space before a word in its token's offsets, which would give answers like " Berlin"; a token that is only
    whitespace gets an empty span, and `preprocess` then keeps it from starting or ending an answer.

    With `align_to_words`, a context token gets the span of its whole word (within this window), so that an answer
    starting or ending inside a word-piece covers the full word, as the old pipeline did. Two exceptions, where
    "word" is not a useful unit: a window whose context is a single word (the tokenizer has no pre-tokenizer, so
    the whole text is one "word"), and words with CJK characters (a SentencePiece/whitespace pre-tokenizer makes a
    whole Chinese clause one "word").
    """
    spans = [
        _strip(context, int(s), int(e)) if ctx else (0, 0) for (s, e), ctx in zip(offsets, is_context, strict=True)
    ]
    if not align_to_words:
        return spans
    context_words = {w for w, ctx in zip(word_ids, is_context, strict=True) if ctx and w is not None}
    if len(context_words) <= 1:
        return spans
    word_span: dict[int, tuple[int, int]] = {}
    for (start, end), word, ctx in zip(spans, word_ids, is_context, strict=True):
        if ctx and word is not None and end > start:
            lo, hi = word_span.get(word, (start, end))
            word_span[word] = (min(lo, start), max(hi, end))
    aligned = []
    for span, word, ctx in zip(spans, word_ids, is_context, strict=True):
        if ctx and word is not None and span[1] > span[0] and word in word_span:
            candidate = word_span[word]
            if not _has_cjk(context[candidate[0] : candidate[1]]):
                span = candidate
        aligned.append(span)
    return aligned


class SoraQuestionAnsweringPipeline(TextPipelineMixin, ChunkPipeline):
    """Extractive QA: answers are spans of the context, found over overlapping windows of a long context.

    Example:

    ```python
    >>> import sora_hf  # registers the pipeline
    >>> from transformers import pipeline
    >>> qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    >>> qa(question="Where do I live?", context="My name is Wolfgang and I live in Berlin")
    {'score': 0.91, 'start': 34, 'end': 40, 'answer': 'Berlin'}
    ```

    Inputs: `question=` and `context=` (strings, or lists of equal length, or a list of questions for one
    context), one `{"question": ..., "context": ...}` dict or a list of them, or two positional strings.

    Parameters (at construction or per call):
    - `top_k` (1): number of answers; `top_k > 1` returns a list sorted by score.
    - `max_answer_len` (15): longest answer, in tokens.
    - `max_seq_len` (min(384, tokenizer and model limits)): window length in tokens, question included.
    - `doc_stride` (min(max_seq_len // 2, 128)): tokens shared by consecutive windows of a long context.
    - `handle_impossible_answer` (False): also score the empty answer (start and end on the CLS token).
    - `align_to_words` (True): widen answers to whole words (not for CJK text, see `_char_spans`).

    Output: `{"score", "start", "end", "answer"}` with `answer == context[start:end]`; scores are the old
    pipeline's: start and end probabilities (softmax over one window) multiplied.
    """

    default_input_names = "question,context"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._require_tokenizer(fast=True, why=" (it reads token offsets).")
        self._input_names = model_input_names(self.model, self.tokenizer)
        self._use_cache_arg = forward_accepts(self.model, "use_cache")

    # ---------------------------------------------------------------- parameters and inputs

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        max_answer_len: int | None = None,
        doc_stride: int | None = None,
        max_seq_len: int | None = None,
        handle_impossible_answer: bool | None = None,
        align_to_words: bool | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        for name, value, low in (
            ("doc_stride", doc_stride, 0),
            ("top_k", top_k, 1),
            ("max_answer_len", max_answer_len, 1),
        ):
            if value is not None and value < low:
                raise ValueError(f"{name} must be >= {low} (got {value})")
        given = {
            "doc_stride": doc_stride,
            "max_seq_len": max_seq_len,
            "align_to_words": align_to_words,
            "top_k": top_k,
            "max_answer_len": max_answer_len,
            "handle_impossible_answer": handle_impossible_answer,
        }
        given = {name: value for name, value in given.items() if value is not None}
        preprocess = {k: given[k] for k in ("doc_stride", "max_seq_len", "align_to_words") if k in given}
        postprocess = {k: given[k] for k in ("top_k", "max_answer_len", "handle_impossible_answer") if k in given}
        return preprocess, {}, postprocess

    @staticmethod
    def _check_example(item: Any) -> dict[str, str]:
        if not isinstance(item, dict) or "question" not in item or "context" not in item:
            raise ValueError(f"Expected a dict with keys 'question' and 'context', got {item!r}")
        for key in ("question", "context"):
            if not isinstance(item[key], str) or is_blank(item[key]):
                raise ValueError(
                    f"`{key}` must be a non-empty string with a visible character (not only whitespace or zero-width "
                    f"characters), got {item[key]!r}"
                )
        return {"question": item["question"], "context": item["context"]}

    def _collect_inputs(self, args: tuple, kwargs: dict) -> Any:
        """Turn the accepted call forms into one example dict or a list of them (generators pass through)."""
        question = kwargs.pop("question", None)
        context = kwargs.pop("context", None)
        if args:
            if question is not None or context is not None:
                raise ValueError("Pass the inputs either positionally or as question=/context=, not both.")
            if len(args) == 2 and all(isinstance(a, str) for a in args):
                question, context = args
            elif len(args) == 1:
                inputs = args[0]
                if isinstance(inputs, dict):
                    return self._check_example(inputs)
                if isinstance(inputs, (list, tuple)):
                    return [self._check_example(item) for item in inputs]
                return inputs  # generator / Dataset of example dicts: checked lazily in preprocess
            else:
                raise ValueError("Expected (question, context) strings or one input (dict, list of dicts).")
        if question is None or context is None:
            raise ValueError("Both `question` and `context` are required.")
        if isinstance(question, str) and isinstance(context, str):
            return self._check_example({"question": question, "context": context})
        if isinstance(question, (list, tuple)) and isinstance(context, str):
            return [self._check_example({"question": q, "context": context}) for q in question]
        if isinstance(question, (list, tuple)) and isinstance(context, (list, tuple)):
            if len(question) != len(context):
                raise ValueError(f"{len(question)} questions but {len(context)} contexts")
            return [self._check_example({"question": q, "context": c}) for q, c in zip(question, context, strict=True)]
        raise ValueError("`question`/`context` must be strings or lists of strings.")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Answer question(s) from context(s); see the class docstring for the accepted forms and parameters.

        Returns one answer dict for one example with `top_k=1`, a list of answer dicts with `top_k > 1`, and a list
        of those for a list of examples (an iterator for a generator or Dataset).
        """
        inputs = self._collect_inputs(args, kwargs)
        if isinstance(inputs, types.GeneratorType):
            inputs = (self._check_example(item) for item in inputs)
        return super().__call__(inputs, **kwargs)

    # ---------------------------------------------------------------- pipeline steps

    def preprocess(
        self,
        example: dict[str, str],
        max_seq_len: int | None = None,
        doc_stride: int | None = None,
        align_to_words: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Yield one model input per window of the context (the question is repeated in every window)."""
        example = self._check_example(example)
        question, context = example["question"], example["context"]
        if max_seq_len is None:
            max_seq_len = default_max_length(self.model, self.tokenizer, 384)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise ValueError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")

        # Tokenizers put the padding side's text second: question first for right padding (BERT), context first
        # for left padding (XLNet), as the old pipeline did.
        question_first = self.tokenizer.padding_side == "right"
        context_index = 1 if question_first else 0
        question_len = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
        room = max_seq_len - question_len - self.tokenizer.num_special_tokens_to_add(pair=True)
        if room < 2:
            raise ValueError(
                f"The question takes {question_len} tokens, which leaves no room for the context in max_seq_len="
                f"{max_seq_len}; raise max_seq_len or shorten the question."
            )
        if doc_stride >= room:
            # tokenizers refuses a stride that is not smaller than the context part of a window
            logger.warning("doc_stride=%d does not fit next to this question; using %d", doc_stride, room - 1)
            doc_stride = room - 1

        encoded = self.tokenizer(
            text=question if question_first else context,
            text_pair=context if question_first else question,
            truncation="only_second" if question_first else "only_first",
            max_length=max_seq_len,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_attention_mask=True,
        )
        n_windows = len(encoded["input_ids"])
        cls_id = self.tokenizer.cls_token_id
        for i in range(n_windows):
            input_ids = encoded["input_ids"][i]
            is_context = [seq == context_index for seq in encoded.sequence_ids(i)]
            spans = _char_spans(context, encoded["offset_mapping"][i], encoded.word_ids(i), is_context, align_to_words)
            # The no-answer score is read on the CLS token (position 0 when the tokenizer has none), as before.
            null_index = input_ids.index(cls_id) if cls_id is not None and cls_id in input_ids else 0
            features = {name: torch.tensor([encoded[name][i]]) for name in self._input_names if name in encoded}
            # 1 = cannot start or end an answer: question, special and whitespace-only tokens
            p_mask = [0 if ctx and end > start else 1 for ctx, (start, end) in zip(is_context, spans, strict=True)]
            yield {
                **features,
                "p_mask": torch.tensor([p_mask]),
                "char_spans": torch.tensor([spans]),
                "null_index": torch.tensor([null_index]),
                "example": example,
                "is_last": i == n_windows - 1,
            }

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        model_inputs = {name: inputs[name] for name in self._input_names if name in inputs}
        if self._use_cache_arg:
            model_inputs["use_cache"] = False
        output = self.model(**model_inputs)
        start = output_field(output, "start_logits", 0)
        end = output_field(output, "end_logits", 1)
        if start is None or end is None:
            raise ValueError(f"{type(self.model).__name__} does not return start_logits/end_logits")
        # A tensor first: the chunk iterator reads the batch size from the first value.
        return {"start_logits": start, "end_logits": end, **{key: inputs[key] for key in _CARRIED}}

    def postprocess(
        self,
        model_outputs: list[dict[str, Any]],
        top_k: int = 1,
        handle_impossible_answer: bool = False,
        max_answer_len: int = 15,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Score every (start, end) context span of every window; keep the best `top_k` distinct spans."""
        context = model_outputs[0]["example"]["context"]
        best: dict[tuple[int, int], float] = {}
        null_score = float("inf")
        for output in model_outputs:
            start_logits = output["start_logits"][0].float()
            end_logits = output["end_logits"][0].float()
            allowed = output["p_mask"][0] == 0
            spans = output["char_spans"][0]
            null_index = int(output["null_index"].reshape(-1)[0])
            # Softmax over the context tokens plus the CLS token (the old pipeline's normalisation)
            support = allowed.clone()
            support[null_index] = True
            p_start = torch.softmax(start_logits.masked_fill(~support, float("-inf")), dim=-1)
            p_end = torch.softmax(end_logits.masked_fill(~support, float("-inf")), dim=-1)
            null_score = min(null_score, float(p_start[null_index] * p_end[null_index]))

            length = allowed.shape[0]
            index = torch.arange(length)
            gap = index[None, :] - index[:, None]  # end - start
            valid = (gap >= 0) & (gap < max_answer_len) & allowed[:, None] & allowed[None, :]
            n_valid = int(valid.sum())
            if n_valid == 0:
                continue
            scores = (p_start[:, None] * p_end[None, :]).masked_fill(~valid, -1.0)
            # Several token spans can map to one character span after word alignment: take a few extra.
            values, flat = scores.flatten().topk(min(n_valid, 2 * top_k + 10))
            for value, position in zip(values.tolist(), flat.tolist(), strict=True):
                s, e = divmod(position, length)
                span = (int(spans[s][0]), int(spans[e][1]))
                if span[1] > span[0] and value > best.get(span, -1.0):
                    best[span] = value

        answers = [
            {"score": score, "start": start, "end": end, "answer": context[start:end]}
            for (start, end), score in best.items()
        ]
        if handle_impossible_answer:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers.sort(key=lambda answer: answer["score"], reverse=True)
        answers = answers[:top_k]
        if top_k == 1:
            return answers[0] if answers else {"score": 0.0, "start": 0, "end": 0, "answer": ""}
        return answers
