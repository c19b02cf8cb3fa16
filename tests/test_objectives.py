"""Pre-training objectives: tokenisation/packing, MLM / whole-word / denoising / causal collators, the registry."""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest
import torch
from datasets import Dataset

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForPreTraining,
    SoraForSeq2SeqLM,
)
from sora_hf.pretraining import (
    OBJECTIVES,
    DenoisingCollator,
    MaskedLMCollator,
    causal_lm_collator,
    freeze_corruption,
    pack_for_causal_lm,
    prepare_objective,
    tokenize_for_denoising,
    tokenize_for_encoder,
    tokenizer_template_for,
)
from sora_hf.tokenizer import train_tokenizer

CLS, SEP, PAD, MASK, BOS, EOS = 2, 3, 0, 4, 5, 6
MAX_LEN = 64


@pytest.fixture(scope="module")
def corpus() -> Dataset:
    """300 People's Daily sentences (with gold words) then 100 reviews (words None)."""
    from sora_hf.data import load_pretraining_text

    full = load_pretraining_text("all")
    n_pd = sum(1 for _ in itertools.takewhile(lambda s: s == "peoples_daily", full["source"]))
    return full.select([*range(300), *range(n_pd, n_pd + 100)])


@pytest.fixture(scope="module")
def enc_tok(corpus: Dataset):
    return train_tokenizer(list(corpus["text"]), vocab_size=300, template="encoder")


@pytest.fixture(scope="module")
def dec_tok(corpus: Dataset):
    return train_tokenizer(list(corpus["text"]), vocab_size=300, template="decoder")


@pytest.fixture(scope="module")
def encoded(corpus: Dataset, enc_tok) -> Dataset:
    return tokenize_for_encoder(corpus, enc_tok, MAX_LEN)


def _padded(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows])


# ---------------------------------------------------------------------------------------------------------------------
# Dataset preparation
# ---------------------------------------------------------------------------------------------------------------------


def test_tokenize_for_encoder_columns_and_truncation(encoded: Dataset, corpus: Dataset, enc_tok) -> None:
    assert set(encoded.column_names) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "special_tokens_mask",
        "word_ids",
    }
    assert len(encoded) == len(corpus)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    assert max(lengths) == MAX_LEN  # some rows were truncated ...
    for row in encoded:
        n = len(row["input_ids"])
        assert n <= MAX_LEN and row["input_ids"][0] == CLS and row["input_ids"][-1] == SEP  # ... keeping [SEP]
        assert len(row["attention_mask"]) == len(row["special_tokens_mask"]) == len(row["word_ids"]) == n
        assert row["special_tokens_mask"] == [1] + [0] * (n - 2) + [1]
        assert row["word_ids"][0] == row["word_ids"][-1] == -1 and min(row["word_ids"][1:-1]) >= 0


def test_word_ids_follow_gold_words(encoded: Dataset, corpus: Dataset, enc_tok) -> None:
    """Grouping a row's tokens by word id gives back the gold words (NFKC-normalised, as the tokenizer sees them)."""
    truncated = 0
    for row, source in zip(encoded.select(range(300)), corpus.select(range(300)), strict=True):
        tokens = enc_tok.convert_ids_to_tokens(row["input_ids"])
        by_word: dict[int, str] = {}
        for token, wid in zip(tokens, row["word_ids"], strict=True):
            if wid >= 0:
                by_word[wid] = by_word.get(wid, "") + token
        words = [unicodedata.normalize("NFKC", w) for w in source["words"]]
        assert sorted(by_word) == list(range(len(by_word)))
        got = [by_word[i] for i in range(len(by_word))]
        if len(row["input_ids"]) < MAX_LEN:
            assert got == words
        else:  # truncated: a prefix of the words, the last one possibly cut
            truncated += 1
            assert got[:-1] == words[: len(got) - 1] and words[len(got) - 1].startswith(got[-1])
    assert 50 < truncated < 250


