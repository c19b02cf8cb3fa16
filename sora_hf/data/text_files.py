"""Load a user's own text corpora (``.txt``, ``.jsonl``/``.json``, ``.csv``/``.tsv``) as ``datasets`` objects.

Everything goes through ``datasets.load_dataset`` with its packaged ``text``/``json``/``csv``
builders, so large corpora can be streamed. Each file is first read once with the standard library
(not streaming) so that a bad file fails with its own name (and row) in the message instead of a
builder error deep inside ``datasets``, and so that what was read is reported: rows and examples per
file at INFO, and a warning for rows dropped (empty text, no text column), for cells far longer than
the rest and for quoted cells that swallowed rows. With ``streaming=True`` the check reads only up to
the first usable row of each file.

Files are UTF-8 (a byte-order mark is accepted); any other encoding is refused with the file, the
byte offset and line of the first bad byte and an ``iconv`` command to convert it. ``.tsv`` is read
without CSV quoting (a ``"`` is an ordinary character, as in a tab-separated export); ``.csv`` keeps
standard quoting. The helpers here (:class:`_CsvFile`, :class:`_FieldLengths`, :func:`_utf8_errors`)
are shared with the fine-tuning loader :mod:`sora_hf.data.tasks`.
"""

from __future__ import annotations

import codecs
import csv
import heapq
import itertools
import json
import logging
import os
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError

logger = logging.getLogger(__name__)

__all__ = ["SUPPORTED_EXTENSIONS", "load_text_files"]

# extension -> (datasets builder, field delimiter for csv)
_FORMATS: dict[str, tuple[str, str | None]] = {
    ".txt": ("text", None),
    ".jsonl": ("json", None),
    ".json": ("json", None),
    ".csv": ("csv", ","),
    ".tsv": ("csv", "\t"),
}
SUPPORTED_EXTENSIONS = tuple(_FORMATS)

# A field is "far longer than the rest" of its file/column when it is over both of these.
LONG_FIELD_MIN_CHARS = 2_000
LONG_FIELD_FACTOR = 20

# Python's csv refuses fields over 131,072 characters by default; a document can be longer.
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)

PathLike = str | os.PathLike


# =====================================================================================================================
# Shared reading helpers (also used by tasks.py)
# =====================================================================================================================


def _first_bad_utf8(path: Path) -> tuple[int, int, bytes] | None:
    """``(byte offset, 1-based line, first bad bytes)`` of the first bytes of ``path`` that are not UTF-8, or ``None``."""
    offset, lines, carry = 0, 0, b""
    with path.open("rb") as f:
        while True:
            chunk = f.read(1 << 20)
            data = carry + chunk
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as err:
                if chunk and err.end == len(data) and err.reason == "unexpected end of data":
                    good = err.start  # a character cut by the chunk boundary: finish it with the next chunk
                else:
                    start = err.start
                    return offset + start, lines + data[:start].count(b"\n") + 1, data[start : start + 4]
            if not chunk:
                return None
            lines += data[:good].count(b"\n")
            offset += good
            carry = data[good:]


def _not_utf8(path: Path) -> ValueError:
    """The one-line error for a file that is not UTF-8, with the first bad byte and how to convert the file."""
    with path.open("rb") as f:
        head = f.read(4)
    converted = shlex.quote(str(path.with_name(f"{path.stem}.utf8{path.suffix}")))
    source = shlex.quote(str(path))
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ValueError(
            f"{path}: the file is UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8; convert it, "
            f"e.g. iconv -f utf-16 -t utf-8 {source} > {converted}"
        )
    bad = _first_bad_utf8(path)
    where = ""
    if bad is not None:
        offset, line, raw = bad
        where = f" (byte {offset}, line {line}: {raw.hex(' ')})"
    return ValueError(
        f"{path}: not UTF-8 text{where}; convert it to UTF-8, e.g. for GBK/GB18030 (Chinese saved on Windows): "
        f"iconv -f gbk -t utf-8 {source} > {converted}"
    )


