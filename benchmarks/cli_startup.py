"""How long `sora-hf` takes to answer when it has nothing to train: `--help`, and a refused recipe.

Every CLI call used to import torch and transformers first (5-27 s on a 2-core machine) even to print its help or
to refuse a misspelt recipe key. This script times whole processes, `python -m sora_hf.cli ...`, for each source
tree given (`--variant NAME=PATH`, put first on PYTHONPATH), interleaved run by run (A B A B ...) so that a
machine whose speed drifts affects every variant alike, and writes the median, min and max wall and CPU seconds,
and whether torch was imported, to benchmarks/results/cli_startup.json.

    git worktree add /tmp/sora-old b63f3b4        # the code before the change
    python benchmarks/cli_startup.py --variant before=/tmp/sora-old --variant after=. --runs 7
    git worktree remove /tmp/sora-old
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "pretrain" / "zh-tiny-mlm.yaml"
# refused by every version: a misspelt Trainer key (the old parser imported transformers to check it)
COMMANDS = {
    "help": ["--help"],
    "pretrain_help": ["pretrain", "--help"],
    "refused_recipe": ["pretrain", str(RECIPE), "--set", "training.max_stepz=3"],
}


def _environment(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run_once(tree: Path, args: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + sys, from the OS's accounting of the child) and the exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sora_hf.cli", *args],
        cwd=cwd,
        env=_environment(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.returncode


def heavy_imports(tree: Path, args: list[str], cwd: Path) -> list[str]:
    """Which of torch / transformers the command imported (`python -X importtime`)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sora_hf.cli", *args],
        cwd=cwd,
        env=_environment(tree),
        capture_output=True,
        text=True,
        timeout=300,
    )
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    return sorted(names & {"torch", "transformers"})


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", metavar="NAME=PATH", help="a source tree to time (repeatable)")
    parser.add_argument("--runs", type=int, default=7, help="counted runs per command and variant")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (file cache, bytecode)")
    parser.add_argument("--note", action="append", default=[], metavar="NAME=TEXT", help="what a variant is")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "cli_startup.json")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in (args.variant or [f"checkout={REPO}"]))
    trees = {name: Path(path).resolve() for name, path in variants.items()}
    notes = dict(n.split("=", 1) for n in args.note)

    results: dict[str, dict] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as folder:  # outside the repository
        cwd = Path(folder)
        for command, cli_args in COMMANDS.items():
            samples = {name: {"wall": [], "cpu": [], "rc": set()} for name in trees}
            for run in range(args.warmup + args.runs):
                for name, tree in trees.items():  # interleaved: A B A B ...
                    wall, cpu, rc = run_once(tree, cli_args, cwd)
                    if run >= args.warmup:
                        samples[name]["wall"].append(wall)
                        samples[name]["cpu"].append(cpu)
                        samples[name]["rc"].add(rc)
            for name, tree in trees.items():
                results[name][command] = {
                    "wall_s": _summary(samples[name]["wall"]),
                    "cpu_s": _summary(samples[name]["cpu"]),
                    "exit_codes": sorted(samples[name]["rc"]),
                    "imports": heavy_imports(tree, cli_args, cwd),
                }
                print(f"{name:>12} {command:<16} wall {results[name][command]['wall_s']}", flush=True)

    names = list(trees)
    ratios = {}
    if len(names) > 1:
        first = names[0]
        for other in names[1:]:
            ratios[f"{first}/{other}"] = {
                command: round(
                    results[first][command]["wall_s"]["median"] / results[other][command]["wall_s"]["median"], 1
                )
                for command in COMMANDS
            }
    report = {
        "what": "whole-process seconds of `python -m sora_hf.cli ARGS`, run from a folder outside the repository",
        "commands": {name: " ".join(cli_args).replace(str(REPO), "<repo>") for name, cli_args in COMMANDS.items()},
        "runs": args.runs,
        "warmup": args.warmup,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "variants": {name: notes.get(name, "") for name in trees},
        "results": results,
        "median_wall_ratio": ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(ratios, indent=2))


if __name__ == "__main__":
    main()
