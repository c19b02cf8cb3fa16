"""Corpus BLEU via sacrebleu, with sacrebleu's Chinese tokenizer ("zh") by default."""

import evaluate
import sacrebleu

from sora_hf.metrics.features import TEXTS, reference_streams, with_info

_DESCRIPTION = """\
Corpus-level BLEU computed by sacrebleu.corpus_bleu. The default tokenizer is sacrebleu's "zh": it splits Chinese
characters apart and tokenises the rest like "13a", so it is right for Chinese, English and mixed text (on text
without Chinese characters it equals "13a", the WMT default). Other tokenizers: "13a", "intl", "char", "none",
"ja-mecab", "ko-mecab" (extra packages), "spm", "flores101", "flores200", "spBLEU-1K" (these download a
SentencePiece model: not offline). Each prediction has one reference string or a list of references; every
prediction must have the same number of references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): system outputs.
    references (list of str, or list of list of str): one or several references per prediction.
    tokenize (str, default "zh"): sacrebleu tokenizer.
    lowercase (bool, default False): case-insensitive BLEU.
    smooth_method (str, default "exp"): "none", "floor", "add-k" or "exp".
    smooth_value (float, optional): the value for "floor" and "add-k" smoothing.
    force (bool, default False): allow already tokenised input.
    use_effective_order (bool, default False): ignore n-gram orders with no n-grams (sentence-level BLEU).
Returns:
    score (float, 0-100), counts, totals (n-gram matches and totals for n = 1..4), precisions (list of float),
    bp (brevity penalty), sys_len, ref_len.
Example:
    load_metric("sacrebleu").compute(predictions=["今天天气很好"], references=[["今天天气很好"]])  # score 100.0
"""

_CITATION = """\
@inproceedings{post-2018-call,
  title={A Call for Clarity in Reporting {BLEU} Scores},
  author={Post, Matt},
  booktitle={Proceedings of the Third Conference on Machine Translation: Research Papers},
  year={2018},
  pages={186--191}
}
"""


_URLS = {
    "codebase_urls": ["https://github.com/mjpost/sacrebleu"],
    "reference_urls": ["https://aclanthology.org/W18-6319/"],
}


@with_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, TEXTS, **_URLS)
class Sacrebleu(evaluate.Metric):
    def _compute(
        self,
        predictions,
        references,
        tokenize="zh",
        lowercase=False,
        smooth_method="exp",
        smooth_value=None,
        force=False,
        use_effective_order=False,
    ):
        output = sacrebleu.corpus_bleu(
            predictions,
            reference_streams(references),
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            force=force,
            lowercase=lowercase,
            tokenize=tokenize,
            use_effective_order=use_effective_order,
        )
        return {
            "score": float(output.score),
            "counts": list(output.counts),
            "totals": list(output.totals),
            "precisions": [float(p) for p in output.precisions],
            "bp": float(output.bp),
            "sys_len": int(output.sys_len),
            "ref_len": int(output.ref_len),
        }