@contextmanager
def _utf8_errors(path: Path) -> Iterator[None]:
    """Turn a ``UnicodeDecodeError`` raised while reading ``path`` into :func:`_not_utf8`'s ``ValueError``."""
    try:
        yield
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


class _FieldLengths:
    """Lengths of one column's cells in one file: finds cells far longer than the rest (a sign of merged rows).

    The lengths are kept as a histogram (exact median, small memory) and the few longest cells with where
    they are. A cell is flagged when it is over ``LONG_FIELD_MIN_CHARS`` and ``LONG_FIELD_FACTOR`` times the
    median length.
    """

    KEEP = 3

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self._longest: list[tuple[int, int, Any]] = []  # min-heap of (length, -order, where)
        self._order = itertools.count()

    def add(self, length: int, where: Any) -> None:
        self.counts[length] += 1
        if length > LONG_FIELD_MIN_CHARS:
            item = (length, -next(self._order), where)
            if len(self._longest) < self.KEEP:
                heapq.heappush(self._longest, item)
            elif item > self._longest[0]:
                heapq.heapreplace(self._longest, item)

    def median(self) -> float:
        total = sum(self.counts.values())
        if not total:
            return 0.0
        wanted = [(total - 1) // 2, total // 2]  # 0-based positions of the middle value(s) in sorted order
        found: list[int] = []
        seen = 0
        for length in sorted(self.counts):
            seen += self.counts[length]
            while wanted and seen > wanted[0]:
                found.append(length)
                wanted.pop(0)
            if not wanted:
                break
        return (found[0] + found[1]) / 2

    def warn(self, log: logging.Logger, path: Path, column: str | None, hint: str = "") -> int:
        """Log a warning naming the far-too-long cells; returns how many there are."""
        if not self._longest:
            return 0
        median = self.median()
        limit = max(LONG_FIELD_MIN_CHARS, LONG_FIELD_FACTOR * median)
        count = sum(n for length, n in self.counts.items() if length > limit)
        if not count:
            return 0
        shown = "; ".join(
            f"{where} has {length:,} chars"
            for length, _, where in sorted(self._longest, reverse=True)
            if length > limit
        )
        what = f"cell(s) in column {column!r}" if column else "line(s)"
        log.warning(
            "%s: %d %s far longer than the rest (median %g chars, flagged over %g): %s%s",
            path,
            count,
            what,
            median,
            limit,
            shown,
            hint,
        )
        return count


def _raise_csv_field_limit() -> None:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)


class _LineTap:
    """Iterates a file's lines for ``csv.reader`` and keeps the lines of the row being read."""

    def __init__(self, f: Iterable[str]):
        self._it = iter(f)
        self.lines: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._it)
        self.lines.append(line)
        return line

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