def test_word_ids_without_gold_words(enc_tok) -> None:
    """Reviews (words None), rows whose words do not match the text, and a missing words column: every token is its
    own word except the pieces of one Latin word or number."""
    texts = ["好看的书", "Hello world 1998年", "再度腾飞"]
    ds = Dataset.from_dict({"text": texts, "words": [None, None, ["不", "对"]]})
    rows = tokenize_for_encoder(ds, enc_tok, MAX_LEN)
    assert rows[0]["word_ids"] == [-1, 0, 1, 2, 3, -1]
    assert rows[2]["word_ids"] == [-1, 0, 1, 2, 3, -1]
    tokens = enc_tok.convert_ids_to_tokens(rows[1]["input_ids"])
    groups: dict[int, str] = {}
    for token, wid in zip(tokens, rows[1]["word_ids"], strict=True):
        if wid >= 0:
            groups[wid] = groups.get(wid, "") + token
    assert list(groups.values()) == ["Hello", "▁world", "▁1998", "年"]
    no_words = tokenize_for_encoder(Dataset.from_dict({"text": texts}), enc_tok, MAX_LEN)
    assert no_words["word_ids"] == rows["word_ids"]


def test_tokenize_for_denoising(corpus: Dataset, enc_tok) -> None:
    ds = tokenize_for_denoising(corpus.select(range(20)), enc_tok, 16)
    assert ds.column_names == ["input_ids"]
    assert all(len(ids) <= 16 and ids[0] == CLS and ids[-1] == SEP for ids in ds["input_ids"])


def test_pack_for_causal_lm(corpus: Dataset, dec_tok) -> None:
    docs = corpus.select(range(40))
    block = 32
    packed = pack_for_causal_lm(docs, dec_tok, block)
    assert packed.column_names == ["input_ids", "attention_mask"]
    stream = [
        tok
        for text in docs["text"]
        for tok in [BOS, *dec_tok(text, add_special_tokens=False)["input_ids"], EOS]  # built independently here
    ]
    blocks = packed["input_ids"]
    assert all(len(b) == block for b in blocks)
    assert all(m == [1] * block for m in packed["attention_mask"])
    flat = [tok for b in blocks for tok in b]
    assert flat == stream[: len(flat)]
    assert 0 <= len(stream) - len(flat) < block  # only the final partial block is dropped
    # each document is [BOS] ... [EOS]: the [EOS] ids sit exactly at the document ends, each followed by [BOS]
    doc_ends = list(
        itertools.accumulate(len(dec_tok(t, add_special_tokens=False)["input_ids"]) + 2 for t in docs["text"])
    )
    eos_at = [i for i, tok in enumerate(flat) if tok == EOS]
    assert eos_at == [end - 1 for end in doc_ends if end <= len(flat)] and len(eos_at) >= 30
    assert flat[0] == BOS and all(flat[i + 1] == BOS for i in eos_at if i + 1 < len(flat))


def test_pack_for_causal_lm_needs_one_block(dec_tok) -> None:
    with pytest.raises(ValueError, match="fewer than one block"):
        pack_for_causal_lm(Dataset.from_dict({"text": ["短"]}), dec_tok, 64)
    with pytest.raises(ValueError, match="no column"):
        pack_for_causal_lm(Dataset.from_dict({"body": ["短"]}), dec_tok, 64)


