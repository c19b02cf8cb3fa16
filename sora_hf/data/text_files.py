"""Load a user's own text corpora (``.txt``, ``.jsonl``/``.json``, ``.csv``/``.tsv``) as ``datasets`` objects.

Everything goes through ``datasets.load_dataset`` with its packaged ``text``/``json``/``csv``
builders, so large corpora can be streamed. Each file is checked first (exists, supported, has a
text column, has at least one non-empty row) so a bad file fails with its own name in the message
instead of a builder error deep inside ``datasets``; the checks read only up to the first usable row.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError

__all__ = ["SUPPORTED_EXTENSIONS", "load_text_files"]

# extension -> (datasets builder, extra builder kwargs)
_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".txt": ("text", {}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
}
SUPPORTED_EXTENSIONS = tuple(_FORMATS)

PathLike = str | os.PathLike


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


def _check_records(path: Path, records: Iterable[Any], text_column: str) -> None:
    """Raise unless some record is a dict with a non-empty ``text_column``; stops at the first one that is."""
    columns_seen: dict[str, None] = {}
    for record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{path}: expected JSON objects (one per row), found {type(record).__name__}.")
        if _nonempty(record.get(text_column)):
            return
        columns_seen.update(dict.fromkeys(record))
    if columns_seen and text_column not in columns_seen:
        raise ValueError(
            f"{path}: no column {text_column!r}; columns found: {', '.join(map(repr, columns_seen))}. "
            "Pass text_column= to choose one."
        )
    raise ValueError(f"{path}: empty corpus, no row has non-empty text in column {text_column!r}.")


def _json_records(path: Path) -> Iterator[Any]:
    """Rows of a JSON Lines file, or of a file holding one JSON array of objects."""
    with path.open(encoding="utf-8") as f:
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
            yield from data
            return
        yield _parse_json_line(path, line, lineno)
        for line in f:
            lineno += 1
            if line.strip():
                yield _parse_json_line(path, line, lineno)


def _parse_json_line(path: Path, line: str, lineno: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} line {lineno}: not JSON Lines ({err}); .json/.jsonl files must hold one JSON object per line "
            "or a JSON array of objects."
        ) from err


def _check_file(path: Path, text_column: str) -> None:
    """Fail early, naming ``path``, when it has no usable text."""
    builder, kwargs = _FORMATS[path.suffix.lower()]
    if builder == "text":
        with path.open(encoding="utf-8") as f:
            if not any(line.strip() for line in f):
                raise ValueError(f"{path}: empty corpus, the file has no non-empty lines.")
    elif builder == "json":
        _check_records(path, _json_records(path), text_column)
    else:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=kwargs.get("sep", ","))
            header = reader.fieldnames
            if not header:
                raise ValueError(f"{path}: empty corpus, the file has no header row.")
            if text_column not in header:
                raise ValueError(
                    f"{path}: no column {text_column!r}; columns found: {', '.join(map(repr, header))}. "
                    f"Pass text_column= to choose one."
                )
            if not any(_nonempty(row.get(text_column)) for row in reader):
                raise ValueError(f"{path}: empty corpus, no row has non-empty text in column {text_column!r}.")


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
    can be mixed. ``streaming=True`` returns an ``IterableDataset`` that reads lazily; ``cache_dir``
    is passed to ``load_dataset`` (the Arrow cache of the non-streaming case goes there).

    Raises ``FileNotFoundError`` for a missing path or a directory with no supported file, and
    ``ValueError`` for an unsupported extension, a file with no non-empty row, or a file without
    ``text_column`` (the message names the file and the columns it has).
    """
    files = _expand(paths)
    for path in files:
        _check_file(path, text_column)

    groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[str]] = {}
    for path in files:
        builder, kwargs = _FORMATS[path.suffix.lower()]
        groups.setdefault((builder, tuple(sorted(kwargs.items()))), []).append(str(path))

    parts = []
    for (builder, kwargs), data_files in groups.items():
        try:
            ds = datasets.load_dataset(
                builder,
                data_files={"train": data_files},
                split="train",
                streaming=streaming,
                cache_dir=cache_dir,
                **dict(kwargs),
            )
        except DatasetGenerationError as err:
            # The builder logs the failing file but its exception does not say which one it was.
            shown = ", ".join(data_files[:5]) + (f" and {len(data_files) - 5} more" if len(data_files) > 5 else "")
            raise ValueError(f"Could not read {builder} file(s) {shown}: {err.__cause__ or err}") from err
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
        ds = ds.filter(lambda row: _nonempty(row[text_column]))
        parts.append(ds)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