@dataclass
class _CsvFile:
    """Rows of a CSV (standard quoting) or TSV (no quoting) file, read with the standard library.

    :meth:`rows` yields ``(row number, first line, fields)`` for each data row after the header (blank
    lines are skipped, as ``csv.DictReader`` does). A cell over Python's default field size limit is
    read; any other parse error, and a quote that is still open at the end of the file, is a
    ``ValueError`` naming the file and the row. Rows whose quoted cell spans lines that look like rows
    of their own are collected in ``merged`` and reported by :meth:`warn`.
    """

    path: Path
    delimiter: str
    header: list[str] | None = None
    lines: int = 0
    multi_line_rows: int = 0
    merged: list[tuple[int, int, int, int]] = field(default_factory=list)  # (row, first line, last line, row-like)

    @property
    def quoting(self) -> int:
        return csv.QUOTE_NONE if self.delimiter == "\t" else csv.QUOTE_MINIMAL

    def rows(self) -> Iterator[tuple[int, int, list[str]]]:
        _raise_csv_field_limit()
        n = 0
        last: list[str] = []
        last_start = 0
        with _utf8_errors(self.path), self.path.open(encoding="utf-8-sig", newline="") as f:
            tap = _LineTap(f)
            reader = csv.reader(tap, delimiter=self.delimiter, quoting=self.quoting)
            try:
                for fields in reader:
                    raw = tap.take()
                    first = reader.line_num - len(raw) + 1
                    if not fields:
                        continue
                    if self.header is None:
                        self.header = fields
                        continue
                    n += 1
                    if len(raw) > 1:
                        self.multi_line_rows += 1
                        self._check_merged(n, first, raw)
                    last, last_start = raw, first
                    yield n, first, fields
            except csv.Error as err:
                raise ValueError(
                    f"{self.path}, row {n + 1} (line {reader.line_num}): cannot parse this row as "
                    f"{'TSV' if self.delimiter == chr(9) else 'CSV'} ({err})"
                ) from None
            self.lines = reader.line_num
        if last and self.quoting != csv.QUOTE_NONE and self._open_at_end(last):
            raise ValueError(
                f"{self.path}, row {n} (line {last_start}): a quoted cell opened in this row is never closed, so it "
                f'runs to the end of the file and swallows {len(last) - 1} line(s); close the quote (a " inside a '
                'quoted cell is written "")'
            )

    def _open_at_end(self, raw: list[str]) -> bool:
        try:
            for _ in csv.reader(raw, delimiter=self.delimiter, quoting=self.quoting, strict=True):
                pass
        except csv.Error as err:
            return "end of data" in str(err)
        return False

    def _check_merged(self, n: int, first: int, raw: list[str]) -> None:
        width = len(self.header or ())
        inner = [line for line in raw[1:] if line.strip()]
        if width < 2 or not inner:
            return
        row_like = sum(
            len(next(csv.reader([line], delimiter=self.delimiter, quoting=self.quoting), [])) == width
            for line in inner
        )
        if row_like and row_like >= 0.8 * len(inner):
            self.merged.append((n, first, first + len(raw) - 1, row_like))

    def summary(self) -> str:
        """``" (N spanning several lines)"`` when quoted cells hold line breaks, for the INFO line."""
        return f" ({self.multi_line_rows} spanning several lines)" if self.multi_line_rows else ""

    def warn(self, log: logging.Logger) -> None:
        if not self.merged:
            return
        shown = "; ".join(
            f"row {n} (lines {a}-{b}) holds {k} line(s) that look like rows" for n, a, b, k in self.merged[:3]
        )
        log.warning(
            "%s: %d row(s) have a quoted cell spanning lines that look like rows of their own, so rows were "
            "probably merged by a quote that is never closed: %s",
            self.path,
            len(self.merged),
            shown,
        )


# =====================================================================================================================
# load_text_files
# =====================================================================================================================


