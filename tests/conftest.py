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
from helpers import tiny_config_kwargs  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def tiny_config():
    from sora_hf import SoraConfig

    def make(**overrides):
        return SoraConfig(**tiny_config_kwargs(**overrides))

    return make


@pytest.fixture(scope="session")
def tokenizer():
    """A tokenizer trained on the shipped Chinese corpus, for recipe runs; test modules may define their own."""
    from sora_hf.data import load_pretraining_text
    from sora_hf.tokenizer import train_tokenizer

    texts = load_pretraining_text("all")["text"][:3000]
    return train_tokenizer(iter(texts), vocab_size=2000, min_frequency=1, model_max_length=64)
