"""Pre-training objectives: dataset preparation, batch collators and a registry for the training runner.

Four objectives, each a `(model class, data, collator)` triple that plugs into `transformers.Trainer`:

* ``"mlm"``  masked LM (`SoraForMaskedLM`), token-level masking by transformers' `DataCollatorForLanguageModeling`
  or Chinese whole-word masking driven by gold word boundaries (`MaskedLMCollator`);
* ``"rtd"``  ELECTRA replaced-token detection (`SoraForPreTraining`): the same masked batches as ``"mlm"``, the
  model's small generator fills the masks and the discriminator spots the replacements;
* ``"denoising"``  BART text infilling (`SoraForSeq2SeqLM`, `DenoisingCollator`);
* ``"clm"``  causal LM on packed blocks (`SoraForCausalLM`, transformers' collator with ``mlm=False``).

Training batches are corrupted afresh each time (dynamic masking). Evaluation sets are corrupted once, up front, by
`freeze_corruption`, each row with a generator seeded from the seed and the row's own token ids: held-out metrics
then see the same masks in every evaluation pass and every run, whatever the eval batch size or row order, and it
works with a plain `Trainer`, which uses one `data_collator` for training and evaluation alike (the collators pass
already-corrupted rows, recognised by their ``labels``, through with padding only).

Note for `Trainer`: keep ``remove_unused_columns=False`` for whole-word masking. The encoder datasets carry
``word_ids`` and ``special_tokens_mask``, which the collators need and the model's ``forward`` does not take, so
`Trainer`'s default would drop them before the collator sees them. The prepared datasets hold no other columns.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, IterableDataset
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from .modeling_sora import SoraForCausalLM, SoraForMaskedLM, SoraForPreTraining, SoraForSeq2SeqLM
from .reporting import safe_exp
from .tokenizer import HAN_PATTERN
from .validation.choices import OBJECTIVES

logger = logging.getLogger(__name__)


__all__ = [
    "evaluate_pretraining",
    "OBJECTIVES",
    "MAX_SENSIBLE_LENGTH",
    "MIN_LENGTH",
    "PreparedObjective",
    "MaskedLMCollator",
    "DenoisingCollator",
    "causal_lm_collator",
    "freeze_corruption",
    "tokenize_for_encoder",
    "tokenize_for_denoising",
    "pack_for_causal_lm",
    "prepare_objective",
    "tokenizer_template_for",
]

_MODEL_CLASSES: dict[str, type] = {
    "mlm": SoraForMaskedLM,
    "rtd": SoraForPreTraining,
    "denoising": SoraForSeq2SeqLM,
    "clm": SoraForCausalLM,
}
# Shorter sequences leave almost nothing to mask once [CLS]/[SEP] are in; longer ones than this are a typo.
MIN_LENGTH = 8
MAX_SENSIBLE_LENGTH = 65536

# Model inputs the collators keep, and what each is padded with (None: the tokenizer's pad id / pad type id).
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_HAN_RE = re.compile(HAN_PATTERN)


# ---------------------------------------------------------------------------------------------------------------------
# Dataset preparation
# ---------------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------------
# Collators
# ---------------------------------------------------------------------------------------------------------------------


def _mix_seed(seed: int, *parts: int | bytes) -> int:
    """A 63-bit seed from `seed` and extra parts, stable across processes and Python versions."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(int(seed).to_bytes(16, "little", signed=True))
    for part in parts:
        digest.update(part if isinstance(part, bytes) else int(part).to_bytes(16, "little", signed=True))
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def _row_generator(seed: int, input_ids: Sequence[int]) -> torch.Generator:
    """A generator seeded by `seed` and the row's token ids, so a row is corrupted the same way wherever it is."""
    return torch.Generator().manual_seed(_mix_seed(seed, np.asarray(input_ids, dtype=np.int64).tobytes()))


def _stochastic_round(value: float, generator: torch.Generator | None) -> int:
    """floor(value) plus one with probability frac(value): unbiased, so rates hold on short sequences too."""
    whole = math.floor(value)
    if value > whole and torch.rand((), generator=generator).item() < value - whole:
        whole += 1
    return whole


