"""The pre-training text as model inputs: each objective's tokenisation
(encoder rows with word ids for whole-word masking, denoising rows, packed causal-LM blocks)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pyarrow.compute as pc
from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase

from ..tokenizer import HAN_PATTERN

_HAN_RE = re.compile(HAN_PATTERN)


def _check_text_column(dataset: Dataset | IterableDataset, text_column: str) -> None:
    if dataset.column_names is not None and text_column not in dataset.column_names:
        raise ValueError(f"dataset has no column {text_column!r}; its columns are {dataset.column_names}")


def _map(dataset: Dataset | IterableDataset, encode: Callable, desc: str) -> Dataset | IterableDataset:
    """`dataset.map(batched=True)` dropping the input columns; lazy for a streamed corpus (which has no `desc`)."""
    if isinstance(dataset, IterableDataset):
        first = next(iter(dataset.take(1)), None)
        columns = dataset.column_names or (list(first) if first else [])
        return dataset.map(encode, batched=True, remove_columns=columns)
    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=desc)


def _is_latin_alnum(char: str) -> bool:
    """A letter or digit that is not a Han character: the pieces of one English word or number share a word id."""
    return char.isalnum() and not _HAN_RE.match(char)


def _char_to_word(text: str, words: Sequence[str]) -> list[int] | None:
    """Word index of every character of `text`, or None when the words cannot be found in order in the text.

    Characters between words (spaces, if any) belong to the following word, as the tokenizer's `▁` marker does;
    trailing ones to the last word."""
    owner = [0] * len(text)
    pos = 0
    last = -1
    for index, word in enumerate(words):
        if not word:
            continue
        start = text.find(word, pos)
        if start < 0:
            return None
        end = start + len(word)
        owner[pos:end] = [index] * (end - pos)
        pos, last = end, index
    if last < 0:
        return None
    owner[pos:] = [last] * (len(text) - pos)
    return owner


def _word_ids(
    text: str, words: Sequence[str] | None, offsets: Sequence[tuple[int, int]], special: Sequence[int]
) -> list[int]:
    """Per token: the index of the word it belongs to, -1 for special tokens.

    With gold `words` the index is the word holding the token's first character. Without them (or when they do not
    match the text) every token is its own word, except that a token continuing a Latin letter/digit run (an English
    word split into pieces, a number split into digits) joins the previous token's word, a lone space token `▁`
    joins the word after it, and tokens produced from one character (NFKC expansions such as ㎡ -> m 2) share it.
    """
    owner = _char_to_word(text, words) if words else None
    ids: list[int] = []
    current = -1
    prev_end = -1
    prev_blank = False
    for (start, end), is_special in zip(offsets, special, strict=True):
        if is_special:
            ids.append(-1)
            prev_end, prev_blank = -1, False
            continue
        if owner is not None:
            ids.append(owner[min(start, len(owner) - 1)])
            continue
        overlaps = start < prev_end  # several tokens from one character
        joins = start == prev_end > 0 and start < len(text)
        after_space = joins and prev_blank  # a lone `▁` token belongs to the word after it
        latin_run = joins and _is_latin_alnum(text[start - 1]) and _is_latin_alnum(text[start])
        if not (overlaps or after_space or latin_run):
            current += 1
        ids.append(current)
        prev_blank = not text[start:end].strip()
        prev_end = max(prev_end, end)
    return ids


def tokenize_for_encoder(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    text_column: str = "text",
    words_column: str | None = "words",
) -> Dataset:
    """Tokenise text for masked-LM / RTD pre-training (encoder template, truncated to `max_length`, unpadded).

    Columns: ``input_ids``, ``attention_mask``, ``special_tokens_mask`` (so the collator never masks [CLS]/[SEP]),
    ``token_type_ids`` when the tokenizer returns them, and ``word_ids`` for whole-word masking. ``word_ids`` maps
    each token to the gold word of `words_column` it falls in (matched by character offsets), -1 for special
    tokens; rows without gold words (or without a words column) get one word per token, Latin words and numbers
    kept together (see `_word_ids`), so the column exists for every row and whole-word masking works on any text.
    All other columns are dropped.
    """
    _check_text_column(dataset, text_column)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenize_for_encoder needs a fast tokenizer (it reads character offsets)")
    use_words = words_column is not None and words_column in (dataset.column_names or [])

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = batch[text_column]
        enc = tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
            return_offsets_mapping=True,
        )
        offsets = enc.pop("offset_mapping")
        words = batch[words_column] if use_words else [None] * len(texts)
        out = {key: enc[key] for key in enc.keys()}
        out["word_ids"] = [
            _word_ids(text, w, offs, special)
            for text, w, offs, special in zip(texts, words, offsets, enc["special_tokens_mask"], strict=True)
        ]
        return out

    return _map(dataset, encode, "Tokenising (encoder)")


def tokenize_for_denoising(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, text_column: str = "text"
) -> Dataset:
    """Tokenise text for BART-style denoising: only ``input_ids`` (encoder template, truncated, unpadded); the
    collator corrupts them and keeps the original as the target."""
    _check_text_column(dataset, text_column)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return {"input_ids": tokenizer(batch[text_column], truncation=True, max_length=max_length)["input_ids"]}

    return _map(dataset, encode, "Tokenising (denoising)")


def pack_for_causal_lm(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, block_size: int, text_column: str = "text"
) -> Dataset:
    """Pack documents into `block_size` blocks for causal LM, as run_clm's ``group_texts`` does.

    Each document becomes ``[BOS] tokens [EOS]``; the documents are concatenated in order and cut into full blocks.
    Unlike run_clm, which drops a remainder per `map` batch of 1,000 rows, the stream is cut once, so only the final
    partial block (< `block_size` tokens) is dropped and the blocks, concatenated, are exactly a prefix of the stream.
    Columns: ``input_ids``, ``attention_mask`` (all ones: a block holds no padding).
    """
    _check_text_column(dataset, text_column)
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError("pack_for_causal_lm needs a tokenizer with bos_token and eos_token")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        # verbose=False: documents longer than model_max_length are fine here, they are cut into blocks.
        ids = tokenizer(batch[text_column], add_special_tokens=False, verbose=False)["input_ids"]
        return {"input_ids": [[bos, *row, eos] for row in ids]}

    if isinstance(dataset, IterableDataset):
        # a streamed corpus is packed lazily, batch by batch (a remainder per batch is dropped, as run_clm does)
        def pack(batch: dict[str, list]) -> dict[str, list]:
            flat = [t for row in encode(batch)["input_ids"] for t in row]
            blocks = [flat[i : i + block_size] for i in range(0, len(flat) - block_size + 1, block_size)]
            return {"input_ids": blocks, "attention_mask": [[1] * block_size for _ in blocks]}

        return _map(dataset, pack, "Packing (causal)")
    tokenized = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenising (causal)")
    if len(tokenized) == 0:
        raise ValueError("pack_for_causal_lm got an empty dataset")
    # Flatten through Arrow (it respects any select/shuffle indices): no per-token Python objects.
    column = tokenized.with_format("arrow")[:]["input_ids"]
    stream = pc.list_flatten(column).to_numpy()
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise ValueError(
            f"the text holds {len(stream)} tokens (with [BOS]/[EOS]), fewer than one block of {block_size}; "
            "use more text or a smaller block size"
        )
    blocks = stream[: n_blocks * block_size].reshape(n_blocks, block_size).tolist()
    return Dataset.from_dict({"input_ids": blocks, "attention_mask": [[1] * block_size for _ in range(n_blocks)]})
