"""Turning task datasets into model features and model outputs back into predictions, one pair per task type.

Long inputs follow what users expect from transformers' examples: classification texts are truncated (with a
warning that says how many), token classification and extractive QA are split into overlapping windows
(`doc_stride` tokens of overlap), and each word / question gets its prediction from the window where it has the
most context.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset

logger = logging.getLogger(__name__)

TASK_TYPES = ("classification", "token_classification", "question_answering", "seq2seq", "similarity")


@dataclass
class Features:
    """Model inputs for Trainer plus what is needed to map predictions back to the examples."""

    dataset: Dataset
    meta: list[dict[str, Any]] = field(default_factory=list)


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Words (characters for Chinese) back to a text, with each word's character span.

    Chinese characters are joined directly; a space separates two words when both touch Latin letters or digits,
    which is how the text was written.
    """
    text, spans = "", []
    for word in words:
        if text and word and not _is_cjk(word[0]) and not _is_cjk(text[-1]) and not text[-1].isspace():
            text += " "
        spans.append((len(text), len(text) + len(word)))
        text += word
    return text, spans


# ---------------------------------------------------------------------------------------------------------------
# classification


def encode_classification(
    dataset: Dataset, tokenizer, max_length: int, problem_type: str, num_labels: int, name: str = "data"
) -> Features:
    has_pair = "text_pair" in dataset.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pairs = batch["text_pair"] if has_pair else None
        enc = tokenizer(batch["text"], pairs, truncation=True, max_length=max_length)
        if problem_type == "multi_label_classification":
            labels = []
            for label_ids in batch["label"]:
                hot = [0.0] * num_labels
                for i in label_ids:
                    hot[i] = 1.0
                labels.append(hot)
            enc["labels"] = labels
        elif problem_type == "regression":
            enc["labels"] = [float(v) for v in batch["label"]]
        else:
            enc["labels"] = list(batch["label"])
        return enc

    lengths = tokenizer(list(dataset["text"]), list(dataset["text_pair"]) if has_pair else None, verbose=False)[
        "input_ids"
    ]
    truncated = sum(len(ids) > max_length for ids in lengths)
    if truncated:
        logger.warning(
            "%s: %d of %d texts are longer than max_length=%d tokens and were truncated",
            name,
            truncated,
            len(dataset),
            max_length,
        )
    features = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"Tokenising {name}")
    return Features(features, [{"truncated": truncated}])


# ---------------------------------------------------------------------------------------------------------------
# token classification