# ---------------------------------------------------------------------------------------------------------------------
# Masked LM
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("whole_word_mask", [False, True])
def test_mlm_masking_rate_and_labels(encoded: Dataset, enc_tok, whole_word_mask: bool) -> None:
    rows = [encoded[i] for i in range(len(encoded))]
    batch = MaskedLMCollator(enc_tok, whole_word_mask=whole_word_mask, seed=1)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}  # no word_ids / special mask
    original = _padded([r["input_ids"] for r in rows], PAD)
    special = _padded([r["special_tokens_mask"] for r in rows], 1).bool()
    assert batch["input_ids"].shape == original.shape
    assert torch.equal(batch["attention_mask"], _padded([r["attention_mask"] for r in rows], 0))

    masked = batch["labels"] != -100
    maskable = ~special
    assert maskable.sum() > 5000
    rate = (masked.sum() / maskable.sum()).item()
    assert 0.12 <= rate <= 0.18, rate
    assert not (masked & special).any()  # never [CLS] / [SEP] / padding
    assert torch.equal(batch["labels"][masked], original[masked])  # labels are the original ids exactly there
    assert torch.equal(batch["input_ids"][~masked], original[~masked])  # nothing else changes
    replaced = batch["input_ids"][masked]
    as_mask = (replaced == MASK).float().mean().item()
    kept = (replaced == original[masked]).float().mean().item()
    assert 0.72 <= as_mask <= 0.88 and 0.03 <= kept <= 0.18, (as_mask, kept)


def _word_groups(row: dict) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for pos, wid in enumerate(row["word_ids"]):
        if wid >= 0:
            groups.setdefault(wid, []).append(pos)
    return groups


def test_whole_word_masking_masks_whole_words(encoded: Dataset, enc_tok) -> None:
    rows = [encoded[i] for i in range(300)]  # People's Daily rows: gold words
    wwm = MaskedLMCollator(enc_tok, whole_word_mask=True, seed=3)
    token_level = MaskedLMCollator(enc_tok, whole_word_mask=False, seed=3)
    split_words = 0
    multi_masked = 0
    for _ in range(3):
        masked_wwm = wwm(rows)["labels"] != -100
        masked_tok = token_level(rows)["labels"] != -100
        for i, row in enumerate(rows):
            for positions in _word_groups(row).values():
                flags = masked_wwm[i, positions]
                assert flags.all() or not flags.any()  # all or none of a word's tokens
                if len(positions) >= 2:
                    multi_masked += int(flags.all())
                    tok_flags = masked_tok[i, positions]
                    split_words += int(tok_flags.any() and not tok_flags.all())
    assert multi_masked > 300  # multi-character words do get masked, as units
    assert split_words > 100  # whereas token-level masking cuts words apart: the check above is not vacuous


def test_whole_word_masking_needs_word_ids(encoded: Dataset, enc_tok) -> None:
    rows = [{k: v for k, v in encoded[i].items() if k != "word_ids"} for i in range(4)]
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        MaskedLMCollator(enc_tok, whole_word_mask=True)(rows)
    MaskedLMCollator(enc_tok, whole_word_mask=False)(rows)  # token-level masking does not need them


def test_mlm_collator_pads_to_multiple(encoded: Dataset, enc_tok) -> None:
    rows = [encoded[i] for i in range(5)]
    for wwm in (False, True):
        batch = MaskedLMCollator(enc_tok, whole_word_mask=wwm, pad_to_multiple_of=16, seed=0)(rows)
        width = batch["input_ids"].shape[1]
        assert width % 16 == 0
        pad = batch["attention_mask"] == 0
        assert pad.any() and (batch["input_ids"][pad] == PAD).all() and (batch["labels"][pad] == -100).all()


