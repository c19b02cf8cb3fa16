"""Load test of `sora-hf serve`: latency percentiles, throughput, errors and lost requests, dynamic batching on vs off.

    python benchmarks/load_test.py --checkpoint runs/cmp/sentiment-full --out benchmarks/results/load_test.json
    python benchmarks/load_test.py --url http://127.0.0.1:8000          # a server you started yourself

With --checkpoint it starts the server twice on 127.0.0.1, as `python -m sora_hf.cli serve` subprocesses, one after
the other: with dynamic batching (--max-batch-size, --forward-batch-size, --max-wait-ms) and without (max batch size 1, the reference);
each gets the same bounded number of requests from 1 and from several concurrent clients (asyncio + httpx, one
keep-alive connection per client), each request one real review from the embedded sentiment test split. Then a mixed
phase sends bad requests (malformed JSON, empty and oversized texts, unknown task) among good ones: the bad must get
their 4xx, the good ones must all be answered. Finally SIGTERM, and the server's exit status is recorded.

Reported per phase: p50/p90/p99 latency, requests/s, errors (non-200 answers and transport failures), lost requests
(sent minus answered), the accuracy of the answers against the review labels (proof that the answers are the model's),
and the batch sizes the server ran (from its /metrics). Ratios compare batching on/off in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: str, port: int, batching: dict[str, float], threads: int):
    command = [
        sys.executable,
        "-m",
        "sora_hf.cli",
        "serve",
        checkpoint,
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]
    for flag, value in batching.items():
        command += [f"--{flag.replace('_', '-')}", str(value)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("the server did not answer /healthz within 120 s")
        time.sleep(0.2)


def stop_server(server: subprocess.Popen) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


def scrape(base: str) -> dict[str, float]:
    """The server's batch-size histogram and error counters, as flat {sample name + labels: value}."""
    values = {}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text):
        for s in family.samples:
            if s.name.startswith(("sora_serving_batch_size", "sora_serving_errors_total", "sora_serving_items")):
                key = s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()))
                values[key] = s.value
    return values


def batch_sizes(before: dict[str, float], after: dict[str, float]) -> dict:
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    calls = delta.get("sora_serving_batch_size_count", 0.0)
    buckets = {
        key.split("le=")[1].rstrip("}"): value
        for key, value in sorted(delta.items())
        if key.startswith("sora_serving_batch_size_bucket")
    }
    return {
        "calls": calls,
        "mean": delta.get("sora_serving_batch_size_sum", 0.0) / calls if calls else 0.0,
        "cumulative_buckets": buckets,  # calls with at most `le` items
        "server_errors": {k: v for k, v in delta.items() if k.startswith("sora_serving_errors_total") and v},
    }


# ---------------------------------------------------------------------------------------------------------- clients


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def drive(base: str, bodies: list, concurrency: int, expect: list) -> dict:
    """Send every body once from `concurrency` clients; `expect[i]` is the label (good) or the 4xx status (bad)."""
    order = itertools.count()
    latencies, answered, errors, correct, wrong_status = [], 0, 0, 0, 0
    failures: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal answered, errors, correct, wrong_status
        while (i := next(order)) < len(bodies):
            body, expected = bodies[i], expect[i]
            start = time.perf_counter()
            try:
                if isinstance(body, bytes):
                    response = await client.post(
                        "/v1/predict", content=body, headers={"content-type": "application/json"}
                    )
                else:
                    response = await client.post("/v1/predict", json=body)
            except httpx.HTTPError as error:
                failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            answered += 1
            if isinstance(expected, int):  # a bad request: must be refused with this status
                wrong_status += response.status_code != expected
                continue
            if response.status_code != 200:
                errors += 1
                failures[str(response.status_code)] = failures.get(str(response.status_code), 0) + 1
                continue
            correct += response.json()["outputs"]["label"] == expected

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    good = sum(not isinstance(e, int) for e in expect)
    latencies.sort()
    return {
        "concurrency": concurrency,
        "sent": len(bodies),
        "answered": answered,
        "lost": len(bodies) - answered,
        "errors": errors,
        "failures": failures,
        "bad_requests_with_wrong_status": wrong_status,
        "seconds": elapsed,
        "throughput_rps": len(bodies) / elapsed,
        "latency_ms": {
            "p50": 1000 * percentile(latencies, 50),
            "p90": 1000 * percentile(latencies, 90),
            "p99": 1000 * percentile(latencies, 99),
            "max": 1000 * latencies[-1] if latencies else float("nan"),
            "mean": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
        },
        "accuracy_vs_labels": correct / good if good else None,
    }


def bad_requests(max_text_chars: int) -> list[tuple[object, int]]:
    return [
        (b'{"inputs": "unclosed', 400),
        ({"inputs": ""}, 422),
        ({"inputs": "好" * (max_text_chars + 1)}, 413),
        ({"inputs": "好", "task": "translation"}, 422),
        ({"inputs": 5}, 422),
    ]


