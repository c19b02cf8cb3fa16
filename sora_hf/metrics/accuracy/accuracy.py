"""Accuracy: the fraction of predictions equal to their reference, via scikit-learn."""

import evaluate
from sklearn.metrics import accuracy_score

from sora_hf.metrics.features import LABELS, SKLEARN_CITATION, with_info

_DESCRIPTION = """\
Accuracy = (number of correct predictions) / (number of predictions), computed by
sklearn.metrics.accuracy_score. Labels are ints or strings; for multi-label input (one 0/1 row per example) it is
the subset accuracy: a row counts as correct only if every label in it is right.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels: ints, strings, or 0/1 rows (multi-label).
    references: reference labels, in the same form as predictions.
    normalize (bool, default True): False returns the number of correct predictions instead of the fraction.
    sample_weight (list of float, optional): per-example weights.
Returns:
    accuracy (float): in [0, 1] (or a count if normalize=False).
Example:
    load_metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])  # {"accuracy": 0.666...}
"""

_CITATION = SKLEARN_CITATION


_URLS = {"reference_urls": ["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"]}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, LABELS, **_URLS)
class Accuracy(evaluate.Metric):
    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        return {
            "accuracy": float(
                accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
            )
        }
