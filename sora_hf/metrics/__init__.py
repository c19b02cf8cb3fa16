"""sora_hf's own `evaluate` metric modules, loadable offline.

`evaluate.load("accuracy")` fetches the module script from the Hugging Face Hub and fails offline (evaluate #315).
Each metric here is a standard evaluate module folder `sora_hf/metrics/<name>/<name>.py`; `evaluate.load(<folder>)`
copies it into the HF modules cache (`$HF_HOME/modules/evaluate_modules/metrics/<name>/<hash>/`) and imports it
from there, with no network access at all, so `load_metric` works under `HF_HUB_OFFLINE=1` with an empty `HF_HOME`.

    >>> from sora_hf.metrics import load_metric
    >>> load_metric("squad").compute(predictions=[...], references=[...])

Metrics (output keys):

- `accuracy`: `accuracy` (scikit-learn; int or string labels, or 0/1 multi-label rows = subset accuracy).
- `precision_recall_f1`: `precision`, `recall`, `f1` (scikit-learn; `average="macro"` by default, also "micro",
  "weighted", "binary", "samples" or None for per-class lists; int or string labels, or 0/1 multi-label rows).
- `seqeval`: `overall_precision`, `overall_recall`, `overall_f1`, `overall_accuracy` and one
  `{"precision", "recall", "f1", "number"}` dict per entity type (seqeval; `scheme="BMES"` for word segmentation).
- `squad`: `exact_match`, `f1` in 0-100 (SQuAD v1.1, with CJK text tokenised into characters).
- `sacrebleu`: `score`, `counts`, `totals`, `precisions`, `bp`, `sys_len`, `ref_len` (BLEU; `tokenize="zh"`).
- `chrf`: `score`, `char_order`, `word_order`, `beta` (sacrebleu chrF / chrF++).
- `rouge`: `rouge1`, `rouge2`, `rougeL`, `rougeLsum` (rouge-score with a tokenizer that keeps CJK characters).
- `cer`: `cer` (character error rate: total Levenshtein distance / total reference characters).
"""

from __future__ import annotations

import os

METRICS = ("accuracy", "precision_recall_f1", "seqeval", "squad", "sacrebleu", "chrf", "rouge", "cer")

_METRICS_DIR = os.path.dirname(os.path.abspath(__file__))


def metric_path(name: str) -> str:
    """The folder of sora_hf's evaluate module `name`, for `evaluate.load(metric_path(name))`."""
    if name not in METRICS:
        raise ValueError(f"Unknown sora_hf metric {name!r}; known metrics: {', '.join(METRICS)}")
    return os.path.join(_METRICS_DIR, name)


def load_metric(name: str, **kwargs):
    """`evaluate.load` of sora_hf's local metric module `name`; kwargs go to `evaluate.load` (config_name,
    keep_in_memory, cache_dir, experiment_id, num_process, process_id, ...). Never touches the network."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["METRICS", "metric_path", "load_metric"]
