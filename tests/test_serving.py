"""The HTTP server (`sora_hf.serving`, `sora-hf serve`): answers equal the pipeline's, concurrent requests share a
batch, bad requests get JSON 4xx without hurting the others, /metrics counts what was sent, the OpenAPI schema is
real, and a real server process answers its in-flight requests when it gets SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from helpers import tiny_config_kwargs
from prometheus_client.parser import text_string_to_metric_families
from transformers import pipeline

from sora_hf import SoraConfig, SoraForQuestionAnswering, SoraForSequenceClassification
from sora_hf.serving import (
    DynamicBatcher,
    RequestError,
    ServerSettings,
    create_app,
    infer_task,
    load_pipeline,
    pipeline_batch_function,
)
from sora_hf.serving.tasks import TASKS
from sora_hf.tokenizer import train_tokenizer

REVIEWS = [
    "这个手机的屏幕很好，电池也耐用。",
    "物流太慢了，包装也破了，很失望。",
    "价格便宜，质量不错，推荐购买！",
    "客服态度很差，再也不买了。",
    "东西收到了，和描述的一样。",
    "做工粗糙，用了两天就坏了。",
]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(iter(REVIEWS * 10), vocab_size=200, min_frequency=1, model_max_length=64)


@pytest.fixture(scope="module")
def classifier_dir(tokenizer, tmp_path_factory) -> Path:
    """A tiny sentiment classifier saved like a fine-tuning run (config with architectures, tokenizer)."""
    torch.manual_seed(0)
    config = SoraConfig(
        **tiny_config_kwargs(
            vocab_size=len(tokenizer), id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
        )
    )
    path = tmp_path_factory.mktemp("classifier")
    SoraForSequenceClassification(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier(classifier_dir):
    pipe, task = load_pipeline(str(classifier_dir))  # the task comes from the saved config
    assert task == "text-classification"
    return pipe


def serve_in_process(app, scenario):
    """Run `scenario(client)` against `app` with its lifespan (batcher started, drained at the end)."""

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sora.test") as client:
                return await scenario(client)

    return asyncio.run(main())


def sample(app, name: str, **labels) -> float:
    return app.state.metrics.registry.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------------------------------------------------- tasks


def test_task_comes_from_the_architecture_and_unknown_tasks_are_refused(tmp_path):
    def config(*architectures):
        return SoraConfig(**tiny_config_kwargs(architectures=list(architectures)))

    assert infer_task(config("SoraForSequenceClassification")) == "text-classification"
    assert infer_task(config("SoraForTokenClassification")) == "token-classification"
    assert infer_task(config("SoraForQuestionAnswering")) == "question-answering"
    assert infer_task(config("SoraForMaskedLM")) == "fill-mask"
    assert infer_task(config("SoraForCausalLM")) == "text-generation"
    assert infer_task(config("SoraForSeq2SeqLM")) == "text2text-generation"
    assert infer_task(config("SoraForSentenceEmbedding")) == "sentence-similarity"
    assert infer_task(config("SoraModel")) == "feature-extraction"
    with pytest.raises(ValueError, match="SoraForPreTraining.*--task"):
        infer_task(config("SoraForPreTraining"))
    with pytest.raises(ValueError, match="no `architectures`"):
        infer_task(config())
    with pytest.raises(ValueError, match="task 'sentiment' cannot be served; choose one of: .*text-classification"):
        create_app(object(), "sentiment")
    with pytest.raises(ValueError, match="max_batch_size must be a positive integer, got 0"):
        ServerSettings(max_batch_size=0)
    with pytest.raises(ValueError, match="task 'qa' cannot be served"):  # before anything loads
        load_pipeline(str(tmp_path), task="qa")
    with pytest.raises(FileNotFoundError, match="no-such-model: no such folder"):
        load_pipeline(str(tmp_path / "no-such-model"))


def test_the_serve_flags_are_the_settings_fields_with_their_defaults_and_ranges(monkeypatch, capsys):
    """`sora-hf serve`'s batching and limit flags are generated from ServerSettings: each given flag reaches its
    field, the others keep the dataclass defaults, and a value out of range is refused before anything loads."""
    import dataclasses

    import sora_hf.serving
    from sora_hf.cli import main as cli_main

    seen = {}
    monkeypatch.setattr(
        sora_hf.serving, "serve", lambda checkpoint, settings, **kwargs: seen.update(settings=settings)
    )
    argv = ["serve", "some-folder", "--max-queue-size", "7", "--header-timeout", "3.5", "--max-wait-ms", "0"]
    assert cli_main(argv) == 0
    expected = ServerSettings(max_queue_size=7, header_timeout_s=3.5, max_wait_ms=0.0)
    assert seen["settings"] == expected != ServerSettings()
    printed = capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(ServerSettings):  # every field has its flag
        flag = {"header_timeout_s": "--header-timeout", "body_timeout_s": "--body-timeout"}.get(field.name)
        assert (flag or "--" + field.name.replace("_", "-")) in help_text, field.name
    assert cli_main(["serve", "some-folder", "--max-wait-ms", "-1"]) == 2
    assert cli_main(["serve", "some-folder", "--max-batch-size", "0"]) == 2
    assert printed == ""  # the run itself printed nothing


# ---------------------------------------------------------------------------------------------------------- batching


def test_concurrent_requests_share_a_batch_and_get_the_unbatched_answers(classifier):
    # max_wait_ms long enough that the 10 concurrent requests meet in the queue; max_batch_size splits them 8 + 2;
    # each call sorts its items by length and runs forward passes of 3, so outputs must find their way back
    settings = ServerSettings(max_batch_size=8, forward_batch_size=3, max_wait_ms=300)
    app = create_app(classifier, "text-classification", settings=settings)
    texts = [REVIEWS[i % len(REVIEWS)] + "!" * (10 - i) for i in range(10)]  # lengths not in request order

    async def scenario(client):
        singles = await asyncio.gather(*(client.post("/v1/predict", json={"inputs": text}) for text in texts))
        listed = await client.post("/predict", json={"inputs": texts[:3], "parameters": {"top_k": None}})
        return singles, listed

    singles, listed = serve_in_process(app, scenario)
    for text, response in zip(texts, singles, strict=True):
        assert response.status_code == 200, response.text
        expected = classifier(text, truncation=True)[0]  # the plain pipeline, one text at a time
        got = response.json()["outputs"]
        assert got["label"] == expected["label"]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
    for text, got in zip(texts[:3], listed.json()["outputs"], strict=True):
        expected = classifier(text, truncation=True, top_k=None)
        assert [o["label"] for o in got] == [o["label"] for o in expected]
        assert [o["score"] for o in got] == pytest.approx([o["score"] for o in expected], abs=1e-5)

    # 10 single-text requests + 3 texts in one request = 13 items, in fewer calls than items, one of them 8 wide
    assert sample(app, "sora_serving_items_total") == 13
    calls = sample(app, "sora_serving_batch_size_count")
    assert calls < 13
    assert sample(app, "sora_serving_batch_size_bucket", le="4.0") < calls  # some call had more than 4 items
    assert sample(app, "sora_serving_requests_total", path="/v1/predict", method="POST", status="200") == 10
    assert sample(app, "sora_serving_requests_total", path="/predict", method="POST", status="200") == 1
    assert sample(app, "sora_serving_request_latency_seconds_count", path="/v1/predict") == 10


def test_a_failing_item_fails_only_its_own_request(classifier):
    """The batched call raises because of one item; the batch is retried one by one and the others are answered."""
    spec = TASKS["text-classification"]
    plain = pipeline_batch_function(classifier, spec, max_length=64)
    calls = []

    def run(items, parameters):
        calls.append(len(items))
        if any("BOOM" in item for item in items):
            raise ValueError("cannot classify BOOM")
        return plain(items, parameters)

    app = create_app(classifier, "text-classification", settings=ServerSettings(max_wait_ms=300), batch_function=run)

    async def scenario(client):
        bodies = [{"inputs": REVIEWS[0]}, {"inputs": "BOOM"}, {"inputs": [REVIEWS[1], REVIEWS[2]]}]
        return await asyncio.gather(*(client.post("/v1/predict", json=body) for body in bodies))

    good, bad, good_list = serve_in_process(app, scenario)
    assert calls == [4, 1, 1, 1, 1]  # one shared call of 4 items, then each item alone
    assert bad.status_code == 422 and bad.json() == {
        "error": "the text-classification pipeline refused the input: cannot classify BOOM"
    }
    assert good.json()["outputs"]["label"] == classifier(REVIEWS[0])[0]["label"]
    assert [o["label"] for o in good_list.json()["outputs"]] == [classifier(t)[0]["label"] for t in REVIEWS[1:3]]
    assert sample(app, "sora_serving_errors_total", kind="pipeline") == 1


def test_full_queue_refuses_and_stop_answers_everything_queued():
    release = threading.Event()
    seen = []

    def run(items, parameters):
        release.wait(timeout=10)
        seen.append(list(items))
        return [item * 10 for item in items]

    async def scenario():
        batcher = DynamicBatcher(run, max_batch_size=2, max_wait_ms=0, max_queue_size=3)
        batcher.start()
        first = asyncio.create_task(batcher.submit([1, 2]))  # taken by the worker, which blocks in `run`
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit([3, 4, 5]))  # fills the queue (3 items)
        await asyncio.sleep(0.05)
        assert batcher.queue_depth == 3
        with pytest.raises(RequestError, match="queue is full .*max_queue_size=3") as full:
            await batcher.submit([6])
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError, match="shutting down") as closed:
            await batcher.submit([7])
        release.set()
        await stopping
        return full.value, closed.value, await first, await second

    full, closed, first, second = asyncio.run(scenario())
    assert (full.status, full.kind, closed.status, closed.kind) == (503, "queue_full", 503, "shutting_down")
    assert first == [10, 20] and second == [30, 40, 50]  # queued before stop(): all answered
    assert seen == [[1, 2], [3, 4], [5]]


# ---------------------------------------------------------------------------------------------------------- errors


async def chunks(*parts: bytes):
    """A streamed body: sent chunked, without Content-Length, so the limit is checked while reading."""
    for part in parts:
        yield part


def test_bad_requests_get_json_4xx_naming_the_problem_while_good_ones_are_answered(classifier):
    settings = ServerSettings(max_text_chars=40, max_texts_per_request=4, max_body_bytes=1500, max_wait_ms=50)
    app = create_app(classifier, "text-classification", settings=settings)
    bad = [  # (request kwargs, status, words the error must contain)
        ({"content": b'{"inputs": "unclosed'}, 400, "not valid JSON"),
        ({"json": {"inputs": 5}}, 422, "inputs must be a string"),
        ({"json": {"inputs": "  "}}, 422, "inputs[0] has an empty text"),
        ({"json": {"inputs": []}}, 422, "inputs is empty"),
        ({"json": {"text": "好"}}, 422, "inputs: Field required; text: Extra inputs are not permitted"),
        ({"json": {"inputs": "好", "task": "translation"}}, 422, "unknown task 'translation'"),
        ({"json": {"inputs": "好", "parameters": {"topk": 2}}}, 422, "parameters ['topk'] are not accepted"),
        ({"json": {"inputs": {"question": "q?", "context": "c"}}}, 422, "takes a string or a list of strings"),
        ({"json": {"inputs": "很" * 41}}, 413, "41 characters; the limit is max_text_chars=40"),
        ({"json": {"inputs": ["好"] * 5}}, 413, "5 texts; the limit is max_texts_per_request=4"),
        ({"json": {"inputs": "好", "parameters": {"x": "y" * 2000}}}, 413, "max_body_bytes=1500"),
        ({"content": chunks(b'{"inputs": "', b"y" * 2000, b'"}')}, 413, "max_body_bytes=1500"),  # no length
    ]

    async def scenario(client):
        def post(kwargs):
            return client.post("/v1/predict", headers={"content-type": "application/json"}, **kwargs)

        good = [post({"json": {"inputs": text}}) for text in REVIEWS[:4]]
        return await asyncio.gather(*(post(kwargs) for kwargs, _, _ in bad), *good)

    responses = serve_in_process(app, scenario)
    for (kwargs, status, words), response in zip(bad, responses, strict=False):
        assert response.status_code == status, (kwargs, response.text)
        assert response.headers["content-type"] == "application/json"
        assert words in response.json()["error"], response.json()
    for text, response in zip(REVIEWS[:4], responses[len(bad) :], strict=True):
        assert response.status_code == 200
        assert response.json()["outputs"]["label"] == classifier(text)[0]["label"]

    def counted(status):
        return sample(app, "sora_serving_requests_total", path="/v1/predict", method="POST", status=status)

    assert (counted("200"), counted("400"), counted("413"), counted("422")) == (4, 1, 4, 7)
    assert sample(app, "sora_serving_errors_total", kind="invalid_json") == 1
    assert sample(app, "sora_serving_errors_total", kind="invalid") == 7
    assert sample(app, "sora_serving_errors_total", kind="too_large") == 4
    assert sample(app, "sora_serving_items_total") == 4  # no refused request reached the model


def test_health_info_metrics_and_openapi_schema(classifier):
    app = create_app(classifier, "text-classification", model_name="tiny", settings=ServerSettings(max_length=32))

    async def scenario(client):
        await client.post("/v1/predict", json={"inputs": REVIEWS[0]})
        return [await client.get(path) for path in ("/healthz", "/v1/info", "/metrics", "/openapi.json", "/nope")]

    health, info, metrics, schema, missing = serve_in_process(app, scenario)
    assert health.json() == {"status": "ok", "task": "text-classification", "model": "tiny", "queue_depth": 0}
    assert info.json()["parameters"] == ["function_to_apply", "top_k"]
    assert info.json()["limits"]["max_length"] == 32 and info.json()["limits"]["max_batch_size"] == 32
    assert metrics.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(metrics.text)}
    assert {"sora_serving_requests", "sora_serving_batch_size", "sora_serving_errors"} <= set(families)
    counts = [s.value for s in families["sora_serving_batch_size"].samples if s.name.endswith("_count")]
    assert counts == [1.0]
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}

    paths = schema.json()["paths"]
    assert {"/v1/predict", "/healthz", "/metrics", "/v1/info"} <= set(paths)
    predict = paths["/v1/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
    assert predict["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    components = schema.json()["components"]["schemas"]
    assert {"inputs", "parameters", "task"} <= set(components["PredictRequest"]["properties"])
    assert {"question", "context"} == set(components["QuestionAnsweringInput"]["properties"])


def test_question_answering_server_matches_the_pipeline(tokenizer):
    torch.manual_seed(0)
    model = SoraForQuestionAnswering(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer)))).eval()
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    examples = [{"question": "哪里不好？", "context": text} for text in REVIEWS[:3]]
    app = create_app(qa, "question-answering", settings=ServerSettings(max_wait_ms=200))

    async def scenario(client):
        return await asyncio.gather(*(client.post("/v1/predict", json={"inputs": ex}) for ex in examples))

    for example, response in zip(examples, serve_in_process(app, scenario), strict=True):
        expected = qa(**example)
        got = response.json()["outputs"]
        assert (got["start"], got["end"], got["answer"]) == (expected["start"], expected["end"], expected["answer"])
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
    assert sample(app, "sora_serving_batch_size_bucket", le="1.0") == 0  # the three questions went in one call


# ---------------------------------------------------------------------------------------------------------- process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                return s.value
    raise KeyError(name)


def test_serve_process_answers_in_flight_requests_on_sigterm(classifier_dir, classifier):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sora_hf.cli", "serve", str(classifier_dir), "--port", str(port)]
    # a long batching window keeps the requests queued in the server while the signal arrives
    command += ["--max-wait-ms", "1500", "--threads", "1"]
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up in 90 s"
            time.sleep(0.2)

        async def clients():
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                requests = [asyncio.create_task(client.post("/v1/predict", json={"inputs": text})) for text in REVIEWS]
                while await asyncio.to_thread(scrape, base, "sora_serving_queue_depth") < len(REVIEWS):
                    await asyncio.sleep(0.05)
                server.send_signal(signal.SIGTERM)
                return await asyncio.gather(*requests)

        responses = asyncio.run(clients())
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert [r.status_code for r in responses] == [200] * len(REVIEWS)
    for text, response in zip(REVIEWS, responses, strict=True):
        assert response.json()["outputs"]["label"] == classifier(text)[0]["label"]
    with pytest.raises(httpx.TransportError):  # and it is really gone
        httpx.get(f"{base}/healthz", timeout=1)
