"""Loading a user's own corpora: formats, directories, streaming, and errors that name the bad file."""

from __future__ import annotations

import json
import logging
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


# ---------------------------------------------------------------------------------------------------------------------
# Reading exactly: TSV without quoting, counts and warnings, huge cells, encodings
# ---------------------------------------------------------------------------------------------------------------------

LOGGER = "sora_hf.data.text_files"


def _messages(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_tsv_unclosed_quote_does_not_swallow_rows(tmp_path, cache, caplog):
    rows = [f"{i % 2}\t评论{i}" for i in range(40)]
    rows[5] = '1\t"开头的引号一直没有关上'
    rows[30] = '0\t后面又有"一个引号'
    path = tmp_path / "reviews.tsv"
    path.write_text("label\ttext\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ds = load_text_files(path, cache_dir=cache)
    assert len(ds) == 40
    assert ds["text"][5] == '"开头的引号一直没有关上' and ds["text"][30] == '后面又有"一个引号'
    assert not any("\t" in t or "\n" in t for t in ds["text"])
    assert f"{path}: 40 rows -> 40 examples" in _messages(caplog, logging.INFO)
    assert not _messages(caplog, logging.WARNING)


def test_counts_and_dropped_rows_are_reported(tmp_path, cache, caplog):
    path = tmp_path / "docs.csv"
    path.write_text("id,text\n1,one\n2,\n3,three\n4\n", encoding="utf-8")
    txt = tmp_path / "lines.txt"
    txt.write_text("a\n\nb\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ds = load_text_files([path, txt], cache_dir=cache)
    assert sorted(ds["text"]) == ["a", "b", "one", "three"]
    info = _messages(caplog, logging.INFO)
    assert f"{path}: 4 rows -> 2 examples" in info
    assert f"{txt}: 3 lines -> 2 examples, 1 blank line(s) skipped" in info
    (warning,) = _messages(caplog, logging.WARNING)  # blank lines of a .txt are not a warning
    assert warning.startswith(f"{path}: dropped 2 of 4 rows")
    assert "1 with empty text in column 'text' (e.g. row 2 (line 3))" in warning
    assert "row 4 (line 5)" in warning


def test_jsonl_rows_without_text_column_are_reported(tmp_path, cache, caplog):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a"}\n{"body": "b"}\n{"text": "c"}\n', encoding="utf-8")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert load_text_files(path, cache_dir=cache)["text"][:] == ["a", "c"]
    (warning,) = _messages(caplog, logging.WARNING)
    assert "dropped 1 of 3 rows: 1 without column 'text' (e.g. row 2 (line 2))" in warning


def test_long_field_warning_names_file_row_and_length(tmp_path, cache, caplog):
    rows = [f"短评{i}" for i in range(30)]
    rows[7] = "长" * 5000
    path = tmp_path / "mixed.tsv"
    path.write_text("text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert len(load_text_files(path, cache_dir=cache)) == 30
    (warning,) = _messages(caplog, logging.WARNING)
    assert str(path) in warning and "1 cell(s) in column 'text' far longer than the rest" in warning
    assert "row 8 (line 9) has 5,000 chars" in warning


def test_csv_cell_over_default_field_limit_loads(tmp_path, cache, caplog):
    big = "字" * 200_000  # over csv's default field_size_limit of 131,072
    path = tmp_path / "big.csv"
    path.write_text(f"id,text\n1,short\n2,{big}\n3,also short\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = load_text_files(path, cache_dir=cache)
    assert ds["text"][:] == ["short", big, "also short"]
    assert any("row 2 (line 3) has 200,000 chars" in m for m in _messages(caplog, logging.WARNING))


def test_csv_cells_are_read_as_written(tmp_path, cache):
    path = tmp_path / "raw.csv"
    path.write_text('id,text\n1,NA\n2,null\n3,007\n4,"引号, 逗号\n换行"\n', encoding="utf-8")
    assert load_text_files(path, cache_dir=cache)["text"][:] == ["NA", "null", "007", "引号, 逗号\n换行"]


def test_csv_quote_never_closed_names_file_and_row(tmp_path, cache):
    path = tmp_path / "open.csv"
    path.write_text('id,text\n1,ok\n2,"never closed\n3,x\n4,y\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"open\.csv, row 2 \(line 3\): a quoted cell .* never closed"):
        load_text_files(path, cache_dir=cache)


def test_csv_rows_merged_by_a_quote_are_reported(tmp_path, cache, caplog):
    path = tmp_path / "merged.csv"
    path.write_text('id,text\n1,ok\n2,"opened\n3,x\n4,y\n5,closed later"\n6,w\n', encoding="utf-8")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert len(load_text_files(path, cache_dir=cache)) == 3
    assert f"{path}: 3 rows (1 spanning several lines) -> 3 examples" in _messages(caplog, logging.INFO)
    (warning,) = _messages(caplog, logging.WARNING)
    assert "row 2 (lines 3-6) holds 3 line(s) that look like rows" in warning


def test_csv_parse_error_names_file_and_row(tmp_path, cache):
    path = tmp_path / "wide.csv"
    path.write_text("id,text\n1,ok\n2,a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"wide\.csv, row 2 \(line 3\): 3 fields but the header has 2"):
        load_text_files(path, cache_dir=cache)


@pytest.mark.parametrize("name", ["gbk.txt", "gbk.jsonl", "gbk.json", "gbk.csv", "gbk.tsv"])
def test_non_utf8_file_is_named_with_a_fix(tmp_path, cache, name):
    content = {
        ".txt": "第一行\n第二行\n",
        ".jsonl": '{"text": "中文"}\n',
        ".json": '[{"text": "中文"}]',
        ".csv": "text\n中文\n",
        ".tsv": "text\n中文\n",
    }[Path(name).suffix]
    path = tmp_path / name
    path.write_bytes(content.encode("gbk"))
    with pytest.raises(ValueError) as err:
        load_text_files(path, cache_dir=cache)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "not UTF-8" in message
    assert "iconv -f gbk -t utf-8" in message


def test_non_utf8_byte_offset_and_line(tmp_path, cache):
    path = tmp_path / "late.txt"
    path.write_bytes(b"ok line\n" * 3 + "坏".encode("gbk") + b"\n")
    with pytest.raises(ValueError, match=r"late\.txt: not UTF-8 text \(byte 24, line 4: "):
        load_text_files(path, cache_dir=cache)


def test_utf8_with_bom_is_accepted(tmp_path, cache):
    bom = "\ufeff"
    (tmp_path / "a.csv").write_text(f"{bom}text\n表格\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text(f"{bom}文本\n", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(f'{bom}{{"text": "行"}}\n', encoding="utf-8")
    assert load_text_files(tmp_path, cache_dir=cache)["text"][:] == ["表格", "文本", "行"]


def test_local_files_send_no_download_counter_request(tmp_path, monkeypatch):
    import datasets
    import datasets.load

    path = tmp_path / "corpus.csv"
    path.write_text("text\n一\n二\n", encoding="utf-8")
    requests = []

    class Session:
        def head(self, url, **kwargs):
            requests.append(url)

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", True)
    monkeypatch.setattr(datasets.load, "get_session", lambda: Session())
    assert load_text_files([path], cache_dir=str(tmp_path / "cache"))["text"] == ["一", "二"]
    assert requests == []
