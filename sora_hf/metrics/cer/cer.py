"""Character error rate: Levenshtein distance over characters, summed over the corpus."""

import evaluate

from sora_hf.metrics.features import STRING, pairs, with_info

_DESCRIPTION = """\
Character error rate = (substitutions + deletions + insertions) / (number of reference characters), with the edit
counts of the Levenshtein alignment of each prediction to its reference, summed over the corpus before dividing
(as jiwer's cer does). The usual error rate for Chinese ASR/OCR, where words are not delimited. It can exceed 1
when predictions are longer than references. Computed by a small dynamic program (no edit-distance library is a
sora_hf dependency): O(len(prediction) * len(reference)) per pair.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): hypotheses.
    references (list of str): reference transcripts (at least one non-empty).
    remove_whitespace (bool, default False): delete all whitespace before comparing (spaces carry no meaning in
        Chinese text).
Returns:
    cer (float): total edit distance / total reference length.
Example:
    load_metric("cer").compute(predictions=["abed"], references=["abcd"])  # {"cer": 0.25}
"""

_CITATION = """\
@article{levenshtein1966binary,
  title={Binary codes capable of correcting deletions, insertions, and reversals},
  author={Levenshtein, Vladimir I.},
  journal={Soviet Physics Doklady},
  volume={10},
  number={8},
  pages={707--710},
  year={1966}
}
"""


def levenshtein(source, target):
    """Edit distance between two sequences (unit-cost substitution, insertion, deletion), in O(len(target)) memory."""
    if len(source) < len(target):
        source, target = target, source
    previous = list(range(len(target) + 1))
    for i, source_item in enumerate(source, 1):
        current = [i]
        for j, target_item in enumerate(target, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (source_item != target_item)))
        previous = current
    return previous[-1]


_URLS = {"reference_urls": ["https://en.wikipedia.org/wiki/Levenshtein_distance"]}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, pairs(STRING), **_URLS)
class Cer(evaluate.Metric):
    def _compute(self, predictions, references, remove_whitespace=False):
        if remove_whitespace:
            predictions = ["".join(text.split()) for text in predictions]
            references = ["".join(text.split()) for text in references]
        total_length = sum(len(reference) for reference in references)
        if total_length == 0:
            raise ValueError("CER is undefined when every reference is empty")
        errors = sum(
            levenshtein(prediction, reference) for prediction, reference in zip(predictions, references, strict=True)
        )
        return {"cer": errors / total_length}