def run_phases(base: str, texts: list[str], labels: list[str], args: argparse.Namespace) -> dict:
    phases = {}
    warm = [{"inputs": text} for text in texts[:50]]
    asyncio.run(drive(base, warm, 4, labels[:50]))
    for concurrency in args.concurrency:
        bodies = [{"inputs": texts[i % len(texts)]} for i in range(args.requests)]
        expect = [labels[i % len(texts)] for i in range(args.requests)]
        before = scrape(base)
        result = asyncio.run(drive(base, bodies, concurrency, expect))
        result["batch_sizes"] = batch_sizes(before, scrape(base))
        phases[f"clients_{concurrency}"] = result
        print(
            f"  {concurrency:>3} clients: {result['throughput_rps']:7.1f} req/s  p50 {result['latency_ms']['p50']:6.1f} ms"
            f"  p99 {result['latency_ms']['p99']:7.1f} ms  errors {result['errors']}  lost {result['lost']}"
            f"  mean batch {result['batch_sizes']['mean']:.1f}",
            flush=True,
        )
    # bad requests among good ones: every 10th request is bad
    bad = bad_requests(args.max_text_chars)
    bodies, expect = [], []
    for i in range(args.mixed_requests):
        if i % 10 == 9:
            body, status = bad[(i // 10) % len(bad)]
            bodies.append(body)
            expect.append(status)
        else:
            bodies.append({"inputs": texts[i % len(texts)]})
            expect.append(labels[i % len(texts)])
    before = scrape(base)
    mixed = asyncio.run(drive(base, bodies, max(args.concurrency), expect))
    mixed["batch_sizes"] = batch_sizes(before, scrape(base))
    mixed["bad_sent"] = sum(isinstance(e, int) for e in expect)
    phases["mixed_bad_requests"] = mixed
    print(
        f"  mixed: {mixed['bad_sent']} bad requests, {mixed['bad_requests_with_wrong_status']} with a wrong status;"
        f" good ones: errors {mixed['errors']}, lost {mixed['lost']}",
        flush=True,
    )
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", help="start servers for this checkpoint (batching on, then off)")
    target.add_argument("--url", help="drive a running server instead (no on/off comparison)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--mixed-requests", type=int, default=500, help="requests of the bad-input phase")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--forward-batch-size", type=int, default=8)
    parser.add_argument("--max-text-chars", type=int, default=4096, help="the server's limit (for the 413 case)")
    parser.add_argument("--threads", type=int, default=1, help="server torch threads (the clients need a core)")
    parser.add_argument("--out", default="benchmarks/results/load_test.json")
    args = parser.parse_args()

    from sora_hf.data.tasks import load_embedded_task

    dataset, info = load_embedded_task("sentiment")
    test = dataset["test"]
    texts = list(test["text"])
    labels = [info.label_names[label] for label in test["label"]]
    report = {
        "command": " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "data": f"{len(texts)} sentiment test reviews (cycled), one review per request, "
        f"median {statistics.median(len(t) for t in texts):.0f} characters",
        "server_threads": args.threads,
        "runs": {},
    }
    if args.url:
        print(f"driving {args.url}", flush=True)
        report["runs"]["target"] = {"url": args.url, "phases": run_phases(args.url, texts, labels, args)}
    else:
        configs = {
            "batched": {
                "max_batch_size": args.max_batch_size,
                "forward_batch_size": args.forward_batch_size,
                "max_wait_ms": args.max_wait_ms,
            },
            # the reference: one model call per request
            "unbatched": {"max_batch_size": 1, "forward_batch_size": 1, "max_wait_ms": 0},
        }
        for name, batching in configs.items():
            print(f"{name}: {batching}", flush=True)
            server, base = start_server(args.checkpoint, free_port(), batching, args.threads)
            try:
                phases = run_phases(base, texts, labels, args)
            finally:
                exit_code = stop_server(server)
            report["runs"][name] = {
                "checkpoint": args.checkpoint,
                **batching,
                "phases": phases,
                "exit_code_after_sigterm": exit_code,
            }
            print(f"  exit code after SIGTERM: {exit_code}", flush=True)
        on, off = report["runs"]["batched"]["phases"], report["runs"]["unbatched"]["phases"]
        report["ratios_batched_over_unbatched"] = {
            key: {
                "throughput": on[key]["throughput_rps"] / off[key]["throughput_rps"],
                "p50_latency": on[key]["latency_ms"]["p50"] / off[key]["latency_ms"]["p50"],
                "p99_latency": on[key]["latency_ms"]["p99"] / off[key]["latency_ms"]["p99"],
            }
            for key in on
            if key.startswith("clients_")
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(report.get("ratios_batched_over_unbatched", {}), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
