"""Entity-level precision, recall and F1 for sequence labelling (NER, word segmentation), via seqeval."""

import importlib

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report

from sora_hf.metrics.features import STRING, pairs, with_info

_DESCRIPTION = """\
Entity-level precision, recall and F1 of tagged sequences, overall (micro average) and per entity type, computed
by seqeval's classification_report, plus token-level accuracy. An entity counts as correct only if its type and
its whole span match.

Tagging schemes: the default (mode=None) is conlleval's lenient chunking, which reads IOB1, IOB2 and IOBES tags.
mode="strict" parses the tags with `scheme` ("IOB1", "IOB2" (default), "IOE1", "IOE2", "IOBES", "BILOU") and drops
entities that are ill-formed in that scheme. scheme="BMES" (Chinese word segmentation / NER in B-M-E-S tags) maps
the tags to IOBES first (B->B, M->I, E->E, S->S, O->O, types kept: "M-PER" -> "I-PER") and then uses IOBES in
either mode. Untyped tags ("B", "M", "E", "S" for word segmentation, where each word is an entity) are reported
under the entity type "_".
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted tag sequences, e.g. [["B-PER", "I-PER", "O"]].
    references: list of reference tag sequences, each as long as its prediction.
    scheme (str, optional): "IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU" (used with mode="strict"), or "BMES"
        (converted to IOBES; used in both modes).
    mode (str, optional): None (lenient, conlleval) or "strict".
    suffix (bool, default False): tags are written "PER-B" rather than "B-PER".
    sample_weight (list of float, optional): per-sequence weights.
    zero_division (float or "warn", default 0): the value of an undefined ratio.
Returns:
    overall_precision, overall_recall, overall_f1 (floats, micro average over entities),
    overall_accuracy (float, token-level),
    and for each entity type a dict {"precision", "recall", "f1" (floats), "number" (int, reference entities)}.
Example:
    load_metric("seqeval").compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])
"""

_CITATION = """\
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018}
}
"""

_SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU", "BMES")


def _bmes_to_iobes(tag, suffix):
    """B-M-E-S position letter M becomes I; everything else (B, E, S, O, the type) is kept."""
    if suffix:
        return tag[:-1] + "I" if tag == "M" or tag.endswith("-M") else tag
    return "I" + tag[1:] if tag == "M" or tag.startswith("M-") else tag


_URLS = {
    "codebase_urls": ["https://github.com/chakki-works/seqeval"],
    "reference_urls": ["https://www.clips.uantwerpen.be/conll2000/chunking/conlleval.txt"],
}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, pairs(datasets.Sequence(STRING)), **_URLS)
class Seqeval(evaluate.Metric):
    def _compute(
        self, predictions, references, scheme=None, mode=None, suffix=False, sample_weight=None, zero_division=0
    ):
        if scheme is not None and scheme not in _SCHEMES:
            raise ValueError(f"Unknown tagging scheme {scheme!r}; known schemes: {', '.join(_SCHEMES)}")
        if mode not in (None, "strict"):
            raise ValueError(f"mode must be None or 'strict', not {mode!r}")
        if scheme == "BMES":
            predictions = [[_bmes_to_iobes(tag, suffix) for tag in seq] for seq in predictions]
            references = [[_bmes_to_iobes(tag, suffix) for tag in seq] for seq in references]
            scheme = "IOBES"
        scheme_class = getattr(importlib.import_module("seqeval.scheme"), scheme) if scheme is not None else None
        report = classification_report(
            y_true=references,
            y_pred=predictions,
            suffix=suffix,
            output_dict=True,
            mode=mode,
            scheme=scheme_class,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        overall = report.pop("micro avg")
        report.pop("macro avg", None)
        report.pop("weighted avg", None)
        scores = {
            entity_type: {
                "precision": float(values["precision"]),
                "recall": float(values["recall"]),
                "f1": float(values["f1-score"]),
                "number": int(values["support"]),
            }
            for entity_type, values in report.items()
        }
        scores["overall_precision"] = float(overall["precision"])
        scores["overall_recall"] = float(overall["recall"])
        scores["overall_f1"] = float(overall["f1-score"])
        scores["overall_accuracy"] = float(accuracy_score(y_true=references, y_pred=predictions))
        return scores
