"""SQuAD v1.1 exact match and F1, with CJK text tokenised into characters so that F1 works on Chinese."""

import re
import string
import unicodedata
import warnings
from collections import Counter

import datasets
import evaluate

from sora_hf.metrics.features import with_info

_DESCRIPTION = """\
Exact match and token F1 of extractive question answering, as in the official SQuAD v1.1 evaluation script, adapted
for Chinese. SQuAD splits answers on whitespace, which makes F1 all-or-nothing on unspaced Chinese text; here every
CJK character (CJK ideographs, their extensions and compatibility forms, kana) is a token of its own, while other
text is split on whitespace as in SQuAD (so "北京大学2024年" gives 北 京 大 学 2024 年). The SQuAD normalisation is kept
and extended: NFKC (full-width letters, digits and punctuation become ASCII), lowercase, remove punctuation (ASCII
string.punctuation and every Unicode punctuation character, e.g. 。，、《》“”), remove the English articles a, an,
the. Exact match compares the token sequences, so spaces between Chinese characters do not matter. Each prediction
is scored against its best-matching reference answer; a reference id without a prediction scores 0 (with a
warning), as in the SQuAD script. Scores are percentages. On English text the result equals SQuAD v1.1's, except
that Unicode punctuation beyond ASCII is removed too.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"id": str, "prediction_text": str}.
    references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}.
Returns:
    exact_match (float): percentage of predictions that match a reference answer after normalisation, 0-100.
    f1 (float): mean over questions of the best token-level F1 against the reference answers, 0-100.
Example:
    load_metric("squad").compute(
        predictions=[{"id": "q1", "prediction_text": "北京大学"}],
        references=[{"id": "q1", "answers": {"text": ["北京大学"], "answer_start": [3]}}],
    )  # {"exact_match": 100.0, "f1": 100.0}
"""

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
  title={{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={Proceedings of EMNLP},
  year={2016}
}
"""

# CJK ideographs (URO, extension A, compatibility ideographs, planes 2 and 3) and Japanese kana: one token each.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _is_punctuation(char):
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize_answer(text):
    """NFKC, lowercase, remove punctuation, remove English articles; whitespace is handled by `answer_tokens`."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(char for char in text if not _is_punctuation(char))
    return _ARTICLES.sub(" ", text)


def answer_tokens(text):
    """The normalised answer as tokens: one per CJK character, whitespace-separated words otherwise."""
    return _TOKEN.findall(normalize_answer(text))


def exact_match_score(prediction, ground_truth):
    return float(answer_tokens(prediction) == answer_tokens(ground_truth))


def f1_score(prediction, ground_truth):
    prediction_tokens = answer_tokens(prediction)
    ground_truth_tokens = answer_tokens(ground_truth)
    if not prediction_tokens or not ground_truth_tokens:
        # Only possible for answers made of punctuation/articles: the empty answer matches only the empty answer.
        return float(prediction_tokens == ground_truth_tokens)
    num_same = sum((Counter(prediction_tokens) & Counter(ground_truth_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


_FEATURES = datasets.Features(
    {
        "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
        "references": {
            "id": datasets.Value("string"),
            "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
        },
    }
)
_URLS = {
    "codebase_urls": ["https://rajpurkar.github.io/SQuAD-explorer/"],
    "reference_urls": ["https://rajpurkar.github.io/SQuAD-explorer/"],
}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, _FEATURES, **_URLS)
class Squad(evaluate.Metric):
    def _compute(self, predictions, references):
        prediction_by_id = {p["id"]: p["prediction_text"] for p in predictions}
        exact_match = f1 = 0.0
        missing = 0
        for reference in references:
            if reference["id"] not in prediction_by_id:
                missing += 1
                continue
            prediction = prediction_by_id[reference["id"]]
            answers = reference["answers"]["text"]
            exact_match += max((exact_match_score(prediction, answer) for answer in answers), default=0.0)
            f1 += max((f1_score(prediction, answer) for answer in answers), default=0.0)
        if missing:
            warnings.warn(f"{missing} reference ids have no prediction; they score 0", stacklevel=2)
        total = max(len(references), 1)
        return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
