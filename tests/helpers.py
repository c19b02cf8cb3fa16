"""Helpers the test modules share (imported as `from helpers import ...`; fixtures stay in conftest.py)."""

import torch

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


def random_batch(batch: int = 3, seq: int = 10, seed: int = 0, pad_rows: dict | None = None):
    """input_ids avoiding special ids 0-6, and an attention mask with right padding per `pad_rows` {row: n_pad}."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(7, VOCAB, (batch, seq), generator=g)
    attention_mask = torch.ones_like(input_ids)
    for row, n_pad in (pad_rows or {}).items():
        attention_mask[row, seq - n_pad :] = 0
        input_ids[row, seq - n_pad :] = 0
    return input_ids, attention_mask


def classifier(**overrides):
    """A tiny random 3-label Sora classifier in eval mode."""
    from sora_hf import SoraConfig, SoraForSequenceClassification

    torch.manual_seed(0)
    return SoraForSequenceClassification(SoraConfig(**tiny_config_kwargs(num_labels=3, **overrides))).eval()


def logits_of(model, input_ids, attention_mask):
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def batch_with_labels(seed=0):
    input_ids, attention_mask = random_batch(4, 12, seed=seed, pad_rows={1: 5, 3: 2})
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([0, 1, 2, 1])}


def import_model_code(root, fixture, package: str, modules: tuple[str, ...]) -> dict:
    """The model code kept as text in `fixture` (`<module>.py.txt`), importable as `package` from `root`: its own
    classes, nothing registered. The caller removes `root` from `sys.path` when done."""
    import importlib
    import shutil
    import sys

    folder = root / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name in (*modules, "configuration_sora"):
        shutil.copy(fixture / f"{name}.py.txt", folder / f"{name}.py")
    sys.path.insert(0, str(root))
    return {name: importlib.import_module(f"{package}.{name}") for name in modules}
