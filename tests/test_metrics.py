"""Tests of sora_hf's own evaluate metric modules (sora_hf/metrics/<name>/<name>.py), loaded offline.

Expected numbers come from the underlying libraries called directly (scikit-learn, seqeval, sacrebleu, rouge-score)
or are worked out by hand in the comments. conftest.py sets HF_HUB_OFFLINE/HF_EVALUATE_OFFLINE and a temporary
HF_HOME, so every load here copies the module into an empty modules cache without network access.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import precision_recall_fscore_support

from sora_hf.metrics import METRICS, load_metric, metric_path

_LOADED: dict = {}


def metric(name: str):
    """One in-memory instance per metric for the whole module: loading imports sklearn/seqeval/nltk once."""
    if name not in _LOADED:
        _LOADED[name] = load_metric(name, keep_in_memory=True)
    return _LOADED[name]


def squad_inputs(pairs: list[tuple[str, list[str]]]) -> dict:
    return {
        "predictions": [{"id": str(i), "prediction_text": p} for i, (p, _) in enumerate(pairs)],
        "references": [
            {"id": str(i), "answers": {"text": answers, "answer_start": [0] * len(answers)}}
            for i, (_, answers) in enumerate(pairs)
        ],
    }


# --- registry ---------------------------------------------------------------------------------------------------


def test_every_metric_is_a_standard_module_folder():
    assert len(set(METRICS)) == len(METRICS) == 8
    for name in METRICS:
        path = metric_path(name)
        assert os.path.isfile(os.path.join(path, f"{name}.py")), path


def test_unknown_metric_name_raises_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"'bleu'.*accuracy.*squad"):
        metric_path("bleu")
    with pytest.raises(ValueError, match="Unknown sora_hf metric"):
        load_metric("f1_score")


# --- classification ---------------------------------------------------------------------------------------------


def test_accuracy():
    result = metric("accuracy").compute(predictions=[0, 1, 2, 1, 0], references=[0, 1, 1, 1, 2])
    assert result == {"accuracy": pytest.approx(3 / 5)}
    assert isinstance(result["accuracy"], float)
    # string labels, and multi-label 0/1 rows (subset accuracy: the second row has one wrong label)
    assert metric("accuracy").compute(predictions=["正面", "负面"], references=["正面", "正面"])["accuracy"] == 0.5
    assert metric("accuracy").compute(predictions=[[1, 0, 1], [0, 1, 1]], references=[[1, 0, 1], [0, 1, 0]]) == {
        "accuracy": 0.5
    }
    assert metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0], normalize=False) == {
        "accuracy": 2.0
    }


# refs/preds for a 3-class case worked out by hand:
#   class 0: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 1/2
#   class 1: TP 2, FP 1, FN 0 -> P 2/3, R 1,   F1 4/5
#   class 2: TP 1, FP 0, FN 1 -> P 1,   R 1/2, F1 2/3
#   micro: TP 4 of 6 -> P = R = F1 = 2/3
REFS = [0, 0, 1, 1, 2, 2]
PREDS = [0, 1, 1, 1, 2, 0]


def test_precision_recall_f1_hand_computed():
    macro = metric("precision_recall_f1").compute(predictions=PREDS, references=REFS)  # macro is the default
    assert macro == pytest.approx(
        {"precision": (1 / 2 + 2 / 3 + 1) / 3, "recall": (1 / 2 + 1 + 1 / 2) / 3, "f1": (1 / 2 + 4 / 5 + 2 / 3) / 3}
    )
    micro = metric("precision_recall_f1").compute(predictions=PREDS, references=REFS, average="micro")
    assert micro == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    per_class = metric("precision_recall_f1").compute(predictions=PREDS, references=REFS, average=None)
    assert per_class["f1"] == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    # binary: TP 2, FP 1, FN 1
    binary = metric("precision_recall_f1").compute(predictions=[1, 1, 0, 1], references=[1, 0, 1, 1], average="binary")
    assert binary == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert all(isinstance(v, float) for v in binary.values())


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_recall_f1_matches_sklearn(average):
    refs = [0, 1, 2, 3, 1, 2, 0, 3, 3, 1, 2, 2]
    preds = [0, 2, 2, 3, 1, 1, 0, 0, 3, 1, 2, 3]
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average=average, zero_division=0.0)
    result = metric("precision_recall_f1").compute(predictions=preds, references=refs, average=average)
    assert result == pytest.approx({"precision": p, "recall": r, "f1": f})


def test_precision_recall_f1_multilabel():
    refs = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    preds = [[1, 0, 0], [0, 1, 1], [1, 1, 0]]
    for average in ("micro", "macro", "samples"):
        p, r, f, _ = precision_recall_fscore_support(refs, preds, average=average, zero_division=0.0)
        result = metric("precision_recall_f1").compute(predictions=preds, references=refs, average=average)
        assert result == pytest.approx({"precision": p, "recall": r, "f1": f}), average
    # micro by hand: TP 4, FP 1, FN 1
    micro = metric("precision_recall_f1").compute(predictions=preds, references=refs, average="micro")
    assert micro["f1"] == pytest.approx(4 / 5)


# --- sequence labelling -----------------------------------------------------------------------------------------


def test_seqeval_missing_entity_halves_recall():
    references = [["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]]
    predictions = [["B-PER", "I-PER", "O", "O", "O", "O"]]
    result = metric("seqeval").compute(predictions=predictions, references=references)
    assert result["overall_recall"] == 0.5
    assert result["overall_precision"] == 1.0
    assert result["overall_f1"] == pytest.approx(2 / 3)
    assert result["overall_accuracy"] == pytest.approx(4 / 6)
    assert result["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 1}
    assert result["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}


def test_seqeval_strict_mode_drops_ill_formed_entities():
    # "I-PER" with no "B-PER" is an entity in lenient (conlleval) mode, not in strict IOB2.
    references = [["B-PER", "I-PER", "O"]]
    predictions = [["I-PER", "I-PER", "O"]]
    assert metric("seqeval").compute(predictions=predictions, references=references)["overall_f1"] == 1.0
    strict = metric("seqeval").compute(predictions=predictions, references=references, mode="strict", scheme="IOB2")
    assert strict["overall_f1"] == 0.0
    with pytest.raises(ValueError, match="BMES"):
        metric("seqeval").compute(predictions=predictions, references=references, scheme="BIO")


@pytest.mark.parametrize("mode", [None, "strict"])
def test_seqeval_bmes_word_segmentation(mode):
    # 我/爱/北京/天安门 predicted as 我/爱/北京/天安/门: 3 of 4 words right, 3 of 5 predicted words right.
    references = [["S", "S", "B", "E", "B", "M", "E"]]
    predictions = [["S", "S", "B", "E", "B", "E", "S"]]
    result = metric("seqeval").compute(predictions=predictions, references=references, scheme="BMES", mode=mode)
    assert result["overall_precision"] == pytest.approx(3 / 5)
    assert result["overall_recall"] == pytest.approx(3 / 4)
    assert result["overall_f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert result["_"]["number"] == 4  # untyped tags are reported under "_"
    # typed BMES NER tags keep their types; M-LOC is read as I-LOC
    ner = metric("seqeval").compute(
        predictions=[["B-LOC", "M-LOC", "E-LOC", "S-PER", "O"]],
        references=[["B-LOC", "M-LOC", "E-LOC", "S-PER", "O"]],
        scheme="BMES",
        mode=mode,
    )
    assert ner["overall_f1"] == 1.0 and ner["LOC"]["number"] == ner["PER"]["number"] == 1


def test_seqeval_add_batch():
    seqeval = load_metric("seqeval", keep_in_memory=True)
    seqeval.add_batch(predictions=[["B-PER", "O"]], references=[["B-PER", "O"]])
    seqeval.add_batch(predictions=[["O", "O"]], references=[["B-LOC", "O"]])
    assert seqeval.compute()["overall_recall"] == 0.5


# --- question answering -----------------------------------------------------------------------------------------


def test_squad_exact_chinese_match():
    # punctuation, spaces between characters and full-width forms are normalised away
    pairs = [("北京大学", ["北京 大学。"]), ("２０２４年", ["2024年"]), ("《红楼梦》", ["红楼梦"])]
    assert metric("squad").compute(**squad_inputs(pairs)) == {"exact_match": 100.0, "f1": 100.0}


def test_squad_partial_chinese_overlap_is_character_f1():
    # prediction 北京大学医学部 (7 characters) vs answer 北京大学 (4): 4 shared, P 4/7, R 1, F1 8/11.
    # SQuAD's whitespace tokenisation would see one token each and give F1 0.
    result = metric("squad").compute(**squad_inputs([("北京大学医学部", ["北京大学"])]))
    assert result["exact_match"] == 0.0
    assert 0.0 < result["f1"] < 100.0
    assert result["f1"] == pytest.approx(100 * 8 / 11)
    # the best of several answers counts: vs 北京大学医学院, 6 of 7 shared -> F1 6/7
    best = metric("squad").compute(**squad_inputs([("北京大学医学部", ["北京大学", "北京大学医学院"])]))
    assert best["f1"] == pytest.approx(100 * 6 / 7)


def test_squad_english_normalisation_as_in_squad_v1():
    # "The Eiffel Tower!" -> eiffel tower (articles, case, punctuation removed)
    assert metric("squad").compute(**squad_inputs([("The Eiffel Tower!", ["eiffel tower"])]))["exact_match"] == 100.0
    # big red dog vs red dog: P 2/3, R 1 -> F1 4/5; mixed script: 2024 年 vs 2024 年 3 月: P 1, R 1/2 -> 2/3
    result = metric("squad").compute(**squad_inputs([("the big red dog", ["a red dog"]), ("2024年", ["2024年3月"])]))
    assert result["exact_match"] == 0.0
    assert result["f1"] == pytest.approx(100 * (4 / 5 + 2 / 3) / 2)


def test_squad_missing_prediction_scores_zero():
    inputs = squad_inputs([("北京", ["北京"]), ("上海", ["上海"])])
    inputs["predictions"][1]["id"] = "other"
    with pytest.warns(UserWarning, match="no prediction"):
        assert metric("squad").compute(**inputs) == {"exact_match": 50.0, "f1": 50.0}


# --- generation -------------------------------------------------------------------------------------------------

ZH_REF = "今天天气很好，我们去公园散步吧。"
ZH_HYP = "今天天气不错，我们去公园走走吧。"


def test_sacrebleu_chinese():
    bleu = metric("sacrebleu")
    assert bleu.compute(predictions=[ZH_REF], references=[[ZH_REF]])["score"] == pytest.approx(100.0)
    different = bleu.compute(predictions=[ZH_HYP, "谢谢"], references=[[ZH_REF], ["谢谢你"]])
    assert 0.0 < different["score"] < 100.0
    direct = sacrebleu.corpus_bleu([ZH_HYP, "谢谢"], [[ZH_REF, "谢谢你"]], tokenize="zh")
    assert different["score"] == pytest.approx(direct.score)
    assert different["counts"] == direct.counts and different["sys_len"] == direct.sys_len
    # one reference string per prediction is accepted too
    assert bleu.compute(predictions=[ZH_HYP, "谢谢"], references=[ZH_REF, "谢谢你"]) == different
    # the default matters: with 13a an unspaced Chinese sentence is a single token
    assert bleu.compute(predictions=[ZH_HYP], references=[ZH_REF], tokenize="13a")["score"] == 0.0


def test_sacrebleu_multiple_references():
    preds = ["the cat sat on the mat", "猫坐在垫子上"]
    refs = [["the cat is on the mat", "a cat sat on the mat"], ["猫在垫子上", "一只猫坐在垫子上"]]
    direct = sacrebleu.corpus_bleu(preds, [[r[0] for r in refs], [r[1] for r in refs]], tokenize="zh")
    assert metric("sacrebleu").compute(predictions=preds, references=refs)["score"] == pytest.approx(direct.score)
    with pytest.raises(ValueError, match="same number of references"):
        metric("sacrebleu").compute(predictions=preds, references=[["x", "y"], ["z"]])


def test_chrf_matches_sacrebleu():
    result = metric("chrf").compute(predictions=[ZH_HYP], references=[ZH_REF])
    assert result["score"] == pytest.approx(sacrebleu.corpus_chrf([ZH_HYP], [[ZH_REF]]).score)
    assert 0.0 < result["score"] < 100.0
    assert metric("chrf").compute(predictions=[ZH_REF], references=[[ZH_REF]])["score"] == pytest.approx(100.0)


def test_rouge_chinese():
    # 今天天气很好 vs 今天天气不错: 4 of 6 characters shared; bigrams 今天 天天 天气 shared, 3 of 5
    result = metric("rouge").compute(predictions=["今天天气很好"], references=["今天天气不错"])
    assert result["rouge1"] == pytest.approx(4 / 6)
    assert result["rouge2"] == pytest.approx(3 / 5)
    assert result["rougeL"] == pytest.approx(4 / 6)
    # rouge-score's own tokenizer drops every Chinese character: 0
    plain = rouge_scorer.RougeScorer(["rouge1"]).score("今天天气不错", "今天天气很好")
    assert plain["rouge1"].fmeasure == 0.0


def test_rouge_english_matches_rouge_score():
    preds = ["the cats are running home", "a quick brown fox"]
    refs = ["the cat runs home", "the quick brown dog jumps"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    expected = [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]
    result = metric("rouge").compute(
        predictions=preds, references=refs, rouge_types=["rouge1", "rougeL"], use_stemmer=True, use_aggregator=False
    )
    assert result["rouge1"] == pytest.approx([e["rouge1"].fmeasure for e in expected])
    assert result["rougeL"] == pytest.approx([e["rougeL"].fmeasure for e in expected])


def test_cer():
    assert metric("cer").compute(predictions=["abed"], references=["abcd"]) == {"cer": 0.25}
    # corpus level: (1 + 2 + 3) edits / (4 + 4 + 6) reference characters; kitten -> sitting is 3 edits
    result = metric("cer").compute(predictions=["abed", "今天", "sitting"], references=["abcd", "今天天气", "kitten"])
    assert result["cer"] == pytest.approx(6 / 14)
    spaced = metric("cer").compute(predictions=["今天 天气"], references=["今天天气"], remove_whitespace=True)
    assert spaced == {"cer": 0.0}
    with pytest.raises(ValueError, match="empty"):
        metric("cer").compute(predictions=["a"], references=[""])


# --- offline loading --------------------------------------------------------------------------------------------


def test_load_offline_with_fresh_hf_home(tmp_path):
    """Every metric loads and computes in a new process with an empty HF_HOME, offline, and a Hub endpoint that
    refuses connections; the modules are copied into $HF_HOME/modules."""
    hf_home = tmp_path / "hf_home"
    env = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "OMP_NUM_THREADS": "1",
    }
    script = textwrap.dedent(
        """
        from sora_hf.metrics import METRICS, load_metric
        modules = {name: load_metric(name) for name in METRICS}
        print(modules["accuracy"].compute(predictions=[1, 0], references=[1, 1])["accuracy"])
        print(modules["cer"].compute(predictions=["今天"], references=["今天天气"])["cer"])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["0.5", "0.5"]
    cached = hf_home / "modules" / "evaluate_modules" / "metrics"
    for name in METRICS:
        assert list((cached / name).glob(f"*/{name}.py")), name
