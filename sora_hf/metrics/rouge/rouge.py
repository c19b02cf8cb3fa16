"""ROUGE via Google's rouge-score, with a tokenizer that keeps Chinese characters (the default one drops them)."""

import re

import evaluate
from rouge_score import rouge_scorer, tokenizers

from sora_hf.metrics.features import TEXTS, with_info

_DESCRIPTION = """\
ROUGE-N, ROUGE-L and ROUGE-Lsum F-measures computed by Google's rouge-score. rouge-score's default tokenizer lowercases
and keeps only [a-z0-9] runs, so Chinese text scores 0 (empty token lists). This module tokenises every CJK
character (CJK ideographs, their extensions and compatibility forms, kana) as a token of its own and hands the
text between them to rouge-score's default tokenizer, so English and mixed text are scored exactly as rouge-score
scores them, Chinese character n-grams are counted, and other scripts are still dropped. Pass `tokenizer` (a
callable str -> list of str) to use your own. rougeLsum splits summaries into sentences on newlines: put "\\n"
between sentences (e.g. after each 。). Scores are averaged over examples (the plain mean of the per-example
F-measures, not the bootstrap median that the Hub `rouge` module reports).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): system outputs.
    references (list of str, or list of list of str): one reference or several per prediction (the best-scoring
        reference counts).
    rouge_types (list of str, default ["rouge1", "rouge2", "rougeL", "rougeLsum"]): "rouge1".."rouge9", "rougeL",
        "rougeLsum".
    use_aggregator (bool, default True): return the mean F-measure per type; False returns the per-example list.
    use_stemmer (bool, default False): Porter-stem English words (longer than 3 characters).
    tokenizer (callable, optional): str -> list of str, replacing the CJK-aware tokenizer.
Returns:
    one float (or list of floats) per ROUGE type, in [0, 1].
Example:
    load_metric("rouge").compute(predictions=["今天天气很好"], references=["今天天气不错"])
"""

_CITATION = """\
@inproceedings{lin-2004-rouge,
  title={{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew},
  booktitle={Text Summarization Branches Out},
  year={2004},
  pages={74--81}
}
"""

# CJK ideographs (URO, extension A, compatibility ideographs, planes 2 and 3) and Japanese kana: one token each.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_PIECES = re.compile(f"[{_CJK}]|[^{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")


class CJKTokenizer(tokenizers.Tokenizer):
    """Each CJK character is a token; the text between CJK characters goes through rouge-score's DefaultTokenizer."""

    def __init__(self, use_stemmer=False):
        self._default = tokenizers.DefaultTokenizer(use_stemmer=use_stemmer)

    def tokenize(self, text):
        tokens = []
        for piece in _PIECES.findall(text):
            if _CJK_CHAR.fullmatch(piece):
                tokens.append(piece)
            else:
                tokens.extend(self._default.tokenize(piece))
        return tokens


class _CallableTokenizer(tokenizers.Tokenizer):
    def __init__(self, function):
        self._function = function

    def tokenize(self, text):
        return list(self._function(text))


_URLS = {
    "codebase_urls": ["https://github.com/google-research/google-research/tree/master/rouge"],
    "reference_urls": ["https://aclanthology.org/W04-1013/"],
}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, TEXTS, **_URLS)
class Rouge(evaluate.Metric):
    def _compute(
        self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False, tokenizer=None
    ):
        rouge_types = list(rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"])
        scorer = rouge_scorer.RougeScorer(
            rouge_types=rouge_types,
            tokenizer=_CallableTokenizer(tokenizer) if tokenizer is not None else CJKTokenizer(use_stemmer),
        )
        per_example = {rouge_type: [] for rouge_type in rouge_types}
        for prediction, reference in zip(predictions, references, strict=True):
            if isinstance(reference, str):
                scores = scorer.score(reference, prediction)
            else:
                scores = scorer.score_multi(list(reference), prediction)
            for rouge_type in rouge_types:
                per_example[rouge_type].append(float(scores[rouge_type].fmeasure))
        if not use_aggregator:
            return per_example
        return {rouge_type: sum(values) / len(values) if values else 0.0 for rouge_type, values in per_example.items()}
