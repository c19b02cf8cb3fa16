"""Scores and reports of a fine-tuned model on its test split, through sora_hf's offline `evaluate` modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import load_metric


def _names(info) -> list[str]:
    return list(info.label_names or [])


def score(info, test, predictions) -> dict[str, Any]:
    """The task's natural metrics, prefixed `test_`."""
    task_type = info.task_type
    if task_type == "classification":
        return _classification(info, test, predictions)
    if task_type == "token_classification":
        names = _names(info)
        refs = [[names[t] for t in tags] for tags in test["tags"]]
        preds = [[names[t] for t in tags] for tags in predictions]
        flat = [p == r for pr, rr in zip(preds, refs, strict=True) for p, r in zip(pr, rr, strict=True)]
        options = {"scheme": "BMES"} if info.tag_scheme == "BMES" else {}
        result = load_metric("seqeval").compute(predictions=preds, references=refs, **options)
        metrics = {f"test_{k}": v for k, v in result.items() if not isinstance(v, dict)}
        metrics["test_token_accuracy"] = float(np.mean(flat)) if flat else 0.0
        metrics["test_per_type"] = {k: v for k, v in result.items() if isinstance(v, dict)}
        return metrics
    if task_type == "question_answering":
        preds = [{"id": i, "prediction_text": p} for i, p in zip(test["id"], predictions, strict=True)]
        refs = [{"id": i, "answers": a} for i, a in zip(test["id"], test["answers"], strict=True)]
        return {f"test_{k}": v for k, v in load_metric("squad").compute(predictions=preds, references=refs).items()}
    if task_type == "seq2seq":
        refs = list(test["target"])
        bleu = load_metric("sacrebleu").compute(predictions=predictions, references=[[r] for r in refs])
        chrf = load_metric("chrf").compute(predictions=predictions, references=[[r] for r in refs])
        cer = load_metric("cer").compute(predictions=predictions, references=refs)
        exact = float(np.mean([p == r for p, r in zip(predictions, refs, strict=True)]))
        return {
            "test_bleu": bleu["score"],
            "test_chrf": chrf["score"],
            "test_cer": cer["cer"] if isinstance(cer, dict) else cer,
            "test_exact_match": exact,
        }
    if task_type == "causal_lm":  # `predictions` are already the held-out metrics of the packed test blocks
        return {
            "test_perplexity": predictions["eval_perplexity"],
            "test_next_token_accuracy": predictions["eval_next_token_accuracy"],
            "test_loss": predictions["eval_loss"],
        }
    if task_type == "similarity":
        from scipy.stats import pearsonr, spearmanr

        labels = np.asarray(test["label"], dtype=float)
        return {
            "test_spearman": float(spearmanr(predictions, labels).statistic),
            "test_pearson": float(pearsonr(predictions, labels).statistic),
        }
    raise ValueError(f"unknown task type {task_type!r}")


def _classification(info, test, logits: np.ndarray) -> dict[str, Any]:
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


def write_reports(output_dir: Path, info, test, predictions, metrics: dict[str, Any]) -> None:
    """predictions.jsonl for every task; a confusion matrix PNG or a per-entity report where they apply."""
    rows = _prediction_rows(info, test, predictions)
    with (output_dir / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if info.task_type == "classification" and info.problem_type == "single_label_classification":
        plot_confusion_matrix(
            list(test["label"]), predictions.argmax(-1).tolist(), _names(info), output_dir / "confusion_matrix.png"
        )
    if info.task_type == "token_classification" and "test_per_type" in metrics:
        lines = [f"{'type':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for name, values in sorted(metrics["test_per_type"].items()):
            lines.append(
                f"{name:<12}{values.get('precision', 0):>10.4f}{values.get('recall', 0):>10.4f}"
                f"{values.get('f1', 0):>10.4f}{values.get('number', values.get('support', 0)):>10}"
            )
        (output_dir / "entity_report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _prediction_rows(info, test, predictions) -> list[dict[str, Any]]:
    if info.task_type == "causal_lm":
        return [{"split": "test", "texts": len(test), **predictions}]
    names = _names(info)
    rows = []
    for i, example in enumerate(test):
        if info.task_type == "classification":
            logits = predictions[i]
            if info.problem_type == "regression":
                rows.append({"text": example["text"], "label": example["label"], "prediction": float(logits[0])})
            elif info.problem_type == "multi_label_classification":
                rows.append(
                    {
                        "text": example["text"],
                        "labels": [names[j] for j in example["label"]],
                        "predictions": [names[j] for j in np.flatnonzero(logits > 0)],
                    }
                )
            else:
                rows.append(
                    {
                        "text": example["text"],
                        "label": names[example["label"]],
                        "prediction": names[int(logits.argmax())],
                    }
                )
        elif info.task_type == "token_classification":
            rows.append(
                {
                    "tokens": example["tokens"],
                    "tags": [names[t] for t in example["tags"]],
                    "predictions": [names[t] for t in predictions[i]],
                }
            )
        elif info.task_type == "question_answering":
            rows.append(
                {
                    "id": example["id"],
                    "question": example["question"],
                    "answers": example["answers"]["text"],
                    "prediction": predictions[i],
                }
            )
        elif info.task_type == "seq2seq":
            rows.append({"source": example["source"], "target": example["target"], "prediction": predictions[i]})
        else:
            rows.append(
                {
                    "text": example["text"],
                    "text_pair": example["text_pair"],
                    "label": example["label"],
                    "cosine": float(predictions[i]),
                }
            )
    return rows


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
