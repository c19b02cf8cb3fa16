"""Sentence similarity: a Sora sentence encoder scored by the cosine of the two sentences' embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Features, Task, collect_outputs


def encode_similarity(dataset, tokenizer, max_length: int) -> Features:
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

    def __call__(self, features: list[dict[str, Any]]):
        import torch

        batch = {}
        for suffix in ("", "_b"):
            ids = [f[f"input_ids{suffix}"] for f in features]
            width = max(len(x) for x in ids)
            batch[f"input_ids{suffix}"] = torch.tensor([x + [self.pad_token_id] * (width - len(x)) for x in ids])
            batch[f"attention_mask{suffix}"] = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        batch["labels"] = torch.tensor([float(f["labels"]) for f in features])
        return batch


def _pair_cosine(key: str, value, model, batch):
    """The first sentence's embeddings -> the cosine with the second sentence's."""
    if key != "embeddings":
        return value
    import torch

    other = model(input_ids=batch["input_ids_b"], attention_mask=batch["attention_mask_b"]).embeddings
    return torch.nn.functional.cosine_similarity(value.float(), other.float(), dim=-1)


class SimilarityTask(Task):
    name = "similarity"
    auto_class_name = "AutoModelForTextEncoding"
    pipeline_tag = "sentence-similarity"
    perturbed_columns = ("text", "text_pair")
    headline = "test_spearman"

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        return encode_similarity(dataset, tokenizer, recipe.max_length)

    def collator(self, tokenizer, model):
        return PairCollator(tokenizer.pad_token_id)

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        return np.array(collect_outputs(model, features, collator, batch_size, transform=_pair_cosine)["embeddings"])

    def score(self, info, test, predictions) -> dict[str, Any]:
        from scipy.stats import pearsonr, spearmanr

        labels = np.asarray(test["label"], dtype=float)
        return {
            "test_spearman": float(spearmanr(predictions, labels).statistic),
            "test_pearson": float(pearsonr(predictions, labels).statistic),
        }

    def prediction_row(self, example, prediction, names: list[str], info) -> dict[str, Any]:
        return {
            "text": example["text"],
            "text_pair": example["text_pair"],
            "label": example["label"],
            "cosine": float(prediction),
        }


TASK = SimilarityTask()
