"""A folder saved from `SoraForSentenceEmbedding` gives the head's own embeddings wherever it is loaded: through
`pipeline("sentence-similarity" | "feature-extraction", model=<folder>)` exactly as through the model object, and
through `SentenceTransformer(<folder>)` (multi-level attention on and off, CLS and mean pooling), never a silent
mean pooling of the bare encoder's token states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import tiny_config_kwargs
from transformers import pipeline

from sora_hf import SoraConfig, SoraForSentenceEmbedding, SoraModel
from sora_hf.tokenizer import train_tokenizer

TEXTS = [
    "今天天气很好，我们去公园散步。",
    "天气不错，适合出门。",
    "股价下跌，投资者很担心。",
    "新华社记者在上海报道了这次会议。",
    "The meeting was held in Shanghai.",
    "北京欢迎你",
] * 20
SENTENCES = TEXTS[:6]
SIMILARITY_INPUT = {"source_sentence": SENTENCES[0], "sentences": SENTENCES[1:]}
HEADS = [
    pytest.param(True, "mean", id="multi_level-mean"),
    pytest.param(True, "cls", id="multi_level-cls"),
    pytest.param(False, "mean", id="last_layer-mean"),
    pytest.param(False, "cls", id="last_layer-cls"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(iter(TEXTS), vocab_size=300, min_frequency=1, model_max_length=64)


def build(model_class, tokenizer, **overrides):
    """A tiny model whose pooler is trained-looking (non-zero level query), so dropping it changes the output."""
    torch.manual_seed(0)
    model = model_class(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), **overrides))).eval()
    pooler = getattr(model, "pooler", None)
    if pooler is not None and pooler.multi_level:
        with torch.no_grad():
            pooler.level_query.normal_(std=2.0)
    return model


def save(model, tokenizer, folder: Path) -> str:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def head_embeddings(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """What the model object gives for `texts`, one at a time (no padding)."""
    with torch.no_grad():
        return torch.cat([model(**tokenizer(text, return_tensors="pt")).embeddings for text in texts])


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).min().item()


# ------------------------------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize(("multi_level", "pooling"), HEADS)
def test_similarity_pipeline_folder_equals_object(tokenizer, tmp_path, multi_level, pooling):
    model = build(SoraForSentenceEmbedding, tokenizer, multi_level_attention=multi_level, classifier_pooling=pooling)
    folder = save(model, tokenizer, tmp_path)
    from_folder = pipeline("sentence-similarity", model=folder)
    assert type(from_folder.model) is SoraForSentenceEmbedding
    from_object = pipeline("sentence-similarity", model=model, tokenizer=tokenizer)
    scores = from_folder(SIMILARITY_INPUT)
    assert scores == pytest.approx(from_object(SIMILARITY_INPUT), abs=1e-6)
    embeddings = head_embeddings(model, tokenizer, SENTENCES)
    expected = torch.nn.functional.cosine_similarity(embeddings[:1], embeddings[1:], dim=-1).tolist()
    assert scores == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(("multi_level", "pooling"), HEADS)
def test_feature_extraction_folder_equals_object(tokenizer, tmp_path, multi_level, pooling):
    model = build(SoraForSentenceEmbedding, tokenizer, multi_level_attention=multi_level, classifier_pooling=pooling)
    folder = save(model, tokenizer, tmp_path)
    from_folder = pipeline("feature-extraction", model=folder)
    assert type(from_folder.model) is SoraForSentenceEmbedding
    from_object = pipeline("feature-extraction", model=model, tokenizer=tokenizer)
    for text in SENTENCES[:3]:
        got = torch.tensor(from_folder(text))
        assert got.shape == (1, 32)  # one vector per text: the head's embedding
        torch.testing.assert_close(got, torch.tensor(from_object(text)))
        torch.testing.assert_close(got, head_embeddings(model, tokenizer, [text]))


def test_base_encoder_folder_keeps_token_states_and_mean_pooling(tokenizer, tmp_path):
    """A folder of the bare encoder still loads as the bare encoder (no untrained pooler is made up for it)."""
    model = build(SoraModel, tokenizer)
    folder = save(model, tokenizer, tmp_path)
    extract = pipeline("feature-extraction", model=folder)
    assert type(extract.model) is SoraModel
    encoded = tokenizer(SENTENCES[0], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    torch.testing.assert_close(torch.tensor(extract(SENTENCES[0])), hidden)
    similarity = pipeline("sentence-similarity", model=folder)
    assert type(similarity.model) is SoraModel
    assert similarity(SIMILARITY_INPUT) == pytest.approx(
        pipeline("sentence-similarity", model=model, tokenizer=tokenizer)(SIMILARITY_INPUT), abs=1e-6
    )


def test_saved_similarity_pipeline_names_a_transformers_auto_class(tokenizer, tmp_path):
    """`Pipeline.save_pretrained` writes `custom_pipelines`; its model class must be one transformers can resolve
    (and the one that keeps the head) when the folder is loaded back as remote code."""
    import transformers

    model = build(SoraForSentenceEmbedding, tokenizer)
    pipeline("sentence-similarity", model=model, tokenizer=tokenizer).save_pretrained(tmp_path / "pipe")
    entry = json.loads((tmp_path / "pipe" / "config.json").read_text())["custom_pipelines"]["sentence-similarity"]
    assert entry["pt"] == ["AutoModelForTextEncoding"]
    assert all(hasattr(transformers, name) for name in entry["pt"])
    pipeline("sentence-similarity", model=build(SoraModel, tokenizer), tokenizer=tokenizer).save_pretrained(
        tmp_path / "base"
    )
    entry = json.loads((tmp_path / "base" / "config.json").read_text())["custom_pipelines"]["sentence-similarity"]
    assert entry["pt"] == ["AutoModel"]


# ------------------------------------------------------------------------------------------ sentence-transformers


def test_save_pretrained_writes_modules_json_and_keeps_an_extended_one(tokenizer, tmp_path):
    model = build(SoraForSentenceEmbedding, tokenizer)
    save(model, tokenizer, tmp_path)
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert modules == [
        {
            "idx": 0,
            "name": "0",
            "path": "",
            "type": "sora_hf.sentence_transformers_module.SoraSentenceEmbeddingModule",
        }
    ]
    # a sentence-transformers pipeline built on this head (here with a Normalize module) survives a re-save
    extended = [*modules, {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.Normalize"}]
    (tmp_path / "modules.json").write_text(json.dumps(extended))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "modules.json").read_text()) == extended
    # a foreign one (the mean-pooling pipeline sentence-transformers would guess) is replaced
    (tmp_path / "modules.json").write_text(json.dumps([{**modules[0], "type": "sentence_transformers.Transformer"}]))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "modules.json").read_text()) == modules


@pytest.mark.parametrize(("multi_level", "pooling"), HEADS)
def test_sentence_transformer_from_folder_equals_head(tokenizer, tmp_path, multi_level, pooling):
    st = pytest.importorskip("sentence_transformers")
    model = build(SoraForSentenceEmbedding, tokenizer, multi_level_attention=multi_level, classifier_pooling=pooling)
    folder = save(model, tokenizer, tmp_path)
    encoder = st.SentenceTransformer(folder, device="cpu", trust_remote_code=True)
    got = encoder.encode(SENTENCES, convert_to_tensor=True, batch_size=4)  # padded batches
    expected = head_embeddings(model, tokenizer, SENTENCES)
    cosine = min_cosine(got, expected)
    print(f"SentenceTransformer vs head, multi_level={multi_level} pooling={pooling}: min cosine {cosine:.7f}")
    assert cosine >= 0.9999
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    dimension = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    assert dimension() == 32  # the name before sentence-transformers 5.4 is the second


def test_sentence_transformer_save_and_reload_round_trip(tokenizer, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    model = build(SoraForSentenceEmbedding, tokenizer)
    folder = save(model, tokenizer, tmp_path / "sora")
    encoder = st.SentenceTransformer(folder, device="cpu", trust_remote_code=True)
    encoder.max_seq_length = 32
    encoder.save(str(tmp_path / "st"))
    reloaded = st.SentenceTransformer(str(tmp_path / "st"), device="cpu", trust_remote_code=True)
    assert reloaded.max_seq_length == 32
    expected = head_embeddings(model, tokenizer, SENTENCES)
    got = reloaded.encode(SENTENCES, convert_to_tensor=True)
    assert min_cosine(got, expected) >= 0.9999
    # the folder sentence-transformers wrote is still a plain Sora checkpoint
    again = SoraForSentenceEmbedding.from_pretrained(tmp_path / "st").eval()
    torch.testing.assert_close(head_embeddings(again, tokenizer, SENTENCES), expected)
    # and an extended pipeline (normalised embeddings) round-trips too
    try:
        from sentence_transformers.base.modules import Normalize  # sentence-transformers 6
    except ImportError:
        from sentence_transformers.models import Normalize  # 5.x
    normalized = st.SentenceTransformer(modules=[*reloaded, Normalize()], device="cpu")
    normalized.save(str(tmp_path / "normalized"))
    back = st.SentenceTransformer(str(tmp_path / "normalized"), device="cpu", trust_remote_code=True)
    unit = torch.nn.functional.normalize(expected, dim=-1)
    torch.testing.assert_close(back.encode(SENTENCES, convert_to_tensor=True), unit, rtol=1e-4, atol=1e-5)


def test_sentence_transformer_without_trust_remote_code_is_never_silent(tokenizer, tmp_path):
    """sentence-transformers 6 imports no module outside its own package without `trust_remote_code=True`; it must
    refuse (naming the flag) rather than fall back to mean pooling. Older releases import it and get it right."""
    st = pytest.importorskip("sentence_transformers")
    model = build(SoraForSentenceEmbedding, tokenizer)
    folder = save(model, tokenizer, tmp_path)
    try:
        encoder = st.SentenceTransformer(folder, device="cpu")
    except ValueError as error:
        assert "trust_remote_code" in str(error)
        return
    got = encoder.encode(SENTENCES, convert_to_tensor=True)
    assert min_cosine(got, head_embeddings(model, tokenizer, SENTENCES)) >= 0.9999


def test_sora_hf_works_without_sentence_transformers(tokenizer, tmp_path):
    """sentence-transformers is optional: sora_hf imports and saves embedding models without it, and the module
    that needs it says how to install it."""
    child = textwrap.dedent(
        """
        import json, sys
        sys.modules["sentence_transformers"] = None  # any `import sentence_transformers` now raises ImportError
        from sora_hf import SoraConfig, SoraForSentenceEmbedding
        SoraForSentenceEmbedding(SoraConfig(**json.loads(sys.argv[2]))).save_pretrained(sys.argv[1])
        try:
            import sora_hf.sentence_transformers_module  # noqa: F401
        except ImportError as error:
            assert "pip install" in str(error), error
        else:
            raise SystemExit("sora_hf.sentence_transformers_module imported without sentence-transformers")
        """
    )
    config = json.dumps(tiny_config_kwargs(vocab_size=len(tokenizer)))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path), config], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "modules.json").is_file()
