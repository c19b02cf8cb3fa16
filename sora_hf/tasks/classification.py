"""Sequence classification: single-label, multi-label and regression, of a text or a text pair.

Texts longer than `max_length` are truncated, with a warning that says how many.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import load_metric
from .base import Features, Task, collect_outputs, evaluation_scores, first_output

logger = logging.getLogger(__name__)

# the score a run is judged by, per problem type
HEADLINE_METRICS = {
    "single_label_classification": "test_accuracy",
    "multi_label_classification": "test_f1_micro",
    "regression": "test_spearman",
}


def encode_classification(
    dataset, tokenizer, max_length: int, problem_type: str, num_labels: int, name: str = "data"
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


def score_classification(info, test, logits: np.ndarray) -> dict[str, Any]:
    if info.problem_type == "regression":
        from scipy.stats import pearsonr, spearmanr

        preds, labels = logits[:, 0], np.asarray(test["label"], dtype=float)
        return {
            "test_mse": float(np.mean((preds - labels) ** 2)),
            "test_pearson": float(pearsonr(preds, labels).statistic),
            "test_spearman": float(spearmanr(preds, labels).statistic),
        }
    if info.problem_type == "multi_label_classification":
        preds = (logits > 0).astype(int)
        refs = np.zeros_like(preds)
        for row, label_ids in enumerate(test["label"]):
            refs[row, list(label_ids)] = 1
        prf = load_metric("precision_recall_f1")
        micro = prf.compute(predictions=preds.tolist(), references=refs.tolist(), average="micro")
        macro = prf.compute(predictions=preds.tolist(), references=refs.tolist(), average="macro")
        return {
            "test_subset_accuracy": float((preds == refs).all(axis=1).mean()),
            "test_f1_micro": micro["f1"],
            "test_f1_macro": macro["f1"],
            "test_precision_micro": micro["precision"],
            "test_recall_micro": micro["recall"],
        }
    preds = logits.argmax(-1).tolist()
    refs = list(test["label"])
    prf = load_metric("precision_recall_f1")
    macro = prf.compute(predictions=preds, references=refs, average="macro")
    micro = prf.compute(predictions=preds, references=refs, average="micro")
    return {
        "test_accuracy": load_metric("accuracy").compute(predictions=preds, references=refs)["accuracy"],
        "test_f1_macro": macro["f1"],
        "test_precision_macro": macro["precision"],
        "test_recall_macro": macro["recall"],
        "test_f1_micro": micro["f1"],
    }


def plot_confusion_matrix(references: list[int], predictions: list[int], names: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    matrix = confusion_matrix(references, predictions, labels=list(range(len(names))))
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(names) + 2), max(3.5, 0.6 * len(names) + 1.5)), dpi=110)
    ConfusionMatrixDisplay(matrix, display_labels=names).plot(ax=ax, colorbar=False, cmap="Blues")
    ax.set_title("test confusion matrix")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class ClassificationTask(Task):
    name = "classification"
    auto_class_name = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    perturbed_columns = ("text", "text_pair")
    distillable = True
    has_label_names = True
    has_problem_type = True

    def headline_metric(self, info) -> str:
        return HEADLINE_METRICS[info.problem_type or "single_label_classification"]

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        return encode_classification(
            dataset, tokenizer, recipe.max_length, info.problem_type, info.num_labels or 1, name
        )

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        return np.stack(collect_outputs(model, features, collator, batch_size)["logits"])

    def score(self, info, test, predictions) -> dict[str, Any]:
        return score_classification(info, test, predictions)

    def eval_metrics(self, info, dataset, features, model):
        def compute_metrics(prediction) -> dict[str, Any]:
            return evaluation_scores(score_classification(info, dataset, np.asarray(prediction.predictions)))

        return compute_metrics, lambda outputs, labels: first_output(outputs)

    def prediction_row(self, example, logits, names: list[str], info) -> dict[str, Any]:
        if info.problem_type == "regression":
            return {"text": example["text"], "label": example["label"], "prediction": float(logits[0])}
        if info.problem_type == "multi_label_classification":
            return {
                "text": example["text"],
                "labels": [names[j] for j in example["label"]],
                "predictions": [names[j] for j in np.flatnonzero(logits > 0)],
            }
        return {"text": example["text"], "label": names[example["label"]], "prediction": names[int(logits.argmax())]}

    def write_task_reports(self, output_dir: Path, info, test, predictions, metrics: dict[str, Any]) -> None:
        if info.problem_type == "single_label_classification":
            plot_confusion_matrix(
                list(test["label"]),
                predictions.argmax(-1).tolist(),
                list(info.label_names or []),
                output_dir / "confusion_matrix.png",
            )


TASK = ClassificationTask()
