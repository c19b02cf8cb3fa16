"""Shared test fixtures: tiny Sora configs, offline Hub settings, seeded inputs."""

import os
import tempfile

# Tests never touch the network, and never write into the user's caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and two pytest workers must not fight over the two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="sora-hf-home-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

VOCAB = 120


def tiny_config_kwargs(**overrides) -> dict:
    """A 2-layer, 32-wide Sora with grouped-query attention; large init so random models give varied outputs."""
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.2,
        generator_hidden_size=16,
        generator_intermediate_size=32,
        generator_num_attention_heads=2,
        generator_num_hidden_layers=1,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def tiny_config():
    from sora_hf import SoraConfig

    def make(**overrides):
        return SoraConfig(**tiny_config_kwargs(**overrides))

    return make


def random_batch(batch: int = 3, seq: int = 10, seed: int = 0, pad_rows: dict | None = None):
    """input_ids avoiding special ids 0-6, and an attention mask with right padding per `pad_rows` {row: n_pad}."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(7, VOCAB, (batch, seq), generator=g)
    attention_mask = torch.ones_like(input_ids)
    for row, n_pad in (pad_rows or {}).items():
        attention_mask[row, seq - n_pad :] = 0
        input_ids[row, seq - n_pad :] = 0
    return input_ids, attention_mask


@pytest.fixture(scope="session")
def tokenizer():
    """A tokenizer trained on the shipped Chinese corpus, for recipe runs; test modules may define their own."""
    from sora_hf.data import load_pretraining_text
    from sora_hf.tokenizer import train_tokenizer

    texts = load_pretraining_text("all")["text"][:3000]
    return train_tokenizer(iter(texts), vocab_size=2000, min_frequency=1, model_max_length=64)
