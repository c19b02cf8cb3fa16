"""Loading a user's own corpora: formats, directories, streaming, and errors that name the bad file."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from sora_hf.data.text_files import load_text_files


@pytest.fixture
def cache(tmp_path: Path) -> str:
    """A private datasets cache, so the tests never write into ~/.cache."""
    return str(tmp_path / "hf_cache")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("第一篇文档\n\n   \nsecond document\n", encoding="utf-8")
    (root / "b.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in [{"text": "json 一", "id": 1}, {"text": "", "id": 2}])
        + "\n\n",
        encoding="utf-8",
    )
    (root / "sub" / "c.csv").write_text("id,text\n1,csv one\n2,\n3,csv three\n", encoding="utf-8")
    (root / "sub" / "d.tsv").write_text("id\ttext\n1\ttsv, with comma\n", encoding="utf-8")
    (root / "e.json").write_text(json.dumps([{"text": "array 1"}, {"text": "array 2"}], indent=2), encoding="utf-8")
    (root / "notes.md").write_text("ignored: not a supported extension\n", encoding="utf-8")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.txt").write_text("ignored: hidden\n", encoding="utf-8")
    return root


EXPECTED = {
    "第一篇文档",
    "second document",
    "json 一",
    "csv one",
    "csv three",
    "tsv, with comma",
    "array 1",
    "array 2",
}


def test_txt_one_document_per_line_empty_dropped(corpus, cache):
    ds = load_text_files(corpus / "a.txt", cache_dir=cache)
    assert isinstance(ds, datasets.Dataset)
    assert ds["text"][:] == ["第一篇文档", "second document"]


def test_directory_mixes_formats(corpus, cache):
    ds = load_text_files(corpus, cache_dir=cache)
    assert ds.column_names == ["text"]
    assert ds.features["text"] == datasets.Value("string")
    assert sorted(ds["text"][:]) == sorted(EXPECTED)


def test_streaming_gives_same_rows(corpus, cache):
    ds = load_text_files([corpus], streaming=True, cache_dir=cache)
    assert isinstance(ds, datasets.IterableDataset)
    assert sorted(row["text"] for row in ds) == sorted(EXPECTED)


def test_custom_text_column(tmp_path, cache):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"body": "hello", "n": 1}\n{"body": "world", "n": 2}\n', encoding="utf-8")
    ds = load_text_files(str(path), text_column="body", cache_dir=cache)
    assert ds.column_names == ["body"] and ds["body"][:] == ["hello", "world"]
    csv_path = tmp_path / "nums.csv"
    csv_path.write_text("n,body\n1,2\n2,3\n", encoding="utf-8")  # csv infers ints; the loader gives strings
    assert load_text_files(csv_path, text_column="body", cache_dir=cache)["body"][:] == ["2", "3"]


def test_missing_path_names_it(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_text_files(tmp_path / "nope.txt", cache_dir=cache)


def test_unsupported_extension_names_it(tmp_path, cache):
    path = tmp_path / "corpus.parquetx"
    path.write_text("x\n")
    with pytest.raises(ValueError, match=r"corpus\.parquetx.*supported"):
        load_text_files(path, cache_dir=cache)


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.txt", ""),
        ("blank.txt", "\n  \n\t\n"),
        ("empty.jsonl", "\n"),
        ("blank_text.jsonl", '{"text": ""}\n{"text": "  "}\n'),
        ("header_only.csv", "id,text\n"),
        ("no_header.csv", ""),
        ("empty_array.json", "[]"),
    ],
)
def test_empty_corpus_names_file(tmp_path, cache, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{name}.*empty corpus"):
        load_text_files(path, cache_dir=cache)


@pytest.mark.parametrize(
    "name, content",
    [
        ("rows.jsonl", '{"body": "a", "title": "t"}\n'),
        ("rows.json", '[{"body": "a", "title": "t"}]'),
        ("rows.csv", "body,title\na,t\n"),
        ("rows.tsv", "body\ttitle\na\tt\n"),
    ],
)
def test_missing_text_column_names_file_and_columns(tmp_path, cache, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{name}.*no column 'text'.*'body', 'title'"):
        load_text_files(path, cache_dir=cache)


def test_bad_file_in_directory_is_named(corpus, cache):
    broken = corpus / "sub" / "broken.jsonl"
    broken.write_text('not json\n{"text": "ok"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl line 1: not JSON Lines"):
        load_text_files(corpus, cache_dir=cache)
    # a bad row after the first usable one is caught by the builder; the error still names the file
    broken.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl"):
        load_text_files(broken, cache_dir=cache)


def test_directory_without_supported_files(tmp_path, cache):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(FileNotFoundError, match="no supported text files"):
        load_text_files(tmp_path, cache_dir=cache)
