"""Sentence similarity: a Sora sentence encoder scored by the cosine of the two sentences' embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Features, Task, collect_outputs, evaluation_scores, first_output


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
    """One batch of both sentences of each pair: the first sentences, then the second ones, padded to one width (as
    sentence-transformers batches them), so that one forward pass embeds every sentence; `labels` has one score per
    pair."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]):
        import torch

        ids = [f["input_ids"] for f in features] + [f["input_ids_b"] for f in features]
        width = max(len(x) for x in ids)
        return {
            "input_ids": torch.tensor([x + [self.pad_token_id] * (width - len(x)) for x in ids]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            "labels": torch.tensor([float(f["labels"]) for f in features]),
        }


def pair_cosine(embeddings):
    """The cosine of each pair, from the embeddings of a `PairCollator` batch (first sentences, then second)."""
    import torch

    first, second = embeddings.float().chunk(2)
    return torch.nn.functional.cosine_similarity(first, second, dim=-1)


def cosent_loss(cosine, labels, scale: float = 20.0):
    """CoSENT: every pair ranked more similar by the labels should get a higher cosine (Su, 2022)."""
    import torch

    diff = scale * (cosine[None, :] - cosine[:, None])  # diff[i, j] = s_j - s_i
    wrong_order = labels[:, None] > labels[None, :]  # pair i should beat pair j
    diff = diff.masked_fill(~wrong_order, float("-inf"))
    # a fresh tensor: Trainer scales the loss in place, and logsumexp's backward needs its own output intact
    return torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0).clone()


def pair_loss(outputs, labels, num_items_in_batch=None):
    """Trainer's `compute_loss_func` for sentence pairs: CoSENT on the cosine of each pair of a `PairCollator` batch.

    Trainer leaves a `compute_loss_func` loss undivided by the gradient-accumulation steps and passes the pairs of
    the whole accumulated batch as `num_items_in_batch`: a micro-batch weighs its share of them."""
    cosine = pair_cosine(outputs["embeddings"])
    loss = cosent_loss(cosine, labels.float().to(cosine.device))
    if num_items_in_batch is not None:
        loss = loss * labels.numel() / num_items_in_batch
    return loss


def _pair_cosine(key: str, value, model, batch):
    return pair_cosine(value) if key == "embeddings" else value


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

    def training_defaults(self) -> dict[str, Any]:
        # the collator reads the second sentences, which forward does not; `labels` (the scores, which forward does not
        # take either) are what evaluation computes the pair loss and the metrics from
        return {"remove_unused_columns": False, "label_names": ["labels"]}

    def loss_function(self):
        return pair_loss

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        return np.array(collect_outputs(model, features, collator, batch_size, transform=_pair_cosine)["embeddings"])

    def eval_metrics(self, info, dataset, features, model):
        def compute_metrics(prediction) -> dict[str, Any]:
            return evaluation_scores(self.score(info, dataset, np.asarray(prediction.predictions)))

        return compute_metrics, lambda outputs, labels: pair_cosine(first_output(outputs))

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
