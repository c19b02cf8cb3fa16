"""Token classification (NER, part of speech, BMES segmentation) over words (characters for Chinese).

Long sentences are split into overlapping windows (`doc_stride` tokens of overlap), as in transformers' examples,
and each word gets its prediction from the window where it sits farthest from an edge.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import load_metric
from .base import Features, Task, collect_outputs, label_names


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


def encode_token_classification(dataset, tokenizer, max_length: int, doc_stride: int) -> Features:
    """Words -> text -> overlapping windows; the first sub-token of each word carries its tag, the rest -100."""
    from datasets import Dataset

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


def write_entity_report(path: Path, per_type: dict[str, dict[str, Any]]) -> None:
    """seqeval's per-type precision, recall, f1 and support as a text table."""
    lines = [f"{'type':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, values in sorted(per_type.items()):
        lines.append(
            f"{name:<12}{values.get('precision', 0):>10.4f}{values.get('recall', 0):>10.4f}"
            f"{values.get('f1', 0):>10.4f}{values.get('number', values.get('support', 0)):>10}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class TokenClassificationTask(Task):
    name = "token_classification"
    auto_class_name = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    perturbed_columns = ("tokens",)
    perturbs_tagged_tokens = True
    headline = "test_overall_f1"
    distillable = True
    multitask_head = True
    has_label_names = True

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        return encode_token_classification(dataset, tokenizer, recipe.max_length, recipe.doc_stride)

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        logits = collect_outputs(model, features, collator, batch_size)["logits"]
        return decode_token_classification(logits, features, len(dataset))

    def score(self, info, test, predictions) -> dict[str, Any]:
        names = label_names(info)
        refs = [[names[t] for t in tags] for tags in test["tags"]]
        preds = [[names[t] for t in tags] for tags in predictions]
        flat = [p == r for pr, rr in zip(preds, refs, strict=True) for p, r in zip(pr, rr, strict=True)]
        options = {"scheme": "BMES"} if info.tag_scheme == "BMES" else {}
        result = load_metric("seqeval").compute(predictions=preds, references=refs, **options)
        metrics = {f"test_{k}": v for k, v in result.items() if not isinstance(v, dict)}
        metrics["test_token_accuracy"] = float(np.mean(flat)) if flat else 0.0
        metrics["test_per_type"] = {k: v for k, v in result.items() if isinstance(v, dict)}
        return metrics

    def prediction_row(self, example, prediction, names: list[str], info) -> dict[str, Any]:
        return {
            "tokens": example["tokens"],
            "tags": [names[t] for t in example["tags"]],
            "predictions": [names[t] for t in prediction],
        }

    def write_task_reports(self, output_dir: Path, info, test, predictions, metrics: dict[str, Any]) -> None:
        if "test_per_type" in metrics:
            write_entity_report(output_dir / "entity_report.txt", metrics["test_per_type"])


TASK = TokenClassificationTask()
