"""Precision, recall and F1 in one pass, via scikit-learn's precision_recall_fscore_support."""

import evaluate
from sklearn.metrics import precision_recall_fscore_support

from sora_hf.metrics.features import LABELS, SKLEARN_CITATION, with_info

_DESCRIPTION = """\
Precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = their harmonic mean, computed together by
sklearn.metrics.precision_recall_fscore_support. Labels are ints or strings (binary or multi-class), or one 0/1
row per example (multi-label). Unlike scikit-learn the default average is "macro", which is defined for every
input; use average="binary" (with pos_label) for the F1 of the positive class of a binary task.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels: ints, strings, or 0/1 rows (multi-label).
    references: reference labels, in the same form as predictions.
    average (str or None, default "macro"): "macro" (unweighted mean over classes), "micro" (global TP/FP/FN counts),
        "weighted" (mean weighted by class support), "binary" (the pos_label class only), "samples" (multi-label:
        mean over examples), or None (one value per class, returned as lists).
    labels (list, optional): the classes to include, and their order when average=None.
    pos_label (int or str, default 1): the positive class for average="binary".
    sample_weight (list of float, optional): per-example weights.
    zero_division (float, default 0.0): the value of an undefined ratio (no predicted or no true positives),
        without scikit-learn's warning.
Returns:
    precision, recall, f1: floats in [0, 1] (lists of floats when average=None).
Example:
    load_metric("precision_recall_f1").compute(predictions=[0, 2, 1], references=[0, 1, 1], average="micro")
"""

_CITATION = SKLEARN_CITATION


def _to_python(value):
    return float(value) if getattr(value, "ndim", 0) == 0 else [float(v) for v in value]


_URLS = {
    "reference_urls": [
        "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html"
    ]
}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, LABELS, **_URLS)
class PrecisionRecallF1(evaluate.Metric):
    def _compute(
        self,
        predictions,
        references,
        average="macro",
        labels=None,
        pos_label=1,
        sample_weight=None,
        zero_division=0.0,
    ):
        precision, recall, f1, _ = precision_recall_fscore_support(
            references,
            predictions,
            average=average,
            labels=labels,
            pos_label=pos_label,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"precision": _to_python(precision), "recall": _to_python(recall), "f1": _to_python(f1)}
