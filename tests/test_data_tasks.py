"""Fine-tuning data: the embedded real tasks (measured sizes, exact QA spans, unambiguous pinyin) and the user's files
(one schema per task type, every bad input refused with its file and row)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest

from sora_hf.data import load_pinyin_table, load_review_sentiment
from sora_hf.data.tasks import (
    EMBEDDED_TASKS,
    QA_QUESTIONS,
    TaskInfo,
    load_embedded_task,
    load_task_files,
    validate_tags,
)

# ---------------------------------------------------------------------------------------------------------------------
# Embedded tasks
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded() -> dict[str, tuple[datasets.DatasetDict, TaskInfo]]:
    return {name: load_embedded_task(name, seed=42) for name in EMBEDDED_TASKS}


def test_embedded_sizes_and_infos(embedded):
    sizes = {name: {split: len(ds[split]) for split in ds} for name, (ds, _) in embedded.items()}
    assert sizes == {
        "sentiment": {"train": 15625, "test": 1738},
        "ner": {"train": 17094, "test": 1900},
        "pos": {"train": 17094, "test": 1900},
        "seg": {"train": 17094, "test": 1900},
        "qa": {"train": 18397, "test": 2004},
        "pinyin": {"train": 20000, "test": 2000},
    }
    kinds = {name: (info.task_type, info.problem_type, info.tag_scheme) for name, (_, info) in embedded.items()}
    assert kinds == {
        "sentiment": ("classification", "single_label_classification", None),
        "ner": ("token_classification", None, "BIO"),
        "pos": ("token_classification", None, "BIO"),
        "seg": ("token_classification", None, "BMES"),
        "qa": ("question_answering", None, None),
        "pinyin": ("seq2seq", None, None),
    }
    assert all(info.name == name and info.description for name, (_, info) in embedded.items())
    with pytest.raises(ValueError, match="unknown embedded task 'nope'"):
        load_embedded_task("nope")


def test_sentiment_matches_review_loader(embedded):
    ds, info = embedded["sentiment"]
    reference = load_review_sentiment(seed=42)
    assert list(ds["test"]["text"]) == list(reference["test"]["text"])
    assert list(ds["test"]["label"]) == list(reference["test"]["label"])
    assert Counter(list(ds["test"]["label"])) == {0: 904, 1: 834}
    assert info.label_names == ds["train"].features["label"].names == ["negative", "positive"]
    assert info.num_labels == 2


@pytest.mark.parametrize("name", ["ner", "pos", "seg"])
def test_token_task_label_names_match_classlabel(embedded, name):
    ds, info = embedded[name]
    names = ds["train"].features["tags"].feature.names
    assert info.label_names == names
    assert len(names) == {"ner": 7, "pos": 88, "seg": 4}[name]
    # Every gold sequence is valid in the scheme the TaskInfo declares.
    for row in ds["test"].select(range(300)):
        assert validate_tags([names[t] for t in row["tags"]], info.tag_scheme) is None


def test_qa_answers_are_exact_spans(embedded):
    ds, _ = embedded["qa"]
    expected_question = {f"-{label}": q for label, q in QA_QUESTIONS.items()}
    for split in ("train", "test"):
        ids = ds[split]["id"]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(r"pd-\d+-(PER|LOC|ORG)", i) for i in ids)
        for row in ds[split]:
            answers = row["answers"]
            assert len(answers["text"]) == len(answers["answer_start"]) == 1
            text, start = answers["text"][0], answers["answer_start"][0]
            assert text and row["context"][start : start + len(text)] == text
            assert row["question"] == expected_question[row["id"][-4:]]
    counts = Counter(i.rsplit("-", 1)[1] for i in list(ds["train"]["id"]))
    assert counts == {"LOC": 8949, "PER": 7364, "ORG": 2084}


def test_qa_split_is_the_ner_split(embedded):
    qa, _ = embedded["qa"]
    ner, _ = embedded["ner"]
    train, test = set(list(qa["train"]["context"])), set(list(qa["test"]["context"]))
    assert not train & test
    ner_test = {"".join(tokens) for tokens in list(ner["test"]["tokens"])}
    assert test <= ner_test
    # The answer is the first entity of its type: the NER tags of a test context start a span of that type there.
    names = ner["test"].features["tags"].feature.names
    tags_of = {"".join(r["tokens"]): [names[t] for t in r["tags"]] for r in ner["test"]}
    for row in qa["test"].select(range(200)):
        label = row["id"].rsplit("-", 1)[1]
        tags = tags_of[row["context"]]
        start = row["answers"]["answer_start"][0]
        assert tags.index(f"B-{label}") == start


def test_pinyin_targets_are_unambiguous(embedded):
    ds, _ = embedded["pinyin"]
    table = load_pinyin_table()
    sources = list(ds["train"]["source"]) + list(ds["test"]["source"])
    assert len(set(sources)) == len(sources)
    assert not set(list(ds["train"]["source"])) & set(list(ds["test"]["source"]))
    for split in ("train", "test"):
        for source, target in zip(ds[split]["source"], ds[split]["target"], strict=True):
            syllables = target.split(" ")
            assert 2 <= len(source) <= 4 and len(syllables) == len(source)
            for char, syllable in zip(source, syllables, strict=True):
                assert table[char] == [syllable]


# ---------------------------------------------------------------------------------------------------------------------
# The user's files: the right schema per task type
# ---------------------------------------------------------------------------------------------------------------------


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path, rows: list[dict]):
    return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def test_csv_single_label_with_test_file(tmp_path):
    train = _write(tmp_path / "train.csv", "sentence,y\n很好,pos\n太差,neg\n一般,neutral\n不错,pos\n")
    test = _write(tmp_path / "test.csv", "sentence,y\n好,pos\n差,neg\n")
    ds, info = load_task_files("classification", train, test, text_column="sentence", label_column="y")
    assert list(ds) == ["train", "test"]
    assert ds["train"].features == datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "neutral", "pos"])}
    )
    assert list(ds["train"]["label"]) == [2, 0, 1, 2] and list(ds["test"]["label"]) == [2, 0]
    assert info.label_names == ["neg", "neutral", "pos"]
    assert info.problem_type == "single_label_classification" and info.name == "train"


def test_integer_labels_sort_numerically_and_pairs(tmp_path):
    rows = [{"a": f"句子{i}", "b": f"另一句{i}", "label": lab} for i, lab in enumerate([10, 2, 2, 10, 1, 2])]
    train = _jsonl(tmp_path / "nli.jsonl", rows)
    ds, info = load_task_files("classification", train, text_column="a", text_pair_column="b", seed=0, test_size=0.34)
    assert info.label_names == ["1", "2", "10"]
    assert set(ds["train"].column_names) == {"text", "text_pair", "label"}
    assert len(ds["train"]) == 3 and len(ds["test"]) == 3
    # Seeded: the same split twice.
    again, _ = load_task_files("classification", train, text_column="a", text_pair_column="b", seed=0, test_size=0.34)
    assert list(again["test"]["text"]) == list(ds["test"]["text"])


def test_jsonl_multi_label_and_csv_separators(tmp_path):
    train = _jsonl(
        tmp_path / "ml.jsonl",
        [
            {"text": "体育新闻", "label": ["sports"]},
            {"text": "财经体育", "label": ["finance", "sports"]},
            {"text": "什么都不是", "label": []},
        ],
    )
    test = _write(tmp_path / "ml.csv", 'text,label\n球赛,sports\n股市,finance|sports\n两者,"sports,finance"\n')
    ds, info = load_task_files("classification", train, test, multi_label=True)
    assert ds["train"].features["label"] == datasets.Sequence(datasets.ClassLabel(names=["finance", "sports"]))
    assert list(ds["train"]["label"]) == [[1], [0, 1], []]
    assert list(ds["test"]["label"]) == [[1], [0, 1], [1, 0]]
    assert info.problem_type == "multi_label_classification" and info.label_names == ["finance", "sports"]


def test_tsv_regression_and_similarity(tmp_path):
    train = _write(tmp_path / "reg.tsv", "text\tscore\n一\t1.5\n二\t-2\n三\t3e-1\n")
    ds, info = load_task_files("classification", train, train, label_column="score", regression=True)
    assert ds["train"].features["label"] == datasets.Value("float32")
    assert list(ds["train"]["label"]) == pytest.approx([1.5, -2.0, 0.3])
    assert info.problem_type == "regression" and info.label_names is None and info.num_labels == 1

    sim = _write(tmp_path / "sim.csv", "text,text_pair,label\n你好,您好,1\n你好,再见,0\n早上,早晨,1\n")
    ds, info = load_task_files("similarity", sim, sim)
    assert ds["test"].features == datasets.Features(
        {"text": datasets.Value("string"), "text_pair": datasets.Value("string"), "label": datasets.Value("float32")}
    )
    assert list(ds["test"]["label"]) == [1.0, 0.0, 1.0] and info.task_type == "similarity"


def test_conll_bio_and_validation_file(tmp_path):
    train = _write(
        tmp_path / "train.conll",
        "-DOCSTART- -X- O O\n\n张 NN B-PER\n三 NN I-PER\n去 VV O\n\n北 B-LOC\n京 I-LOC\n\n\n好 O\n",
    )
    dev = _write(tmp_path / "dev.txt", "李 B-PER\n四 I-PER\n")
    ds, info = load_task_files("token_classification", train, train, dev)
    assert list(ds) == ["train", "validation", "test"]
    assert info.label_names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"] and info.tag_scheme == "BIO"
    assert ds["train"].features["tags"] == datasets.Sequence(datasets.ClassLabel(names=info.label_names))
    assert list(ds["train"]["tokens"]) == [["张", "三", "去"], ["北", "京"], ["好"]]
    assert list(ds["train"]["tags"]) == [[3, 4, 0], [1, 2], [0]]
    assert list(ds["validation"]["tags"]) == [[3, 4]]


def test_conll_bmes_plain_and_prefixed_and_jsonl(tmp_path):
    seg = _write(tmp_path / "seg.conll", "中 B\n华 M\n人 E\n民 S\n\n好 S\n")
    ds, info = load_task_files("token_classification", seg, seg, tag_scheme="BMES")
    assert info.label_names == ["B", "M", "E", "S"] and info.tag_scheme == "BMES"
    assert list(ds["train"]["tags"]) == [[0, 1, 2, 3], [3]]

    ner = _jsonl(
        tmp_path / "ner.jsonl",
        [
            {"chars": "北京大学", "labels": ["B-ORG", "M-ORG", "M-ORG", "E-ORG"]},
            {"chars": ["在", "京"], "labels": ["O", "S-LOC"]},
        ],
    )
    ds, info = load_task_files(
        "token_classification", ner, ner, tokens_column="chars", tags_column="labels", tag_scheme="BMES"
    )
    assert info.label_names == ["O", "S-LOC", "B-ORG", "M-ORG", "E-ORG"]
    assert list(ds["train"]["tokens"]) == [["北", "京", "大", "学"], ["在", "京"]]


def test_a_bmes_file_read_as_bio_says_which_tag_scheme_to_set(tmp_path):
    seg = _write(tmp_path / "seg.conll", "中 B\n华 M\n人 E\n民 S\n\n好 S\n")
    with pytest.raises(
        ValueError, match=r"seg.conll.*is not BIO.*every sentence is valid BMES: set data.tag_scheme: BMES"
    ):
        load_task_files("token_classification", seg, seg)  # the default scheme is BIO
    broken = _write(tmp_path / "broken.conll", "中 B-X\n华 Q\n")
    with pytest.raises(ValueError, match=r"set data.tag_scheme to the file's scheme \(BIO or BMES\), or to null"):
        load_task_files("token_classification", broken, broken)


def test_squad_json_and_flat_jsonl(tmp_path):
    squad = {
        "version": "v2.0",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "鲁迅出生于绍兴。绍兴在浙江。",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "鲁迅出生在哪里？",
                                "answers": [{"text": "绍兴", "answer_start": 5}],
                            },
                            {"id": "q2", "question": "绍兴在哪个省？", "answers": [{"text": "浙江"}]},
                            {"id": "q3", "question": "无法回答？", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ],
    }
    path = _write(tmp_path / "squad.json", json.dumps(squad, ensure_ascii=False))
    flat = _jsonl(
        tmp_path / "flat.jsonl",
        [
            {
                "id": "f1",
                "question": "谁？",
                "context": "我是张三。",
                "answers": {"text": ["张三"], "answer_start": [2]},
            }
        ],
    )
    ds, info = load_task_files("question_answering", path, flat)
    assert ds["train"].features == datasets.Features(
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "context": datasets.Value("string"),
            "answers": {
                "text": datasets.Sequence(datasets.Value("string")),
                "answer_start": datasets.Sequence(datasets.Value("int32")),
            },
        }
    )
    assert list(ds["train"]["answers"]) == [
        {"text": ["绍兴"], "answer_start": [5]},
        {"text": ["浙江"], "answer_start": [11]},  # filled in from the first occurrence
        {"text": [], "answer_start": []},
    ]
    assert list(ds["test"]["id"]) == ["f1"] and info.task_type == "question_answering"


def test_qa_split_without_test_file_keeps_contexts_apart(tmp_path):
    rows = [
        {"id": f"{c}-{q}", "question": f"问题{q}", "context": f"上下文{c}甲乙", "answers": {"text": ["甲"]}}
        for c in range(10)
        for q in range(3)
    ]
    ds, _ = load_task_files("question_answering", _jsonl(tmp_path / "qa.jsonl", rows), test_size=0.2)
    assert not set(list(ds["train"]["context"])) & set(list(ds["test"]["context"]))
    assert len(ds["test"]) == 6 and ds["test"][0]["answers"]["answer_start"] == [4]


def test_seq2seq_csv(tmp_path):
    train = _write(tmp_path / "s2s.csv", "zh,en\n你好,hello\n谢谢,thanks\n再见,bye\n")
    ds, info = load_task_files("seq2seq", train, train, source_column="zh", target_column="en")
    assert ds["train"].features == datasets.Features(
        {"source": datasets.Value("string"), "target": datasets.Value("string")}
    )
    assert list(ds["test"]["target"]) == ["hello", "thanks", "bye"] and info.label_names is None


def test_validate_tags():
    assert validate_tags(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"], "BIO") is None
    assert validate_tags(["B", "I", "O"], "BIO") is None
    assert "I-PER" in validate_tags(["O", "I-PER"], "BIO")
    assert "I-PER" in validate_tags(["I-PER"], "BIO")
    assert "I-LOC" in validate_tags(["B-PER", "I-LOC"], "BIO")
    assert "E-PER" in validate_tags(["E-PER"], "BIO")
    assert validate_tags(["B", "M", "M", "E", "S", "O", "B-X", "E-X", "S-Y"], "BMES") is None
    assert validate_tags(["B", "S"], "BMES") is not None
    assert validate_tags(["B-X", "E-Y"], "BMES") is not None
    assert "ends inside a word" in validate_tags(["B", "M"], "BMES")
    assert validate_tags(["I-X"], None) is None


# ---------------------------------------------------------------------------------------------------------------------
# Bad inputs: refused before training, naming the file and the row/line
# ---------------------------------------------------------------------------------------------------------------------

BAD_CASES = {
    # name: (task_type, {file: content}, kwargs, exception, fragments of the message besides the file name)
    "missing column csv": ("classification", {"a.csv": "text,y\n好,1\n"}, {}, ValueError, ["'label'", "'text', 'y'"]),
    "missing column jsonl": (
        "classification",
        {"a.jsonl": '{"text": "好", "label": "p"}\n{"text": "坏", "lab": "n"}\n'},
        {},
        ValueError,
        ["row 2", "'label'", "'lab'"],
    ),
    "empty split": ("classification", {"a.csv": "text,label\n"}, {}, ValueError, ["no rows"]),
    "empty jsonl": ("seq2seq", {"a.jsonl": "\n\n"}, {}, ValueError, ["no rows"]),
    "empty text": ("classification", {"a.csv": "text,label\n好,p\n  ,n\n"}, {}, ValueError, ["row 2", "empty text"]),
    "empty target": (
        "seq2seq",
        {"a.jsonl": '{"source": "a", "target": "b"}\n\n{"source": "c", "target": ""}\n'},
        {},
        ValueError,
        ["row 2 (line 3)", "'target'"],
    ),
    "mixed label types": (
        "classification",
        {"a.jsonl": '{"text": "好", "label": "pos"}\n{"text": "坏", "label": 0}\n'},
        {},
        ValueError,
        ["row 2", "mixed types"],
    ),
    "mixed csv labels": (
        "classification",
        {"a.csv": "text,label\n好,1\n坏,0\n中,label\n"},
        {},
        ValueError,
        ["row 3", "mixed types"],
    ),
    "fractional class": ("classification", {"a.csv": "text,label\n好,0.5\n"}, {}, ValueError, ["row 1", "regression"]),
    "regression not a number": (
        "classification",
        {"a.tsv": "text\tlabel\n好\t1.0\n坏\tabc\n"},
        {"regression": True},
        ValueError,
        ["row 2", "'abc'"],
    ),
    "extra csv field": ("seq2seq", {"a.csv": "source,target\na,b\nc,d,e\n"}, {}, ValueError, ["row 2 (line 3)"]),
    "bad json line": ("seq2seq", {"a.jsonl": '{"source": "a", "target": "b"}\n{oops\n'}, {}, ValueError, ["line 2"]),
    "bio I after O": (
        "token_classification",
        {"a.conll": "张 B-PER\n三 I-PER\n\n去 O\n京 I-LOC\n"},
        {},
        ValueError,
        ["sentence 2 (line 5)", "'I-LOC'", "token 2"],
    ),
    "bmes unclosed": (
        "token_classification",
        {"a.conll": "中 B\n国 E\n\n人 B\n民 M\n\n好 S\n"},
        {"tag_scheme": "BMES"},
        ValueError,
        ["sentence 2 (line 5)", "ends inside a word"],
    ),
    "bmes bad tag": (
        "token_classification",
        {"a.jsonl": '{"tokens": ["中"], "tags": ["S"]}\n{"tokens": ["国"], "tags": ["I"]}\n'},
        {"tag_scheme": "BMES"},
        ValueError,
        ["row 2", "'I'"],
    ),
    "conll one field": ("token_classification", {"a.conll": "张 B-PER\n三\n"}, {}, ValueError, ["line 2"]),
    "tokens tags length": (
        "token_classification",
        {"a.jsonl": '{"tokens": ["中", "国"], "tags": ["O"]}\n'},
        {},
        ValueError,
        ["row 1", "2 tokens but 1 tags"],
    ),
    "qa answer not at start": (
        "question_answering",
        {
            "a.jsonl": '{"id": "ok", "question": "谁", "context": "张三来了", "answers": {"text": ["张三"], "answer_start": [0]}}\n'
            '{"id": "bad-7", "question": "谁", "context": "张三来了", "answers": {"text": ["张三"], "answer_start": [1]}}\n'
        },
        {},
        ValueError,
        ["row 2", "'bad-7'", "answer_start 1"],
    ),
    "qa answer not in context": (
        "question_answering",
        {
            "a.json": json.dumps(
                {
                    "data": [
                        {
                            "paragraphs": [
                                {
                                    "context": "张三来了",
                                    "qas": [{"id": "q9", "question": "谁", "answers": [{"text": "李四"}]}],
                                }
                            ]
                        }
                    ]
                },
                ensure_ascii=False,
            )
        },
        {},
        ValueError,
        ["'q9'", "does not occur"],
    ),
    "qa duplicate id": (
        "question_answering",
        {
            "a.jsonl": '{"id": "x", "question": "q", "context": "c", "answers": {"text": ["c"], "answer_start": [0]}}\n'
            * 2
        },
        {},
        ValueError,
        ["row 2", "'x'", "twice"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_names_file_and_row(tmp_path, case):
    task_type, files, kwargs, exc, fragments = BAD_CASES[case]
    (name, content), *_ = files.items()
    path = _write(tmp_path / name, content)
    with pytest.raises(exc) as err:
        load_task_files(task_type, path, **kwargs)
    message = str(err.value)
    for fragment in [name, *fragments]:
        assert fragment in message, (fragment, message)


def test_missing_files(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\n好,p\n坏,n\n")
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        load_task_files("classification", tmp_path / "nothere.csv")
    with pytest.raises(FileNotFoundError, match="test file not found: .*gone.csv"):
        load_task_files("classification", train, tmp_path / "gone.csv")
    with pytest.raises(ValueError, match="unsupported file type '.xlsx'"):
        load_task_files("classification", _write(tmp_path / "a.xlsx", "x"))
    with pytest.raises(ValueError, match="task_type must be one of"):
        load_task_files("ranking", train)


def test_eval_label_unseen_in_training(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\n好,pos\n坏,neg\n")
    test = _write(tmp_path / "test.csv", "text,label\n好,pos\n一般,neutral\n")
    with pytest.raises(ValueError) as err:
        load_task_files("classification", train, test)
    assert all(s in str(err.value) for s in ("test.csv", "row 2", "'neutral'", "train.csv"))

    train_ml = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": ["x"]}])
    test_ml = _jsonl(tmp_path / "test.jsonl", [{"text": "b", "label": ["x"]}, {"text": "c", "label": ["x", "z"]}])
    with pytest.raises(ValueError, match=r"test.jsonl, row 2 \(line 2\): label 'z'"):
        load_task_files("classification", train_ml, test_ml, multi_label=True)

    tags_train = _write(tmp_path / "train.conll", "张 B-PER\n三 I-PER\n")
    tags_test = _write(tmp_path / "test.conll", "张 B-PER\n\n北 B-LOC\n")
    with pytest.raises(ValueError, match=r"test.conll, sentence 2 \(line 3\): tag 'B-LOC'"):
        load_task_files("token_classification", tags_train, tags_test)

    # Eval labels of another type than training labels are mixed types, named in the eval file.
    typed = _jsonl(tmp_path / "typed.jsonl", [{"text": "a", "label": 1}])
    with pytest.raises(ValueError, match=r"test.jsonl, row 1 \(line 1\): label column 'label' has mixed types"):
        load_task_files("classification", typed, _jsonl(tmp_path / "test.jsonl", [{"text": "b", "label": "1"}]))


# ---------------------------------------------------------------------------------------------------------------------
# Reading exactly: TSV without quoting, counts and warnings, huge cells, encodings
# ---------------------------------------------------------------------------------------------------------------------

LOGGER = "sora_hf.data.tasks"


def _messages(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_tsv_unclosed_quote_is_an_ordinary_character(tmp_path, caplog):
    rows = [f"{i % 2}\t评论{i}" for i in range(40)]
    rows[3] = '1\t"引号一直没有关上'
    rows[20] = '0\t后来又有"一个引号'
    train = _write(tmp_path / "reviews.tsv", "label\ttext\n" + "\n".join(rows) + "\n")
    test = _write(tmp_path / "test.tsv", "label\ttext\n1\t另一条\n")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ds, _ = load_task_files("classification", train, test)
    texts = list(ds["train"]["text"])
    assert len(texts) == 40 and texts[3] == '"引号一直没有关上' and texts[20] == '后来又有"一个引号'
    assert not any("\t" in t or "\n" in t for t in texts)
    assert f"{train}: 40 rows -> 40 examples" in _messages(caplog, logging.INFO)
    assert not _messages(caplog, logging.WARNING)


def test_every_file_reports_rows_and_examples(tmp_path, caplog):
    s2s = _jsonl(tmp_path / "s2s.jsonl", [{"source": "a", "target": "b"}, {"source": "c", "target": "d"}])
    conll = _write(tmp_path / "ner.conll", "张 B-PER\n三 I-PER\n\n好 O\n")
    qa = _jsonl(
        tmp_path / "qa.jsonl",
        [{"id": "1", "question": "谁", "context": "张三来了", "answers": {"text": ["张三"], "answer_start": [0]}}],
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        load_task_files("seq2seq", s2s, s2s)
        load_task_files("token_classification", conll, conll)
        load_task_files("question_answering", qa, qa)
    info = _messages(caplog, logging.INFO)
    assert f"{s2s}: 2 rows -> 2 examples" in info
    assert f"{conll}: 4 lines -> 2 sentences" in info
    assert f"{qa}: 1 rows -> 1 examples" in info


def test_long_cell_warning_names_file_row_and_length(tmp_path, caplog):
    rows = [f"短评{i},{i % 2}" for i in range(30)]
    rows[11] = "长" * 5000 + ",1"
    train = _write(tmp_path / "long.csv", "text,label\n" + "\n".join(rows) + "\n")
    test = _write(tmp_path / "test.csv", "text,label\n另一条,0\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_task_files("classification", train, test)
    warnings = _messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and str(train) in warnings[0]
    assert "1 cell(s) in column 'text' far longer than the rest" in warnings[0]
    assert "row 12 (line 13) has 5,000 chars" in warnings[0]


def test_csv_cell_over_default_field_limit_loads(tmp_path, caplog):
    big = "字" * 200_000  # over csv's default field_size_limit of 131,072
    train = _write(tmp_path / "big.csv", f"source,target\na,b\n{big},c\nd,e\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds, _ = load_task_files("seq2seq", train, train)
    assert list(ds["train"]["source"]) == ["a", big, "d"]
    assert any("row 2 (line 3) has 200,000 chars" in m for m in _messages(caplog, logging.WARNING))


def test_csv_quote_never_closed_and_merged_rows(tmp_path, caplog):
    never = _write(tmp_path / "open.csv", 'text,label\nok,1\n"never closed,0\nx,1\ny,0\n')
    with pytest.raises(ValueError, match=r"open\.csv, row 2 \(line 3\): a quoted cell .* never closed"):
        load_task_files("classification", never)
    merged = _write(tmp_path / "merged.csv", 'text,label\nok,1\n"opened,0\nx,1\ny,0\nclosed",1\nw,0\n')
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ds, _ = load_task_files("classification", merged, merged)
    assert len(ds["train"]) == 3
    assert f"{merged}: 3 rows (1 spanning several lines) -> 3 examples" in _messages(caplog, logging.INFO)
    assert any(
        "row 2 (lines 3-6) holds 3 line(s) that look like rows" in m for m in _messages(caplog, logging.WARNING)
    )


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path):
    rows = [{"source": "第一\u2028行", "target": "a\u0085b"}, {"source": "x", "target": "y"}]
    train = _jsonl(tmp_path / "sep.jsonl", rows)  # ensure_ascii=False writes U+2028 / U+0085 raw
    ds, _ = load_task_files("seq2seq", train, train)
    assert list(ds["train"]["source"]) == ["第一\u2028行", "x"] and list(ds["train"]["target"]) == ["a\u0085b", "y"]


@pytest.mark.parametrize(
    "task_type, name, content",
    [
        ("classification", "gbk.csv", "text,label\n中文,正\n"),
        ("classification", "gbk.tsv", "text\tlabel\n中文\t正\n"),
        ("classification", "gbk.jsonl", '{"text": "中文", "label": "正"}\n'),
        ("seq2seq", "gbk.json", '[{"source": "中文", "target": "英文"}]'),
        ("token_classification", "gbk.conll", "张 B-PER\n三 I-PER\n"),
        ("question_answering", "gbk.json", '{"data": [{"paragraphs": [{"context": "中文", "qas": []}]}]}'),
    ],
    ids=["csv", "tsv", "jsonl", "json", "conll", "squad"],
)
def test_non_utf8_file_is_named_with_a_fix(tmp_path, task_type, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("gbk"))
    with pytest.raises(ValueError) as err:
        load_task_files(task_type, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "not UTF-8" in message
    assert "iconv -f gbk -t utf-8" in message and Path(name).stem + ".utf8" in message