def _pad(
    features: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    pad_values: Mapping[str, int],
    padding_side: str = "right",
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """Stack the `keys` present in the features into padded long tensors (attention_mask derived if absent).

    Each key is padded to its own longest row: seq2seq ``labels`` may be longer than the corrupted ``input_ids``."""
    batch: dict[str, torch.Tensor] = {}
    for key in keys:
        if key == "attention_mask" and key not in features[0]:
            rows: list[Sequence[int]] = [[1] * len(f["input_ids"]) for f in features]
        elif key in features[0]:
            rows = [f[key] for f in features]
        else:
            continue
        width = max((len(row) for row in rows), default=0)
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        out = torch.full((len(features), width), pad_values[key], dtype=torch.long)
        for i, row in enumerate(rows):
            if len(row):
                values = torch.as_tensor(row, dtype=torch.long)
                if padding_side == "left":
                    out[i, width - len(row) :] = values
                else:
                    out[i, : len(row)] = values
        batch[key] = out
    return batch


class _CorruptingCollator:
    """Shared parts: seeded RNG, padding, pass-through of rows already corrupted by `freeze_corruption`."""

    tokenizer: PreTrainedTokenizerBase
    pad_to_multiple_of: int | None

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None, seed: int | None) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer with a pad token")
        if tokenizer.mask_token_id is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer with a mask token")
        self.tokenizer = tokenizer
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self._pad_values = {
            "input_ids": tokenizer.pad_token_id,
            "attention_mask": 0,
            "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
            "special_tokens_mask": 1,
            "word_ids": -1,
            "labels": -100,
        }

    def _pad(self, features: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, torch.Tensor]:
        side = getattr(self.tokenizer, "padding_side", "right")
        return _pad(features, keys, self._pad_values, side, self.pad_to_multiple_of)

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate a batch: corrupt it, or only pad it when its rows already carry ``labels`` (frozen eval rows)."""
        if not features:
            raise ValueError(f"{type(self).__name__} got an empty batch")
        if all("labels" in f for f in features):
            return self._pad(features, (*_MODEL_KEYS, "labels"))
        return self.collate(features, self._batch_generator(features))

    def _batch_generator(self, features: Sequence[Mapping[str, Any]]) -> torch.Generator | None:
        """A generator seeded by the seed and the batch's token ids (None without a seed: the global RNG).

        Seeding by content rather than by a running generator makes a batch's corruption independent of what came
        before it: a run resumed from a checkpoint (which skips the batches it already saw without collating them)
        masks every later batch exactly as the uninterrupted run did, and DataLoader workers need no seed juggling.
        Shuffling puts different rows together every epoch, so masks still change between epochs (dynamic masking).
        """
        if self.seed is None:
            return None
        digest = hashlib.blake2b(digest_size=16)
        for feature in features:
            ids = np.asarray(feature["input_ids"], dtype=np.int64)
            digest.update(len(ids).to_bytes(4, "little"))
            digest.update(ids.tobytes())
        return torch.Generator().manual_seed(_mix_seed(self.seed, digest.digest()))

    def collate(
        self, features: Sequence[Mapping[str, Any]], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def corrupt_example(self, feature: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, list[int]]:
        """One row corrupted once, unpadded: the model inputs and ``labels`` (used by `freeze_corruption`)."""
        raise NotImplementedError


class MaskedLMCollator(_CorruptingCollator):
    """Masked-LM batches (``input_ids`` with masks, ``attention_mask``, ``token_type_ids`` if given, ``labels`` =
    original ids at the masked positions and -100 elsewhere), for `SoraForMaskedLM` and `SoraForPreTraining`.

    Token-level masking is transformers' `DataCollatorForLanguageModeling`, used as is. Its own ``whole_word_mask``
    finds words from character offsets, which turns an unspaced Chinese sentence into one "word", so whole-word
    masking here uses the ``word_ids`` feature of `tokenize_for_encoder` instead (gold People's Daily words): words
    are drawn in random order until `mlm_probability` of the maskable tokens are covered (the BERT / Chinese-BERT-wwm
    recipe), every token of a drawn word is masked, and each masked token is replaced by [MASK]
    (`mask_replace_prob`), a random non-special token (`random_replace_prob`) or kept. Special tokens and padding
    are never masked. ``word_ids`` and ``special_tokens_mask`` never reach the model.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        pad_to_multiple_of: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(tokenizer, pad_to_multiple_of, seed)
        if not 0.0 <= mlm_probability <= 1.0:
            raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
        if not (0.0 <= mask_replace_prob <= 1.0 and 0.0 <= random_replace_prob <= 1.0):
            raise ValueError("mask_replace_prob and random_replace_prob must be in [0, 1]")
        if mask_replace_prob + random_replace_prob > 1.0:
            raise ValueError("mask_replace_prob + random_replace_prob must not exceed 1")
        self.mlm_probability = float(mlm_probability)
        self.whole_word_mask = whole_word_mask
        self.mask_replace_prob = float(mask_replace_prob)
        self.random_replace_prob = float(random_replace_prob)
        # The token-level path; its RNG is ours (set per call), so seeding and worker handling are in one place.
        self._token_collator = DataCollatorForLanguageModeling(
            tokenizer,
            mlm=True,
            mlm_probability=self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            pad_to_multiple_of=pad_to_multiple_of,
            return_tensors="pt",
        )
        special = set(tokenizer.all_special_ids)
        self._random_ids = torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)

    def collate(
        self, features: Sequence[Mapping[str, Any]], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """Mask a batch of tokenised rows with `generator` (None: the global RNG)."""
        if not self.whole_word_mask:
            keep = (*_MODEL_KEYS, "special_tokens_mask")
            stripped = [{k: f[k] for k in keep if k in f} for f in features]
            self._token_collator.generator = generator
            try:
                return dict(self._token_collator(stripped))
            finally:
                self._token_collator.generator = None  # keep the collator picklable for DataLoader workers
        if any("word_ids" not in f for f in features):
            raise ValueError(
                "whole_word_mask=True needs a 'word_ids' feature (from tokenize_for_encoder); with Trainer, set "
                "TrainingArguments(remove_unused_columns=False) so it is not dropped before the collator"
            )
        return self._whole_word_collate(features, generator)

    def _whole_word_collate(
        self, features: Sequence[Mapping[str, Any]], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        batch = self._pad(features, (*_MODEL_KEYS, "special_tokens_mask", "word_ids"))
        special = batch.pop("special_tokens_mask", None)
        word_ids = batch.pop("word_ids")
        input_ids = batch["input_ids"]
        if special is None:
            protected = torch.tensor(self.tokenizer.all_special_ids, dtype=torch.long)
            special = torch.isin(input_ids, protected).long()
        maskable = (special == 0) & (word_ids >= 0) & (batch["attention_mask"] == 1)
        masked = torch.zeros_like(maskable)
        for row in range(input_ids.shape[0]):
            positions = maskable[row].nonzero().squeeze(1)
            if positions.numel() == 0:
                continue
            words, token_word = torch.unique(word_ids[row, positions], return_inverse=True)
            sizes = torch.bincount(token_word, minlength=len(words)).tolist()
            budget = _stochastic_round(positions.numel() * self.mlm_probability, generator)
            covered = 0
            chosen = torch.zeros(len(words), dtype=torch.bool)
            for w in torch.randperm(len(words), generator=generator).tolist():
                if covered >= budget:
                    break
                if covered + sizes[w] > budget:
                    continue  # a word that would overshoot is skipped, as in BERT's create_pretraining_data
                chosen[w] = True
                covered += sizes[w]
            masked[row, positions[chosen[token_word]]] = True

        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        draw = torch.rand(input_ids.shape, generator=generator)
        to_mask = masked & (draw < self.mask_replace_prob)
        to_random = masked & ~to_mask & (draw < self.mask_replace_prob + self.random_replace_prob)
        corrupted = input_ids.masked_fill(to_mask, self.tokenizer.mask_token_id)
        picks = torch.randint(len(self._random_ids), input_ids.shape, generator=generator)
        corrupted = torch.where(to_random, self._random_ids[picks], corrupted)
        batch["input_ids"] = corrupted
        batch["labels"] = labels
        return batch

    def corrupt_example(self, feature: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, list[int]]:
        batch = self.collate([feature], generator)
        keep = batch["attention_mask"][0].bool()
        return {key: value[0][keep].tolist() for key, value in batch.items()}


class DenoisingCollator(_CorruptingCollator):
    """BART text infilling for `SoraForSeq2SeqLM`: spans of the input are each replaced by ONE [MASK] and the
    decoder reconstructs the original.

    Per row, ``round(noise_density * n)`` of the n non-special tokens (stochastically rounded) are covered by spans
    whose lengths are drawn from Poisson(`mean_span_length`), at least 1 (the last one cut to fit); spans never
    touch (at least one kept token between two), so each [MASK] stands for exactly one span. Special tokens
    ([CLS]/[SEP]) stay; [UNK] can be masked. Returns ``input_ids`` and ``attention_mask`` (the corrupted encoder
    input, padded) and ``labels`` = the original row (padded with -100), from which the model derives the decoder
    input by shifting right with ``decoder_start_token_id``.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        noise_density: float = 0.3,
        mean_span_length: float = 3.0,
        pad_to_multiple_of: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(tokenizer, pad_to_multiple_of, seed)
        if not 0.0 <= noise_density < 1.0:
            raise ValueError(f"noise_density must be in [0, 1), got {noise_density}")
        if mean_span_length < 1.0:
            raise ValueError(f"mean_span_length must be at least 1, got {mean_span_length}")
        self.noise_density = float(noise_density)
        self.mean_span_length = float(mean_span_length)
        self._protected = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}

    def sample_spans(self, num_tokens: int, generator: torch.Generator | None) -> list[tuple[int, int]]:
        """(start, length) of the noise spans over `num_tokens` maskable tokens, in order, separated by >= 1 token."""
        num_noise = min(_stochastic_round(num_tokens * self.noise_density, generator), num_tokens)
        if num_noise == 0:
            return []
        lengths: list[int] = []
        total = 0
        while total < num_noise:
            draws = torch.poisson(
                torch.full((math.ceil(num_noise / self.mean_span_length) + 1,), self.mean_span_length),
                generator=generator,
            )
            for value in draws.long().tolist():
                length = min(max(1, value), num_noise - total)
                lengths.append(length)
                total += length
                if total == num_noise:
                    break
        # Spans need a kept token between them: with too few kept tokens, merge the last spans.
        max_spans = num_tokens - num_noise + 1
        while len(lengths) > max_spans:
            last = lengths.pop()
            lengths[-1] += last
        n_spans = len(lengths)
        # Kept tokens: n_spans + 1 gaps, inner ones >= 1; the spare ones spread uniformly (stars and bars).
        spare = num_tokens - num_noise - (n_spans - 1)
        bars = sorted(torch.randperm(spare + n_spans, generator=generator)[:n_spans].tolist())
        gaps = [bars[0]] + [bars[i] - bars[i - 1] - 1 for i in range(1, n_spans)]
        spans: list[tuple[int, int]] = []
        pos = 0
        for i, length in enumerate(lengths):
            pos += gaps[i] + (1 if i > 0 else 0)
            spans.append((pos, length))
            pos += length
        return spans

    def _corrupt(self, input_ids: Sequence[int], generator: torch.Generator | None) -> list[int]:
        ids = list(input_ids)
        maskable = [i for i, tok in enumerate(ids) if tok not in self._protected]
        drop: set[int] = set()
        starts: set[int] = set()
        for start, length in self.sample_spans(len(maskable), generator):
            positions = maskable[start : start + length]
            starts.add(positions[0])
            drop.update(positions[1:])
        mask_id = self.tokenizer.mask_token_id
        return [mask_id if i in starts else tok for i, tok in enumerate(ids) if i not in drop]

    def collate(
        self, features: Sequence[Mapping[str, Any]], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """Corrupt and pad a batch of rows (``input_ids`` only is read) with `generator` (None: the global RNG)."""
        rows = [{"input_ids": self._corrupt(f["input_ids"], generator)} for f in features]
        batch = self._pad(rows, ("input_ids", "attention_mask"))
        targets = [{"input_ids": f["input_ids"], "labels": f["input_ids"]} for f in features]
        batch["labels"] = self._pad(targets, ("labels",))["labels"]
        return batch

    def corrupt_example(self, feature: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, list[int]]:
        corrupted = self._corrupt(feature["input_ids"], generator)
        return {"input_ids": corrupted, "attention_mask": [1] * len(corrupted), "labels": list(feature["input_ids"])}


def causal_lm_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForLanguageModeling:
    """transformers' causal-LM collator: labels = input_ids (the model shifts them), -100 at padding.

    It marks padding by ``input_ids == pad_token_id``; packed blocks hold no padding, so no real token is lost."""
    return DataCollatorForLanguageModeling(tokenizer, mlm=False)


def freeze_corruption(dataset: Dataset, collator: _CorruptingCollator, seed: int = 0) -> Dataset:
    """Corrupt every row once, reproducibly, for evaluation: rows get model inputs + ``labels``, unpadded.

    Each row's generator is seeded from `seed` and the row's token ids, so the result does not depend on row order,
    batching or anything run before; the collator pads such rows without corrupting them again.
    """

    def corrupt(batch: dict[str, list]) -> dict[str, list]:
        names = list(batch)
        out: dict[str, list] = {}
        for i in range(len(batch[names[0]])):
            row = {name: batch[name][i] for name in names}
            example = collator.corrupt_example(row, _row_generator(seed, row["input_ids"]))
            for key, value in example.items():
                out.setdefault(key, []).append(value)
        return out

    return dataset.map(corrupt, batched=True, remove_columns=dataset.column_names, desc="Fixing eval corruption")


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedObjective:
    """Everything `Trainer` needs for one objective (train with ``remove_unused_columns=False``)."""

    model_class: type
    train_dataset: Dataset
    eval_dataset: Dataset | None
    collator: Callable
    tokenizer_template: str


def _check_objective(name: str) -> None:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown pre-training objective {name!r}; valid objectives: {', '.join(OBJECTIVES)}")


def tokenizer_template_for(name: str) -> str:
    """The tokenizer template an objective expects: "decoder" ([BOS] ...) for clm, "encoder" ([CLS] ... [SEP])
    otherwise."""
    _check_objective(name)
    return "decoder" if name == "clm" else "encoder"


def _tokenizer_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Which template the tokenizer's post-processor applies, judged from the first id of an encoded text."""
    first = tokenizer("a")["input_ids"][:1]
    if first == [tokenizer.cls_token_id]:
        return "encoder"
    if first == [tokenizer.bos_token_id]:
        return "decoder"
    return None


def prepare_objective(
    name: str,
    train_texts: Dataset,
    eval_texts: Dataset | None,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    mlm_probability: float = 0.15,
    whole_word_mask: bool = False,
    noise_density: float = 0.3,
    mean_span_length: float = 3.0,
    seed: int = 42,
) -> PreparedObjective:
    """Tokenise/pack the text datasets (column ``text``, optional ``words``) for objective `name` and build its
    collator. For clm `max_length` is the block size. The eval set, if given, is corrupted once with a fixed seed
    (`freeze_corruption`) so its metrics compare across evaluations and runs; the training collator is seeded with
    `seed`."""
    _check_objective(name)
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ValueError(f"max_length must be an integer, got {max_length!r}")
    limit = min(
        MAX_SENSIBLE_LENGTH, getattr(tokenizer, "model_max_length", MAX_SENSIBLE_LENGTH) or MAX_SENSIBLE_LENGTH
    )
    if not MIN_LENGTH <= max_length <= limit:
        raise ValueError(
            f"max_length must be between {MIN_LENGTH} and {limit} (the tokenizer's model_max_length, at most "
            f"{MAX_SENSIBLE_LENGTH}), got {max_length}"
        )
    template = tokenizer_template_for(name)
    actual = _tokenizer_template(tokenizer)
    if actual is not None and actual != template:
        logger.warning(
            "objective %r expects a tokenizer with the %r template but this one applies %r; train one with "
            "train_tokenizer(..., template=%r)",
            name,
            template,
            actual,
            template,
        )

    model_class = _MODEL_CLASSES[name]
    if name in ("mlm", "rtd"):
        collator: Callable = MaskedLMCollator(
            tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word_mask, seed=seed
        )
        tokenize: Callable = tokenize_for_encoder
    elif name == "denoising":
        collator = DenoisingCollator(
            tokenizer, noise_density=noise_density, mean_span_length=mean_span_length, seed=seed
        )
        tokenize = tokenize_for_denoising
    else:
        collator, tokenize = causal_lm_collator(tokenizer), pack_for_causal_lm
    train = tokenize(train_texts, tokenizer, max_length)
    evaluation = None if eval_texts is None else tokenize(eval_texts, tokenizer, max_length)
    if evaluation is not None and name != "clm":  # the held-out split is corrupted once, the same every evaluation
        evaluation = freeze_corruption(evaluation, collator, seed)
    return PreparedObjective(
        model_class=model_class,
        train_dataset=train,
        eval_dataset=evaluation,
        collator=collator,
        tokenizer_template=template,
    )


# ---------------------------------------------------------------------------------------------------------------
# held-out evaluation


@torch.no_grad()
def evaluate_pretraining(model, objective: str, dataset: Dataset, collator, batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics of each objective, token-weighted over the whole split (not averaged over batches).

    mlm / denoising / clm: accuracy and perplexity of the predicted tokens; rtd: the discriminator's accuracy on
    every real token plus the generator's masked-token accuracy and perplexity.
    """
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(0)  # the RTD generator samples: make the held-out number repeatable
    total_loss = correct = count = 0.0
    disc_correct = disc_count = replaced = 0.0
    for start in range(0, len(dataset), batch_size):
        features = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: v.to(device) for k, v in collator(features).items()}
        out = model(**batch)
        if objective == "rtd":
            logits, labels = out.generator_logits, batch["labels"]
            mask = batch["attention_mask"].bool()
            disc_correct += ((out.logits > 0).long() == out.replaced_labels)[mask].sum().item()
            disc_count += mask.sum().item()
            replaced += out.replaced_labels[mask].sum().item()
        else:
            logits, labels = out.logits, batch["labels"]
        if objective == "clm":
            logits, labels = logits[:, :-1], labels[:, 1:]
        keep = labels != -100
        flat_labels = labels[keep]
        # with config.sparse_prediction the logits already hold only the labelled positions
        flat_logits = (logits if logits.dim() == 2 else logits[keep]).float()
        total_loss += torch.nn.functional.cross_entropy(flat_logits, flat_labels, reduction="sum").item()
        correct += (flat_logits.argmax(-1) == flat_labels).sum().item()
        count += keep.sum().item()
    loss = total_loss / max(count, 1)
    prefix = "generator_" if objective == "rtd" else ""
    name = {"mlm": "masked_token", "rtd": "masked_token", "clm": "next_token", "denoising": "target_token"}[objective]
    metrics = {
        f"eval_{prefix}{name}_accuracy": correct / max(count, 1),
        f"eval_{prefix}perplexity": safe_exp(loss),
        f"eval_{prefix}loss": loss,
        "eval_predicted_tokens": int(count),
    }
    if objective == "rtd":
        metrics["eval_discriminator_accuracy"] = disc_correct / max(disc_count, 1)
        metrics["eval_replaced_fraction"] = replaced / max(disc_count, 1)
    return metrics