def encode_token_classification(dataset: Dataset, tokenizer, max_length: int, doc_stride: int) -> Features:
    """Words -> text -> overlapping windows; the first sub-token of each word carries its tag, the rest -100."""
    rows: dict[str, list] = defaultdict(list)
    meta = []
    for example_index, example in enumerate(dataset):
        words, tags = example["tokens"], example["tags"]
        text, spans = join_words(words)
        char_to_word = np.full(len(text) + 1, -1, dtype=np.int64)
        for w, (start, end) in enumerate(spans):
            char_to_word[start:end] = w
        enc = tokenizer(
            text,
            truncation=True,
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for window in range(len(enc["input_ids"])):
            offsets = enc["offset_mapping"][window]
            special = enc.encodings[window].special_tokens_mask
            labels, word_of_token, seen = [], [], set()
            for t, (start, end) in enumerate(offsets):
                if special[t] or start == end:
                    labels.append(-100)
                    word_of_token.append(-1)
                    continue
                # skip the leading space a Metaspace token may cover
                while start < end and text[start].isspace():
                    start += 1
                w = int(char_to_word[start]) if start < end else -1
                if w < 0 or w in seen:
                    labels.append(-100)
                    word_of_token.append(-1)
                else:
                    seen.add(w)
                    labels.append(int(tags[w]))
                    word_of_token.append(w)
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if key in enc:
                    rows[key].append(enc[key][window])
            rows["labels"].append(labels)
            meta.append({"example": example_index, "word_of_token": word_of_token, "num_words": len(words)})
    return Features(Dataset.from_dict(dict(rows)), meta)


def decode_token_classification(logits: np.ndarray, features: Features, num_examples: int) -> list[list[int]]:
    """Per example, the predicted tag of every word, from the window where the word sits farthest from an edge."""
    best: list[dict[int, tuple[int, int]]] = [{} for _ in range(num_examples)]
    for row, meta in enumerate(features.meta):
        positions = [t for t, w in enumerate(meta["word_of_token"]) if w >= 0]
        length = len(meta["word_of_token"])
        for t in positions:
            w = meta["word_of_token"][t]
            margin = min(t, length - 1 - t)
            previous = best[meta["example"]].get(w)
            if previous is None or margin > previous[0]:
                best[meta["example"]][w] = (margin, int(logits[row][t].argmax()))
    sizes = {m["example"]: m["num_words"] for m in features.meta}
    predictions = []
    for example in range(num_examples):
        words = best[example]
        predictions.append([words[w][1] if w in words else 0 for w in range(sizes.get(example, 0))])
    return predictions


# ---------------------------------------------------------------------------------------------------------------
# extractive question answering


def encode_question_answering(dataset: Dataset, tokenizer, max_length: int, doc_stride: int) -> Features:
    """SQuAD-style windows over the context; a window that does not hold the answer points at [CLS]."""
    enc = tokenizer(
        list(dataset["question"]),
        list(dataset["context"]),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    sample_map = enc.pop("overflow_to_sample_mapping")
    rows: dict[str, list] = defaultdict(list)
    meta = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = dataset[int(sample_map[i])]
        sequence_ids = enc.sequence_ids(i)
        answer = example["answers"]
        start_char = answer["answer_start"][0] if answer["answer_start"] else None
        end_char = start_char + len(answer["text"][0]) if start_char is not None else None
        context_tokens = [t for t, s in enumerate(sequence_ids) if s == 1]
        start_pos = end_pos = 0
        if start_char is not None and context_tokens:
            first, last = context_tokens[0], context_tokens[-1]
            if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                start_pos = next(t for t in context_tokens if offsets[t][1] > start_char)
                end_pos = max(t for t in context_tokens if offsets[t][0] < end_char)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in enc:
                rows[key].append(enc[key][i])
        rows["start_positions"].append(start_pos)
        rows["end_positions"].append(end_pos)
        meta.append(
            {
                "example": int(sample_map[i]),
                "offsets": [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence_ids, strict=True)],
            }
        )
    return Features(Dataset.from_dict(dict(rows)), meta)


def decode_question_answering(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    features: Features,
    contexts: list[str],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> list[str]:
    """Best-scoring context span (start logit + end logit) over every window of each question."""
    best: dict[int, tuple[float, str]] = {}
    for row, meta in enumerate(features.meta):
        offsets, context = meta["offsets"], contexts[meta["example"]]
        starts = np.argsort(start_logits[row])[::-1][:n_best]
        ends = np.argsort(end_logits[row])[::-1][:n_best]
        for s in starts:
            for e in ends:
                if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                    continue
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[row][s] + end_logits[row][e])
                if meta["example"] not in best or score > best[meta["example"]][0]:
                    best[meta["example"]] = (score, context[offsets[s][0] : offsets[e][1]].strip())
    return [best.get(i, (0.0, ""))[1] for i in range(len(contexts))]


# ---------------------------------------------------------------------------------------------------------------
# seq2seq and similarity


def encode_seq2seq(dataset: Dataset, tokenizer, max_length: int, max_target_length: int) -> Features:
    """Source through the tokenizer's template; target as plain tokens + [EOS] (the decoder starts from [BOS])."""
    eos = tokenizer.eos_token_id

    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(batch["source"], truncation=True, max_length=max_length)
        targets = tokenizer(batch["target"], add_special_tokens=False)["input_ids"]
        enc["labels"] = [ids[: max_target_length - 1] + [eos] for ids in targets]
        return enc

    return Features(dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenising"))


def encode_similarity(dataset: Dataset, tokenizer, max_length: int) -> Features:
    def encode(batch: dict[str, list]) -> dict[str, list]:
        a = tokenizer(batch["text"], truncation=True, max_length=max_length)
        b = tokenizer(batch["text_pair"], truncation=True, max_length=max_length)
        return {
            "input_ids": a["input_ids"],
            "attention_mask": a["attention_mask"],
            "input_ids_b": b["input_ids"],
            "attention_mask_b": b["attention_mask"],
            "labels": [float(v) for v in batch["label"]],
        }

    return Features(dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenising"))


class PairCollator:
    """Pads both sentences of a similarity pair (`input_ids`/`input_ids_b`)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {}
        for suffix in ("", "_b"):
            ids = [f[f"input_ids{suffix}"] for f in features]
            width = max(len(x) for x in ids)
            batch[f"input_ids{suffix}"] = torch.tensor([x + [self.pad_token_id] * (width - len(x)) for x in ids])
            batch[f"attention_mask{suffix}"] = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        batch["labels"] = torch.tensor([float(f["labels"]) for f in features])
        return batch
