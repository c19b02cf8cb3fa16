"""The collators of the pre-training objectives: masked LM (token-level or Chinese whole-word masking), BART
text infilling, causal LM, and `freeze_corruption`, which corrupts a held-out split once so that its metrics compare
across evaluations and runs."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

# Model inputs the collators keep, and what each is padded with (None: the tokenizer's pad id / pad type id).
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


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
