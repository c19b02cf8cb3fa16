"""`sora-hf serve` on SIGTERM under load: every request the server read is answered (200, or 503 with
`Connection: close`), over keep-alive and fresh connections alike; a client that comes too late is refused at
connect time, never cut after it sent its request."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import torch
from helpers import tiny_config_kwargs

from sora_hf import SoraConfig, SoraForSequenceClassification
from sora_hf.tokenizer import train_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["这个手机的屏幕很好，电池也耐用。", "物流太慢了，包装也破了，很失望。", "价格便宜，质量不错，推荐购买！"]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    tokenizer = train_tokenizer(iter(TEXTS * 10), vocab_size=120, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), id2label={0: "neg", 1: "pos"}))
    path = tmp_path_factory.mktemp("classifier")
    SoraForSequenceClassification(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sora_hf.cli", "serve", str(checkpoint), "--port", str(port), "--threads", "1"]
    server = subprocess.Popen(
        [*command, *extra], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 90
    while True:
        assert server.poll() is None, server.stdout.read().decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up in 90 s"
        time.sleep(0.2)


def raw_request(sock: socket.socket) -> bytes:
    """One keep-alive request on a raw socket, and everything read until the response is whole (or the socket
    closes: then what came, maybe nothing)."""
    body = json.dumps({"inputs": TEXTS[0]}).encode()
    head = f"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    try:
        sock.sendall(head.encode() + body)
    except OSError:
        return b""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return received
        received += chunk
        head_end = received.find(b"\r\n\r\n")
        if not chunk:
            return received
        if head_end >= 0:
            length = next(
                int(line.split(b":")[1])
                for line in received[:head_end].lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            if len(received) >= head_end + 4 + length:
                return received


async def fire(base: str, server: subprocess.Popen, n: int, signal_after: int) -> tuple[list[str], bytes]:
    """`n` concurrent requests, half over one keep-alive client, half each on a fresh connection; SIGTERM once
    `signal_after` of them were answered. Returns one outcome per request: the status code, `refused` (the
    connection was refused: nothing was sent), or `cut: ...` (sent, then no answer); and the answer to a request
    sent, a second after the signal, on a keep-alive connection that was idle when the signal came."""
    answered = 0
    signalled = asyncio.Event()
    port = int(base.rsplit(":", 1)[1])
    idle = socket.socket()
    late_answer = asyncio.get_running_loop().create_future()

    async def send_late() -> None:
        await asyncio.sleep(1.0)  # the server has begun its shutdown
        late_answer.set_result(await asyncio.to_thread(raw_request, idle))

    async def one(client: httpx.AsyncClient, i: int) -> str:
        nonlocal answered
        try:
            response = await client.post("/v1/predict", json={"inputs": TEXTS[i % len(TEXTS)]})
        except httpx.ConnectError:
            return "refused"
        except httpx.TransportError as error:
            return f"cut: {type(error).__name__}: {error} {'fresh' if i % 2 == 0 else 'keep-alive'}"
        answered += 1
        if answered >= signal_after and not signalled.is_set():
            signalled.set()
            idle.settimeout(30)
            idle.connect(("127.0.0.1", port))
            assert raw_request(idle).startswith(b"HTTP/1.1 200 ")  # now idle, kept alive
            server.send_signal(signal.SIGTERM)
            asyncio.ensure_future(send_late())
        if response.status_code == 503:
            assert response.headers.get("connection") == "close", response.headers
            assert "shutting down" in response.json()["error"]
        return str(response.status_code)

    async def fresh(i: int) -> str:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            return await one(client, i)

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as shared:
        # warm the pool: these keep-alive connections are idle when the signal comes
        await asyncio.gather(*(shared.get("/healthz") for _ in range(20)))
        tasks = [one(shared, i) if i % 2 else fresh(i) for i in range(n)]
        outcomes = await asyncio.gather(*tasks)
    late = await late_answer
    idle.close()
    return outcomes, late


def test_sigterm_under_load_answers_or_refuses_every_request(classifier_dir):
    port = free_port()
    server = start_server(classifier_dir, port, "--max-wait-ms", "5", "--max-batch-size", "16")
    try:
        outcomes, late = asyncio.run(fire(f"http://127.0.0.1:{port}", server, n=300, signal_after=40))
        output = server.communicate(timeout=30)[0].decode()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    cut = [outcome for outcome in outcomes if outcome.startswith("cut")]
    counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes) if not outcome.startswith("cut")}
    assert not cut, (Counter(cut), counts, output[-2000:])
    assert set(counts) <= {"200", "503", "refused"}, counts
    assert counts.get("200", 0) >= 40
    # a request on a keep-alive connection that was idle when the signal came: answered, and told to go away
    assert late.startswith(b"HTTP/1.1 503 "), late
    assert b"connection: close" in late.lower() and b"shutting down" in late, late
    assert server.returncode == 0, output[-3000:]
