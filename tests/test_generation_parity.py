"""Differential tests of `generate()`: a Sora decoder and a stock `LlamaForCausalLM` holding the same weights must give
the same tokens (and scores) in every generation mode; the Sora encoder-decoder, which has no stock oracle, must give
the same with its KV cache as without it.

transformers 5.24 renamed the forward/`generate()` argument `past_key_values` to `cache`: a model that reads only the
old name silently decodes every step from an empty cache. The first new token is still right (the prompt is run
whole), so these tests report the first new token where Sora and its oracle part.
"""

import copy
import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import fields

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TextIteratorStreamer, TextStreamer, pipeline
from transformers.generation.utils import GenerateDecoderOnlyOutput

from sora_hf import SoraConfig, SoraForCausalLM, SoraForSeq2SeqLM
from sora_hf.tokenizer import train_tokenizer

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "hello world, hello moon"] * 4
NEW = 10  # new tokens per generation
PAD = 0
# the name of the cache in forward()/generate() arguments and outputs: `cache` from transformers 5.24 on
CACHE = "cache" if "cache" in {f.name for f in fields(GenerateDecoderOnlyOutput)} else "past_key_values"

# What makes a Sora decoder and a Llama the same function of the same state dict, every option spelled out although
# most defaults agree. They differ in tie_word_embeddings (Sora True, Llama False: set per pair below), the special
# ids (Sora pad/bos/eos 0/5/6, Llama None/1/2) and type_vocab_size (2, but a causal Sora never builds the segment
# embedding; 0 says so).
ARCH = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    attention_bias=False,
    mlp_bias=False,
    pad_token_id=PAD,
    bos_token_id=5,
    eos_token_id=6,
)
DRAFT_ARCH = {**ARCH, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(iter(TEXTS), vocab_size=110, min_frequency=1, model_max_length=64, template="decoder")


def sora_and_llama(vocab_size: int, seed: int, arch: dict = ARCH, tie: bool = False):
    """A random Sora decoder (large init, so tokens vary) and a Llama loaded with its state dict, key for key."""
    torch.manual_seed(seed)
    common = dict(arch, vocab_size=vocab_size, tie_word_embeddings=tie, initializer_range=0.5)
    sora = SoraForCausalLM(SoraConfig(**common, is_decoder=True, type_vocab_size=0)).eval()
    llama = LlamaForCausalLM(LlamaConfig(**common, rope_parameters=dict(sora.config.rope_parameters))).eval()
    result = llama.load_state_dict(sora.state_dict(), strict=False)
    assert not result.missing_keys and not result.unexpected_keys, result
    assert set(sora.state_dict()) == set(llama.state_dict())
    return sora, llama


@pytest.fixture(scope="module")
def pair(tokenizer):
    return sora_and_llama(len(tokenizer), seed=0)


@pytest.fixture(scope="module")
def drafts(tokenizer):
    """Smaller draft models for assisted generation, with tied embeddings (the main pair has untied ones)."""
    return sora_and_llama(len(tokenizer), seed=1, arch=DRAFT_ARCH, tie=True)


def prompts(vocab_size: int) -> dict[str, dict]:
    """Prompt kinds: generate() inputs, all ids >= 7 (no special tokens)."""
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(7, vocab_size, (2, 6), generator=g)
    left = batch.clone()
    left[1, :2] = PAD
    left_mask = torch.ones_like(left)
    left_mask[1, :2] = 0
    repetitive = torch.tensor([[11, 12, 13, 14, 15, 11, 12, 13, 14, 15, 11, 12]])  # n-grams for prompt lookup
    return {
        "single": dict(input_ids=batch[:1]),
        "batch": dict(input_ids=batch, attention_mask=torch.ones_like(batch)),
        "left_padded": dict(input_ids=left, attention_mask=left_mask),
        "repetitive": dict(input_ids=repetitive),
    }


def first_difference(got: torch.Tensor, expected: torch.Tensor, start: int) -> int | None:
    """The first generated step (1-based) where two outputs differ, or None when they are equal."""
    if got.shape == expected.shape and torch.equal(got, expected):
        return None
    n = min(got.shape[-1], expected.shape[-1])
    differs = (got[:, start:n] != expected[:, start:n]).any(dim=0).nonzero()
    return int(differs[0]) + 1 if len(differs) else n - start + 1


def assert_same_tokens(got: torch.Tensor, expected: torch.Tensor, start: int, what: str = "Sora vs Llama") -> None:
    step = first_difference(got, expected, start)
    assert step is None, (
        f"{what}: tokens differ from new token {step}\n got: {got.tolist()}\nwant: {expected.tolist()}"
    )


def assert_varied(sequences: torch.Tensor, start: int) -> None:
    """A non-degenerate model (more than one distinct new token), so equal outputs mean something."""
    assert len(set(sequences[:, start:].flatten().tolist())) > 2, sequences


def assert_same_scores(got, expected, tol: float = 1e-5) -> None:
    assert len(got.scores) == len(expected.scores)
    for step, (a, b) in enumerate(zip(got.scores, expected.scores, strict=True)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, step=step: f"scores step {step}: {m}")
    if expected.logits is not None:
        for a, b in zip(got.logits, expected.logits, strict=True):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    for key in ("sequences_scores", "beam_indices"):
        if getattr(expected, key, None) is not None:
            torch.testing.assert_close(getattr(got, key), getattr(expected, key), rtol=tol, atol=tol)


def test_llama_holds_sora_weights_and_computes_the_same_logits(pair, tokenizer):
    """Guards the oracle itself: same state dict keys, same logits (a left-padded batch too) before any generate."""
    sora, llama = pair
    inputs = prompts(len(tokenizer))["left_padded"]
    with torch.no_grad():
        torch.testing.assert_close(sora(**inputs).logits, llama(**inputs).logits, rtol=1e-5, atol=1e-5)
    assert sora.generation_config.eos_token_id == llama.generation_config.eos_token_id == 6


# Sora takes both names where transformers does (5.24+). Before 5.24 `cache=` is not an alias: it is how continuous
# batching hands its paged cache to the attention function (with use_cache=False), so the model must leave it alone.
@pytest.mark.parametrize("name", ["cache", "past_key_values"] if CACHE == "cache" else ["past_key_values"])
def test_forward_returns_and_reads_the_cache_under_either_name(pair, tokenizer, name):
    """A prompt forward returns its cache in the output field this transformers release names, and a one-token
    forward given it back (as `cache` or as `past_key_values`) gives Llama's logits, which are the uncached ones."""
    sora, llama = pair
    ids = prompts(len(tokenizer))["batch"]["input_ids"]
    step = ids[:, :1]
    with torch.no_grad():
        full = llama(input_ids=torch.cat([ids, step], dim=1)).logits[:, -1]
        llama_cache = getattr(llama(input_ids=ids, use_cache=True), CACHE)
        expected = llama(input_ids=step, use_cache=True, **{CACHE: llama_cache}).logits[:, -1]
        sora_out = sora(input_ids=ids, use_cache=True)
        sora_cache = getattr(sora_out, CACHE, None)
        assert sora_cache is not None and sora_cache.get_seq_length() == ids.shape[1], sora_out.keys()
        got = sora(input_ids=step, use_cache=True, **{name: sora_cache})
    torch.testing.assert_close(expected, full, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.logits[:, -1], expected, rtol=1e-5, atol=1e-5)
    assert getattr(got, CACHE).get_seq_length() == ids.shape[1] + 1


def test_generate_continues_from_a_returned_cache(pair, tokenizer):
    """generate() twice, the second call given the first one's returned cache, gives Llama's tokens (and the tokens
    of one call generating both halves)."""
    inputs = prompts(len(tokenizer))["batch"]
    kwargs = dict(do_sample=False, pad_token_id=PAD, eos_token_id=None)
    outs = []
    for model in pair:
        first = model.generate(**inputs, max_new_tokens=NEW // 2, return_dict_in_generate=True, **kwargs)
        mask = torch.ones_like(first.sequences)
        cache = getattr(first, CACHE)
        assert cache is not None and cache.get_seq_length() > 0
        outs.append(
            model.generate(first.sequences, attention_mask=mask, max_new_tokens=NEW // 2, **{CACHE: cache}, **kwargs)
        )
    start = inputs["input_ids"].shape[1]
    assert_same_tokens(outs[0], outs[1], start)
    assert_same_tokens(
        outs[0], pair[0].generate(**inputs, max_new_tokens=NEW, **kwargs), start, "continued vs one call"
    )


# (generate() kwargs, prompt kind); "draft" stands for the draft model of each side
DECODER_MODES = [
    pytest.param(dict(do_sample=False), "batch", id="greedy"),
    pytest.param(dict(do_sample=False), "left_padded", id="greedy-left-padded"),
    pytest.param(dict(do_sample=False, use_cache=False), "batch", id="greedy-no-cache"),
    pytest.param(dict(num_beams=3), "batch", id="beam3"),
    pytest.param(dict(num_beams=3, num_return_sequences=2), "left_padded", id="beam3-return2"),
    pytest.param(dict(do_sample=True, top_k=20, top_p=0.9, temperature=0.8), "batch", id="sample-topk-topp-temp"),
    pytest.param(dict(do_sample=True, num_return_sequences=2), "left_padded", id="sample-return2"),
    pytest.param(dict(do_sample=False, repetition_penalty=1.5), "batch", id="repetition-penalty"),
    pytest.param(dict(do_sample=False, cache_implementation="static"), "batch", id="static-cache"),
    pytest.param(dict(do_sample=False, cache_implementation="static"), "left_padded", id="static-cache-left-padded"),
    pytest.param(dict(do_sample=False, assistant_model="draft"), "single", id="assisted"),
    pytest.param(dict(do_sample=True, top_k=10, assistant_model="draft"), "single", id="assisted-sample"),
    pytest.param(dict(do_sample=False, prompt_lookup_num_tokens=3), "repetitive", id="prompt-lookup"),
    pytest.param(dict(do_sample=False), "embeds", id="inputs-embeds"),
    # transformers turns the cache back on for a decoder fed inputs_embeds (it tells the prompt step by the cache)
    pytest.param(dict(do_sample=False, use_cache=False), "embeds", id="inputs-embeds-no-cache"),
]


@pytest.mark.parametrize(("mode", "prompt"), DECODER_MODES)
def test_sora_generates_llamas_tokens_and_scores(pair, drafts, tokenizer, mode, prompt):
    """Sora's generate() returns exactly Llama's tokens, and its scores to 1e-5, in each generation mode."""
    inputs = prompts(len(tokenizer))["batch" if prompt == "embeds" else prompt]
    outs = []
    for model, draft in zip(pair, drafts, strict=True):
        kwargs = dict(mode, max_new_tokens=NEW, pad_token_id=PAD, eos_token_id=None)
        kwargs.update(output_scores=True, output_logits=True, return_dict_in_generate=True)
        if kwargs.get("assistant_model") == "draft":
            kwargs["assistant_model"] = draft
        model_inputs = dict(inputs)
        if prompt == "embeds":
            model_inputs["inputs_embeds"] = model.get_input_embeddings()(model_inputs.pop("input_ids")).detach()
        torch.manual_seed(1234)
        outs.append(model.generate(**model_inputs, **kwargs))
    got, expected = outs
    start = 0 if prompt == "embeds" else inputs["input_ids"].shape[1]
    assert_same_tokens(got.sequences, expected.sequences, start)
    assert expected.sequences.shape[1] == start + NEW
    assert_varied(expected.sequences, start)
    assert_same_scores(got, expected)


def test_continuous_batching_generates_llamas_tokens(pair, tokenizer):
    """generate_batch() (continuous batching: a paged cache the attention function fills) gives Llama's tokens."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    rows = prompts(len(tokenizer))["batch"]["input_ids"].tolist()
    config = GenerationConfig(max_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=PAD)
    results = []
    for model in pair:
        small = ContinuousBatchingConfig(
            num_blocks=8, max_batch_tokens=32, max_requests_per_batch=2, use_cuda_graph=False, use_async_batching=False
        )
        out = model.generate_batch(rows, generation_config=config, continuous_batching_config=small, warmup=False)
        tokens = [out[key].generated_tokens for key in sorted(out)]
        # a request that failed inside the loop comes back with no tokens (the error is only logged)
        assert [len(t) for t in tokens] == [NEW] * len(rows), f"{type(model).__name__}: generate_batch gave {tokens}"
        results.append(torch.tensor(tokens))
    assert_same_tokens(results[0], results[1], 0)
    expected = pair[1].generate(torch.tensor(rows), max_new_tokens=NEW, do_sample=False, eos_token_id=None)
    assert_same_tokens(results[1], expected[:, len(rows[0]) :], 0, "Llama generate_batch vs generate")


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "no-cache"])
def test_inputs_embeds_continue_as_input_ids_do(pair, tokenizer, use_cache):
    """generate(inputs_embeds=...) returns the new tokens generate(input_ids=...) of those ids returns (with or
    without use_cache=False on the ids side; the embeds side always runs cached, transformers forces it)."""
    sora, _ = pair
    inputs = prompts(len(tokenizer))["batch"]
    kwargs = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=PAD, eos_token_id=None, use_cache=use_cache)
    from_ids = sora.generate(**inputs, **kwargs)
    embeds = sora.get_input_embeddings()(inputs["input_ids"]).detach()
    from_embeds = sora.generate(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], **kwargs)
    assert_same_tokens(from_embeds, from_ids[:, inputs["input_ids"].shape[1] :], 0, "embeds vs ids")


def test_left_padded_batch_rows_equal_rows_generated_alone(pair, tokenizer):
    """Each row of a left-padded batch generates what it generates alone (and what Llama generates alone)."""
    sora, llama = pair
    inputs = prompts(len(tokenizer))["left_padded"]
    kwargs = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    batched = sora.generate(**inputs, **kwargs)
    width = inputs["input_ids"].shape[1]
    for row in range(2):
        real = inputs["attention_mask"][row].bool()
        ids = inputs["input_ids"][row : row + 1, real]
        alone = sora.generate(input_ids=ids, **kwargs)
        assert_same_tokens(batched[row : row + 1, width:], alone[:, ids.shape[1] :], 0, f"row {row} batched vs alone")
        assert_same_tokens(alone, llama.generate(input_ids=ids, **kwargs), ids.shape[1])


def test_generation_stops_at_an_eos_the_model_emits(pair, tokenizer):
    """With an eos that greedy decoding first emits at new token 4 or later, Sora stops exactly where Llama does."""
    sora, llama = pair
    inputs = prompts(len(tokenizer))["single"]
    start = inputs["input_ids"].shape[1]
    kwargs = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=PAD)
    free = llama.generate(**inputs, eos_token_id=None, **kwargs)[0, start:].tolist()
    step = next(i for i in range(3, NEW) if free[i] not in free[:i])
    eos = free[step]
    expected = llama.generate(**inputs, eos_token_id=eos, **kwargs)
    assert expected.shape[1] == start + step + 1 and expected[0, -1] == eos
    assert_same_tokens(sora.generate(**inputs, eos_token_id=eos, **kwargs), expected, start)


@pytest.mark.parametrize("streamer_class", [TextStreamer, TextIteratorStreamer], ids=lambda c: c.__name__)
def test_streamers_stream_the_generated_text(pair, tokenizer, streamer_class, capsys):
    """A streamer attached to Sora's generate() yields the same text as Llama's, and the text of the tokens."""
    texts, tokens = [], []
    enc = tokenizer("the cat sat", return_tensors="pt")
    kwargs = dict(**enc, max_new_tokens=NEW, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    for model in pair:
        streamer = streamer_class(tokenizer, skip_prompt=True)
        if streamer_class is TextStreamer:
            capsys.readouterr()
            tokens.append(model.generate(**kwargs, streamer=streamer))
            texts.append(capsys.readouterr().out)
        else:
            result = []
            thread = threading.Thread(
                target=lambda m=model, s=streamer, r=result: r.append(m.generate(**kwargs, streamer=s))
            )
            thread.start()
            texts.append("".join(streamer))
            thread.join()
            tokens.append(result[0])
    start = enc["input_ids"].shape[1]
    assert_same_tokens(tokens[0], tokens[1], start)
    assert texts[0] == texts[1]
    decoded = tokenizer.decode(tokens[0][0, start:])
    assert texts[0].rstrip("\n") == decoded and decoded.strip()


def test_text_generation_pipeline_on_saved_folders(pair, tokenizer, tmp_path):
    """pipeline("text-generation") on a saved Sora folder writes what it writes on the saved Llama folder."""
    results = []
    for name, model in zip(("sora", "llama"), pair, strict=True):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        generator = pipeline("text-generation", model=str(tmp_path / name))
        assert type(generator.model) is type(model)
        results.append(generator(["the cat sat", "hello"], max_new_tokens=NEW, do_sample=False, eos_token_id=None))
    assert results[0] == results[1]
    text = results[0][0][0]["generated_text"]
    assert text.startswith("the cat sat") and len(text) > len("the cat sat"), results[0]


def test_lora_wrapped_sora_generates_lora_wrapped_llamas_tokens(pair, tokenizer):
    """The same (non-zero) LoRA adapter on Sora and on Llama: same adapter keys, same greedy tokens."""
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_models = []
    for model in pair:
        torch.manual_seed(7)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
        peft_models.append(get_peft_model(copy.deepcopy(model), config).eval())
    peft_sora, peft_llama = peft_models
    peft_llama.load_state_dict(peft_sora.state_dict(), strict=True)  # the same adapter weights, key for key
    inputs = prompts(len(tokenizer))["left_padded"]
    kwargs = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    expected = peft_llama.generate(**inputs, **kwargs)
    start = inputs["input_ids"].shape[1]
    assert_same_tokens(peft_sora.generate(**inputs, **kwargs), expected, start)
    base = pair[1].generate(**inputs, **kwargs)
    assert first_difference(base, expected, start) is not None, "the adapter changes nothing: the test is vacuous"


# ------------------------------------------------------------------------------------ encoder-decoder (no oracle)


@pytest.fixture(scope="module")
def seq2seq(tokenizer):
    torch.manual_seed(3)
    config = SoraConfig(**dict(ARCH, vocab_size=len(tokenizer), initializer_range=0.5, tie_word_embeddings=False))
    return SoraForSeq2SeqLM(config).eval()


SEQ2SEQ_MODES = [
    pytest.param(dict(do_sample=False), id="greedy"),
    pytest.param(dict(num_beams=3), id="beam3"),
    pytest.param(dict(num_beams=3, num_return_sequences=2), id="beam3-return2"),
    pytest.param(dict(do_sample=True, top_k=20, top_p=0.9, temperature=0.8), id="sample-topk-topp-temp"),
    pytest.param(dict(do_sample=False, cache_implementation="static"), id="static-cache"),
]


@pytest.mark.parametrize("mode", SEQ2SEQ_MODES)
@pytest.mark.parametrize("kind", ["decoder", "seq2seq"])
def test_cached_generation_equals_uncached(pair, seq2seq, tokenizer, kind, mode):
    """With its KV cache (dynamic or static) a Sora model generates what it generates with use_cache=False."""
    model = pair[0] if kind == "decoder" else seq2seq
    inputs = prompts(len(tokenizer))["left_padded"]
    if kind == "seq2seq":  # an encoder takes right padding
        inputs = dict(input_ids=inputs["input_ids"].clone(), attention_mask=inputs["attention_mask"].flip(1))
        inputs["input_ids"][1] = torch.cat([inputs["input_ids"][1, 2:], inputs["input_ids"][1, :2]])
    kwargs = dict(max_new_tokens=NEW, pad_token_id=PAD, eos_token_id=None)
    kwargs.update(output_scores=True, return_dict_in_generate=True)
    outs = []
    for use_cache in (True, False):
        call = dict(mode, **kwargs) if use_cache else dict(mode, **kwargs, use_cache=False)
        if not use_cache:
            call.pop("cache_implementation", None)
        torch.manual_seed(1234)
        outs.append(model.generate(**inputs, **call))
    cached, uncached = outs
    start = inputs["input_ids"].shape[1] if kind == "decoder" else 1
    assert_same_tokens(cached.sequences, uncached.sequences, start, "cached vs use_cache=False")
    assert_varied(uncached.sequences, start)
    # not the same kernels (one new query row against the cache vs the whole sequence): float noise, not 1e-5
    assert_same_scores(cached, uncached, tol=1e-4)


@pytest.mark.parametrize(
    ("task", "key"), [("summarization", "summary_text"), ("text2text-generation", "generated_text")]
)
def test_seq2seq_pipelines_cached_equal_uncached(seq2seq, tokenizer, task, key, tmp_path):
    """sora_hf's summarization / text2text-generation pipelines give the same text with and without the cache."""
    seq2seq.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    pipe = pipeline(task, model=str(tmp_path))
    texts = ["the cat sat on the mat", "hello world"]
    kwargs = dict(max_new_tokens=NEW, do_sample=False, eos_token_id=None)
    cached = pipe(texts, **kwargs)
    assert cached == pipe(texts, use_cache=False, **kwargs)
    assert all(r[key].strip() for r in cached)


# ------------------------------------------------------------------------------------------------- remote code

CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["sora_hf"] = None  # any `import sora_hf` now raises ImportError
    import torch, transformers
    folder = sys.argv[1]
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    case = torch.load(folder + "/case.pt")
    got = model.generate(**case["inputs"], max_new_tokens=case["new"], do_sample=False, pad_token_id=0,
                         eos_token_id=None)
    expected = case["expected"]
    if not torch.equal(got, expected):
        raise SystemExit(f"remote-code Sora differs from Llama:\\n got {got.tolist()}\\nwant {expected.tolist()}")
    print("ok")
    """
)


def test_remote_code_checkpoint_greedy_decodes_llamas_tokens(pair, tokenizer, tmp_path):
    """A saved Sora folder loaded with trust_remote_code=True where sora_hf cannot be imported decodes Llama's tokens."""
    sora, llama = pair
    inputs = prompts(len(tokenizer))["left_padded"]
    expected = llama.generate(**inputs, max_new_tokens=NEW, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    sora.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"]
    torch.save(dict(inputs=inputs, new=NEW, expected=expected), tmp_path / "case.pt")
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr[-3000:]
