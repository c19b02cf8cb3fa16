"""Corpus chrF / chrF++ via sacrebleu: character n-gram F-score, suited to Chinese without any word segmentation."""

import evaluate
from sacrebleu.metrics import CHRF

from sora_hf.metrics.features import TEXTS, reference_streams, with_info

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


_URLS = {
    "codebase_urls": ["https://github.com/mjpost/sacrebleu"],
    "reference_urls": ["https://aclanthology.org/W15-3049/"],
}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, TEXTS, **_URLS)
class Chrf(evaluate.Metric):
    def _compute(self, predictions, references, char_order=6, word_order=0, beta=2, **options):
        chrf = CHRF(char_order=char_order, word_order=word_order, beta=beta, **options)  # lowercase, whitespace, ...
        output = chrf.corpus_score(predictions, reference_streams(references))
        return {"score": float(output.score), "char_order": char_order, "word_order": word_order, "beta": beta}
