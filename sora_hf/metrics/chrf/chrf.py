"""Corpus chrF / chrF++ via sacrebleu: character n-gram F-score, suited to Chinese without any word segmentation."""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_DESCRIPTION = """\
Corpus-level chrF (character n-gram F-beta score, Popovic 2015) computed by sacrebleu's CHRF. It needs no
tokenisation, so it works on Chinese as is; whitespace is ignored by default. word_order=2 gives chrF++, whose
word n-grams are whitespace-separated words: meaningless on unsegmented Chinese, so keep word_order=0 there.
Each prediction has one reference string or a list of references; every prediction must have the same number of
references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): system outputs.
    references (list of str, or list of list of str): one or several references per prediction.
    char_order (int, default 6): character n-gram order.
    word_order (int, default 0): word n-gram order (2 for chrF++).
    beta (int, default 2): recall weight of the F-score.
    lowercase (bool, default False): case-insensitive.
    whitespace (bool, default False): include whitespace in character n-grams.
    eps_smoothing (bool, default False): the smoothing of the official chrF++.py instead of sacrebleu's default.
Returns:
    score (float, 0-100), char_order, word_order, beta.
Example:
    load_metric("chrf").compute(predictions=["今天天气很好"], references=["今天天气不错"])
"""

_CITATION = """\
@inproceedings{popovic-2015-chrf,
  title={chr{F}: character n-gram {F}-score for automatic {MT} evaluation},
  author={Popovi{\\'c}, Maja},
  booktitle={Proceedings of the Tenth Workshop on Statistical Machine Translation},
  year={2015},
  pages={392--395}
}
"""


def transpose_references(references):
    """Per-prediction references (str or list of str) -> sacrebleu's reference streams, one list per reference."""
    references = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
    num_references = len(references[0]) if references else 1
    if any(len(refs) != num_references for refs in references):
        raise ValueError("chrF needs the same number of references for every prediction")
    return [[refs[i] for refs in references] for i in range(num_references)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # One reference string per prediction, or a list of references per prediction.
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W15-3049/"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order=6,
        word_order=0,
        beta=2,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        chrf = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        output = chrf.corpus_score(predictions, transpose_references(references))
        return {"score": float(output.score), "char_order": char_order, "word_order": word_order, "beta": beta}
