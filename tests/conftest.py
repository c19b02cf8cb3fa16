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

import huggingface_hub  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import tiny_config_kwargs  # noqa: E402
from hub_server import TOKEN, HubServer  # noqa: E402

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


@pytest.fixture(scope="session")
def sentiment_checkpoint(tmp_path_factory):
    """A tiny random sentiment classifier with the task's label names and a tokenizer for its texts (what the deploy
    commands prune, quantize and score)."""
    from sora_hf import SoraConfig, SoraForSequenceClassification
    from sora_hf.data.tasks import load_embedded_task
    from sora_hf.tokenizer import train_tokenizer

    train = load_embedded_task("sentiment")[0]["train"]["text"][:300]
    tokenizer = train_tokenizer(iter(train), vocab_size=500, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    model = SoraForSequenceClassification(
        SoraConfig(
            **tiny_config_kwargs(
                vocab_size=len(tokenizer),
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
                initializer_range=0.05,
            )
        )
    ).eval()
    folder = tmp_path_factory.mktemp("sentiment")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


@pytest.fixture(scope="session")
def encoder_checkpoint(tokenizer, tmp_path_factory):
    """A tiny random Sora masked-LM encoder with the shared tokenizer, saved: what fine-tuning tests start from
    (read only; every run writes its own output folder)."""
    from sora_hf import SoraConfig, SoraForMaskedLM

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    SoraForMaskedLM(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer)))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# the loopback Hub (tests/hub_server.py) and a process that talks to it: test_hub and test_deploy_errors push there
@pytest.fixture(scope="module")
def hub():
    with HubServer(lifetime=300) as server:
        yield server


@pytest.fixture
def online(hub, monkeypatch, tmp_path):
    """This process talks to the test hub: online, token in HF_TOKEN, no token file."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    return hub