@pytest.mark.parametrize("kwargs", [{"mlm_probability": 1.5}, {"mask_replace_prob": 0.8, "random_replace_prob": 0.3}])
def test_mlm_collator_rejects_bad_probabilities(enc_tok, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MaskedLMCollator(enc_tok, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlm", "wwm", "denoising"])
def test_seeded_collators_reproduce(encoded: Dataset, enc_tok, kind: str) -> None:
    rows = [{"input_ids": r["input_ids"]} for r in encoded] if kind == "denoising" else list(encoded)
    rows = rows[:64]

    def make(seed: int):
        if kind == "denoising":
            return DenoisingCollator(enc_tok, seed=seed)
        return MaskedLMCollator(enc_tok, whole_word_mask=kind == "wwm", seed=seed)

    a, b, c = make(7), make(7), make(8)
    first_a, second_a = a(rows), a(rows)
    first_b, second_b = b(rows), b(rows)
    for x, y in ((first_a, first_b), (second_a, second_b)):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    # corruption is seeded by the batch's content: the same batch is corrupted the same way (so a resumed run
    # reproduces), while the same rows grouped differently (a new epoch's shuffle) are corrupted differently
    assert torch.equal(first_a["input_ids"], second_a["input_ids"])
    regrouped = a(rows[32:] + rows[:32])
    assert not torch.equal(torch.cat([first_a["input_ids"][32:], first_a["input_ids"][:32]]), regrouped["input_ids"])
    assert not torch.equal(first_a["input_ids"], c(rows)["input_ids"])


# ---------------------------------------------------------------------------------------------------------------------
# Denoising
# ---------------------------------------------------------------------------------------------------------------------


def _matches_with_spans(corrupted: list[int], original: list[int]) -> bool:
    """Whether replacing each [MASK] of `corrupted` by one or more tokens can give `original`."""
    pattern = "".join("(?:\\d+,)+" if tok == MASK else f"{tok}," for tok in corrupted)
    return re.fullmatch(pattern, "".join(f"{tok}," for tok in original)) is not None


def test_denoising_text_infilling(corpus: Dataset, enc_tok) -> None:
    data = tokenize_for_denoising(corpus, enc_tok, MAX_LEN)
    rows = list(data)
    batch = DenoisingCollator(enc_tok, noise_density=0.3, mean_span_length=3.0, seed=5)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    noise = maskable = spans = 0
    for i, row in enumerate(rows):
        original = row["input_ids"]
        labels = batch["labels"][i].tolist()
        assert labels == original + [-100] * (len(labels) - len(original))  # the target is the original row
        n = int(batch["attention_mask"][i].sum())
        corrupted = batch["input_ids"][i, :n].tolist()
        assert (batch["input_ids"][i, n:] == PAD).all()
        assert corrupted[0] == CLS and corrupted[-1] == SEP
        n_masks = corrupted.count(MASK)
        assert all(not (a == b == MASK) for a, b in itertools.pairwise(corrupted))  # one [MASK] per span
        assert _matches_with_spans(corrupted, original)  # each [MASK] stands for >= 1 original tokens
        # every span of length L shortens the row by L - 1
        noise += len(original) - len(corrupted) + n_masks
        spans += n_masks
        maskable += len(original) - 2
    assert maskable > 5000
    assert 0.27 <= noise / maskable <= 0.33, noise / maskable
    assert 2.0 <= noise / spans <= 3.6, noise / spans  # Poisson(3) lengths, >= 1, the last one cut to fit


def test_denoising_span_sampler() -> None:
    from sora_hf.tokenizer import train_tokenizer

    tok = train_tokenizer(["abc"], vocab_size=50)
    gen = torch.Generator().manual_seed(0)
    for density, n in itertools.product((0.1, 0.3, 0.9), (1, 2, 5, 40)):
        spans = DenoisingCollator(tok, noise_density=density, mean_span_length=3.0).sample_spans(n, gen)
        covered = [p for start, length in spans for p in range(start, start + length)]
        assert all(length >= 1 for _, length in spans)
        assert covered == sorted(set(covered)) and all(0 <= p < n for p in covered)
        assert abs(len(covered) - density * n) < 1
        for (s1, l1), (s2, _) in itertools.pairwise(spans):
            assert s2 >= s1 + l1 + 1  # never adjacent


def test_causal_lm_collator(corpus: Dataset, dec_tok) -> None:
    packed = pack_for_causal_lm(corpus.select(range(20)), dec_tok, 16)
    batch = causal_lm_collator(dec_tok)(list(packed)[:4])
    assert torch.equal(batch["labels"], batch["input_ids"])  # packed blocks hold no padding: no label is lost
    assert batch["input_ids"].shape == (4, 16)


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

_EXPECTED = {
    "mlm": (SoraForMaskedLM, "encoder"),
    "rtd": (SoraForPreTraining, "encoder"),
    "denoising": (SoraForSeq2SeqLM, "encoder"),
    "clm": (SoraForCausalLM, "decoder"),
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_prepare_objective_trains_tiny_model(name: str, corpus: Dataset, enc_tok, dec_tok) -> None:
    tok = dec_tok if name == "clm" else enc_tok
    train, held_out = corpus.select(range(0, 400, 10)), corpus.select(range(5, 400, 20))
    prepared = prepare_objective(name, train, held_out, tok, 32, whole_word_mask=name == "mlm", seed=0)
    model_class, template = _EXPECTED[name]
    assert prepared.model_class is model_class
    assert prepared.tokenizer_template == template == tokenizer_template_for(name)
    assert prepared.eval_dataset is not None and len(prepared.eval_dataset) > 0

    torch.manual_seed(0)
    config = SoraConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        generator_hidden_size=16,
        generator_intermediate_size=32,
        generator_num_attention_heads=2,
    )
    model = model_class(config).eval()
    for dataset in (prepared.train_dataset, prepared.eval_dataset):
        batch = prepared.collator([dataset[i] for i in range(4)])
        assert "labels" in batch and batch["input_ids"].shape[1] <= 32
        with torch.no_grad():
            loss = model(**batch).loss
        assert loss is not None and torch.isfinite(loss), name


@pytest.mark.parametrize("name", ["mlm", "denoising"])
def test_eval_corruption_is_fixed(name: str, corpus: Dataset, enc_tok) -> None:
    held_out = corpus.select(range(0, 400, 25))
    first = prepare_objective(name, corpus.select(range(10)), held_out, enc_tok, 32, seed=1).eval_dataset
    again = prepare_objective(name, corpus.select(range(10, 20)), held_out, enc_tok, 32, seed=1).eval_dataset
    assert first[:] == again[:]  # same rows, same masks, whatever the training data
    assert any(MASK in ids for ids in first["input_ids"])
    # rows are corrupted by content, not position: reordering the eval set reorders the result only
    reversed_rows = prepare_objective(
        name, corpus.select(range(10)), held_out.select(range(len(held_out) - 1, -1, -1)), enc_tok, 32, seed=1
    ).eval_dataset
    assert reversed_rows["input_ids"][::-1] == first["input_ids"]
    # the collator pads frozen rows and does not corrupt them again
    prepared = prepare_objective(name, corpus.select(range(10)), held_out, enc_tok, 32, seed=1)
    rows = list(prepared.eval_dataset)
    x, y = prepared.collator(rows), prepared.collator(rows)
    assert all(torch.equal(x[k], y[k]) for k in x)
    assert x["input_ids"][0, : len(rows[0]["input_ids"])].tolist() == rows[0]["input_ids"]


def test_freeze_corruption_drops_helper_columns(encoded: Dataset, enc_tok) -> None:
    frozen = freeze_corruption(encoded.select(range(8)), MaskedLMCollator(enc_tok, whole_word_mask=True), seed=0)
    assert set(frozen.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    for src, row in zip(encoded.select(range(8)), frozen, strict=True):
        assert len(row["input_ids"]) == len(row["labels"]) == len(src["input_ids"])


def test_objective_errors(corpus: Dataset, enc_tok) -> None:
    texts = corpus.select(range(10))
    with pytest.raises(ValueError, match="mlm, rtd, denoising, clm"):
        prepare_objective("bert", texts, None, enc_tok, 32)
    with pytest.raises(ValueError, match="valid objectives"):
        tokenizer_template_for("gpt")
    for bad in (4, 7, 513, 10**7, 32.0):
        with pytest.raises(ValueError, match="max_length"):
            prepare_objective("mlm", texts, None, enc_tok, bad)
    assert prepare_objective("mlm", texts, None, enc_tok, 8).eval_dataset is None