def _expand(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Files named by ``paths``; a directory stands for its supported files (recursively, sorted, hidden ones skipped)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in _FORMATS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise FileNotFoundError(
                    f"Directory {path} holds no supported text files (looked for {', '.join(SUPPORTED_EXTENSIONS)})."
                )
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in _FORMATS:
                raise ValueError(
                    f"Unsupported file type {path.suffix or '(no extension)'!r} for {path}; "
                    f"supported: {', '.join(SUPPORTED_EXTENSIONS)}."
                )
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or directory: {path}")
    if not files:
        raise ValueError("No input files given.")
    return list(dict.fromkeys(files))


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _nonempty(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


_MISSING = object()


def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for the rows of a JSON Lines file, or of a file holding one JSON array of objects."""
    with _utf8_errors(path), path.open(encoding="utf-8-sig") as f:
        lineno = 0
        for line in f:
            lineno += 1
            if line.strip():
                break
        else:
            return
        if line.lstrip().startswith("["):
            f.seek(0)
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: invalid JSON ({err}).") from err
            for n, record in enumerate(data, start=1):
                yield f"row {n}", record
            return
        n = 1
        yield f"row {n} (line {lineno})", _parse_json_line(path, line, lineno)
        for line in f:
            lineno += 1
            if line.strip():
                n += 1
                yield f"row {n} (line {lineno})", _parse_json_line(path, line, lineno)


def _parse_json_line(path: Path, line: str, lineno: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} line {lineno}: not JSON Lines ({err}); .json/.jsonl files must hold one JSON object per line "
            "or a JSON array of objects."
        ) from err


@dataclass
class _FileCount:
    """What one file held: rows read, examples kept, rows dropped by reason (with where the first few are)."""

    path: Path
    unit: str = "rows"
    rows: int = 0
    examples: int = 0
    dropped: dict[str, list] = field(default_factory=dict)  # reason -> [count, first few "where"s]
    extra: str = ""

    def drop(self, reason: str, where: Any) -> None:
        entry = self.dropped.setdefault(reason, [0, []])
        entry[0] += 1
        if len(entry[1]) < 3:
            entry[1].append(where)

    def report(self, log: logging.Logger, quiet_reasons: tuple[str, ...] = ()) -> None:
        notes = "".join(f", {n} {reason}" for reason, (n, _) in self.dropped.items() if reason in quiet_reasons)
        log.info("%s: %d %s%s -> %d examples%s", self.path, self.rows, self.unit, self.extra, self.examples, notes)
        loud = {r: v for r, v in self.dropped.items() if r not in quiet_reasons}
        if loud:
            total = sum(n for n, _ in loud.values())
            reasons = "; ".join(
                f"{n} {reason} (e.g. {', '.join(map(str, first))})" for reason, (n, first) in loud.items()
            )
            log.warning("%s: dropped %d of %d rows: %s", self.path, total, self.rows, reasons)


def _scan_file(path: Path, text_column: str, full: bool) -> _FileCount:
    """Read ``path`` with the standard library, checking it and counting what it holds; raise naming ``path``.

    With ``full=False`` (streaming) it stops at the first usable row.
    """
    builder, delimiter = _FORMATS[path.suffix.lower()]
    count = _FileCount(path)
    lengths = _FieldLengths()
    csv_file = None
    if builder == "text":
        _scan_lines(path, count, lengths, full)
    elif builder == "json":
        _scan_json(path, text_column, count, lengths, full)
    else:
        csv_file = _scan_csv(path, delimiter, text_column, count, lengths, full)
    if full:
        _report_scan(path, builder, text_column, count, lengths, csv_file)
    return count


def _scan_lines(path: Path, count: _FileCount, lengths: _FieldLengths, full: bool) -> None:
    """Count the lines of a ``.txt`` file (one document each); raise when none has text."""
    count.unit = "lines"
    with _utf8_errors(path), path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            count.rows += 1
            text = line.rstrip("\n")
            if not _nonempty(text):
                count.drop("blank line(s) skipped", f"line {lineno}")
                continue
            count.examples += 1
            lengths.add(len(text), f"line {lineno}")
            if not full:
                break
    if not count.examples:
        raise ValueError(f"{path}: empty corpus, the file has no non-empty lines.")


def _scan_json(path: Path, text_column: str, count: _FileCount, lengths: _FieldLengths, full: bool) -> None:
    """Count the rows of a JSON(L) file by their ``text_column``; raise when none has text there."""
    columns_seen: dict[str, None] = {}
    for where, record in _json_records(path):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: expected JSON objects (one per row), found {type(record).__name__}.")
        count.rows += 1
        value = record.get(text_column, _MISSING)
        if value is _MISSING:
            columns_seen.update(dict.fromkeys(record))
            count.drop(f"without column {text_column!r}", where)
        elif not _nonempty(value):
            count.drop(f"with empty text in column {text_column!r}", where)
        else:
            count.examples += 1
            lengths.add(len(str(value)), where)
            if not full:
                break
    if not count.examples:
        if columns_seen and text_column not in columns_seen:
            raise ValueError(
                f"{path}: no column {text_column!r}; columns found: {', '.join(map(repr, columns_seen))}. "
                "Pass text_column= to choose one."
            )
        raise ValueError(f"{path}: empty corpus, no row has non-empty text in column {text_column!r}.")


def _scan_csv(
    path: Path, delimiter: str | None, text_column: str, count: _FileCount, lengths: _FieldLengths, full: bool
) -> _CsvFile:
    """Count the rows of a CSV/TSV file by their ``text_column``; raise when none has text there."""
    csv_file = _CsvFile(path, delimiter)
    rows = csv_file.rows()
    index = None
    for n, line, fields in rows:
        if index is None:
            index = _csv_text_index(csv_file, text_column)
        where = f"row {n} (line {line})"
        count.rows += 1
        header = csv_file.header or []
        if len(fields) > len(header):
            raise ValueError(f"{path}, {where}: {len(fields)} fields but the header has {len(header)}")
        if index >= len(fields):
            count.drop(f"with too few fields (no {text_column!r})", where)
        elif not _nonempty(fields[index]):
            count.drop(f"with empty text in column {text_column!r}", where)
        else:
            count.examples += 1
            lengths.add(len(fields[index]), where)
            if not full:
                rows.close()
                break
    if index is None:
        _csv_text_index(csv_file, text_column)  # header-only or empty file: its own message first
    if not count.examples:
        raise ValueError(f"{path}: empty corpus, no row has non-empty text in column {text_column!r}.")
    count.extra = csv_file.summary()
    return csv_file


def _report_scan(
    path: Path,
    builder: str,
    text_column: str,
    count: _FileCount,
    lengths: _FieldLengths,
    csv_file: _CsvFile | None,
) -> None:
    """Log what a fully read file held, and warn about its dropped rows, far-too-long cells and merged rows."""
    count.report(logger, quiet_reasons=("blank line(s) skipped",))
    hint = ""
    if csv_file is not None and csv_file.quoting != csv.QUOTE_NONE:
        hint = " (a quote that is never closed merges the rows after it into one cell)"
    lengths.warn(logger, path, None if builder == "text" else text_column, hint)
    if csv_file is not None:
        csv_file.warn(logger)


def _csv_text_index(csv_file: _CsvFile, text_column: str) -> int:
    header = csv_file.header
    path = csv_file.path
    if not header:
        raise ValueError(f"{path}: empty corpus, the file has no header row.")
    if text_column not in header:
        raise ValueError(
            f"{path}: no column {text_column!r}; columns found: {', '.join(map(repr, header))}. "
            f"Pass text_column= to choose one."
        )
    return header.index(text_column)


def _builder_kwargs(builder: str, delimiter: str | None, text_column: str) -> dict[str, Any]:
    """Builder options that read what :func:`_scan_file` reads: UTF-8 (BOM allowed), TSV unquoted, CSV cells as text."""
    if builder != "csv":
        return {"encoding": "utf-8-sig"}
    return {
        "sep": delimiter,
        "quoting": csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
        "encoding": "utf-8-sig",
        # Only the text column, as text: no "NA"/"null" turned into missing values, no "007" turned into 7.
        "usecols": [text_column],
        "na_filter": False,
        "keep_default_na": False,
        "features": datasets.Features({text_column: datasets.Value("string")}),
    }


def load_text_files(
    paths: PathLike | Iterable[PathLike],
    streaming: bool = False,
    text_column: str = "text",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Documents from ``paths`` (files or directories) as one dataset with a single column ``text_column``.

    ``.txt`` files hold one document per line; ``.jsonl``/``.json`` (JSON Lines or a JSON array of
    objects) and ``.csv``/``.tsv`` take the documents from column ``text_column``. Rows whose text is
    empty or whitespace are dropped and other columns are discarded, so files of different formats
    can be mixed. ``.tsv`` files are read without quoting, ``.csv`` with standard CSV quoting; cells
    are taken as text exactly as written. ``streaming=True`` returns an ``IterableDataset`` that reads
    lazily; ``cache_dir`` is passed to ``load_dataset`` (the Arrow cache of the non-streaming case goes there).

    Without streaming each file's rows and examples are logged at INFO, and a warning names rows
    dropped (empty text, no text column), cells far longer than the rest of their file, and quoted
    CSV cells that swallowed rows.

    Raises ``FileNotFoundError`` for a missing path or a directory with no supported file, and
    ``ValueError`` for an unsupported extension, a file with no non-empty row, a file without
    ``text_column`` (the message names the file and the columns it has), a file that is not UTF-8, or a
    row that cannot be parsed (the message names the file and the row).
    """
    files = _expand(paths)
    counts = {path: _scan_file(path, text_column, full=not streaming) for path in files}
    if streaming:
        logger.info(
            "Streaming %d file(s): each was checked up to its first usable row; rows are not counted", len(files)
        )

    groups: dict[tuple[str, str | None], list[Path]] = {}
    for path in files:
        groups.setdefault(_FORMATS[path.suffix.lower()], []).append(path)

    parts = []
    for (builder, delimiter), group in groups.items():
        data_files = [str(p) for p in group]
        ds = _load_builder(builder, delimiter, data_files, text_column, streaming, cache_dir)
        ds = _text_column_only(ds, builder, text_column)
        if not streaming:
            _check_builder_count(ds, builder, data_files, sum(counts[p].examples for p in group))
        parts.append(ds)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _load_builder(
    builder: str,
    delimiter: str | None,
    data_files: list[str],
    text_column: str,
    streaming: bool,
    cache_dir: str | os.PathLike | None,
) -> datasets.Dataset | datasets.IterableDataset:
    """The files of one format through the packaged ``datasets`` builder; a builder error names the files."""
    # local files: no download-counter request to the Hub (datasets' own switch; the README promises no
    # network at run time, HF_HUB_OFFLINE or not)
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        return datasets.load_dataset(
            builder,
            data_files={"train": data_files},
            split="train",
            streaming=streaming,
            cache_dir=cache_dir,
            **_builder_kwargs(builder, delimiter, text_column),
        )
    except DatasetGenerationError as err:
        # The builder logs the failing file but its exception does not say which one it was.
        shown = ", ".join(data_files[:5]) + (f" and {len(data_files) - 5} more" if len(data_files) > 5 else "")
        raise ValueError(f"Could not read {builder} file(s) {shown}: {err.__cause__ or err}") from err


def _text_column_only(
    ds: datasets.Dataset | datasets.IterableDataset, builder: str, text_column: str
) -> datasets.Dataset | datasets.IterableDataset:
    """``ds`` as the one string column ``text_column``, without the rows whose text is empty."""
    source_column = "text" if builder == "text" else text_column
    ds = ds.select_columns([source_column])
    if source_column != text_column:
        ds = ds.rename_column(source_column, text_column)
    # One string type everywhere (csv may infer ints, json large_string) so the parts concatenate.
    string = datasets.Value("string")
    if ds.features is None:
        ds = ds.map(
            lambda row: {text_column: _as_text(row[text_column])},
            features=datasets.Features({text_column: string}),
        )
    elif ds.features[text_column] != string:
        ds = ds.cast_column(text_column, string)
    return ds.filter(lambda row: _nonempty(row[text_column]))


def _check_builder_count(ds: datasets.Dataset, builder: str, data_files: list[str], expected: int) -> None:
    """Warn when the builder read another number of examples than reading the files directly gave."""
    if len(ds) != expected:
        logger.warning(
            "%s: the datasets %r builder read %d examples where reading the file(s) directly gives %d; "
            "check the files for unusual quoting or line breaks",
            ", ".join(data_files[:5]),
            builder,
            len(ds),
            expected,
        )
