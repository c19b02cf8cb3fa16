"""Extractive question answering in the SQuAD layout.

Long contexts are split into overlapping windows (`doc_stride` tokens of overlap), as in transformers' examples;
each question's answer is the best-scoring span over all of its windows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..metrics import load_metric
from .base import Features, Task, collect_outputs, evaluation_scores


def encode_question_answering(dataset, tokenizer, max_length: int, doc_stride: int) -> Features:
    """SQuAD-style windows over the context; a window that does not hold the answer points at [CLS]."""
    from datasets import Dataset

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


class QuestionAnsweringTask(Task):
    name = "question_answering"
    auto_class_name = "AutoModelForQuestionAnswering"
    pipeline_tag = "question-answering"
    perturbed_columns = ("question",)  # the context and its answer spans stay exact
    headline = "test_f1"
    distillable = True

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        return encode_question_answering(dataset, tokenizer, recipe.max_length, recipe.doc_stride)

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        outputs = collect_outputs(model, features, collator, batch_size)
        return decode_question_answering(
            outputs["start_logits"], outputs["end_logits"], features, list(dataset["context"])
        )

    def eval_metrics(self, info, dataset, features, model):
        def compute_metrics(prediction) -> dict[str, Any]:
            start_logits, end_logits = prediction.predictions[:2]
            texts = decode_question_answering(start_logits, end_logits, features, list(dataset["context"]))
            return evaluation_scores(self.score(info, dataset, texts))

        return compute_metrics, lambda outputs, labels: tuple(outputs[:2])

    def score(self, info, test, predictions) -> dict[str, Any]:
        preds = [{"id": i, "prediction_text": p} for i, p in zip(test["id"], predictions, strict=True)]
        refs = [{"id": i, "answers": a} for i, a in zip(test["id"], test["answers"], strict=True)]
        return {f"test_{k}": v for k, v in load_metric("squad").compute(predictions=preds, references=refs).items()}

    def prediction_row(self, example, prediction, names: list[str], info) -> dict[str, Any]:
        return {
            "id": example["id"],
            "question": example["question"],
            "answers": example["answers"]["text"],
            "prediction": prediction,
        }


TASK = QuestionAnsweringTask()
