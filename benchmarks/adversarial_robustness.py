"""Plain vs FGM vs PGD vs FreeLB fine-tuning: clean and perturbed test scores and training time, same machine.

    python benchmarks/adversarial_robustness.py --tasks sentiment ner

Each run fine-tunes the pre-trained tiny encoder (`--checkpoint`, default runs/quickstart/pretrain) from the shipped
recipe of the task (recipes/finetune/<task>.yaml) with the same data subset, seed and steps, once per method, and
scores the test subset clean and perturbed (all character kinds mixed at `--rate`, seeded, and each kind alone).
Results are merged into the JSON after every run (one entry per task and method, so the eight runs can be split
over several invocations: `--tasks ner --methods pgd freelb`) with ratios against the plain run of the same task
in the JSON (take them on one machine, one job at a time); a PNG beside it plots clean vs perturbed scores.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sora_hf.recipes import load_finetune_recipe, recipes_dir
from sora_hf.runs import run_finetuning

METHODS = {
    "plain": {},
    "fgm": {"method": "fgm", "epsilon": 0.1},
    "pgd": {"method": "pgd", "epsilon": 0.1, "alpha": 0.05, "steps": 3},
    "freelb": {"method": "freelb", "epsilon": 0.1, "alpha": 0.04, "steps": 3},
}
HEADLINE = {"sentiment": "test_accuracy", "ner": "test_overall_f1"}


def settings_for(method: str, epsilon: float | None) -> tuple[str, dict]:
    """The run's label and adversarial section; `--epsilon` rescales epsilon and alpha of the defaults."""
    section = dict(METHODS[method])
    if epsilon is None or not section:
        return method, section
    scale = epsilon / section["epsilon"]
    section["epsilon"] = epsilon
    if "alpha" in section:
        section["alpha"] = round(section["alpha"] * scale, 6)
    return f"{method} eps={epsilon:g}", section


def run_one(task: str, method: str, args) -> dict:
    label, section = settings_for(method, args.epsilon)
    overrides = {
        "checkpoint": args.checkpoint,
        "output_dir": str(Path(args.runs) / f"{task}-{label.replace(' ', '-')}"),
        "method": args.finetune,
        "data.max_train_examples": args.train_examples,
        "data.max_eval_examples": args.test_examples,
        "training.num_train_epochs": args.epochs,
        "training.eval_strategy": "no",
        "training.save_strategy": "no",
        "training.disable_tqdm": True,
        "robustness": {"rate": args.rate, "seed": args.seed, "per_kind": True},
    }
    if section:
        overrides["adversarial"] = section
    recipe = load_finetune_recipe(recipes_dir() / "finetune" / f"{task}.yaml", overrides)
    started = time.perf_counter()
    metrics = run_finetuning(recipe, overwrite=True)
    robustness = metrics["robustness"]
    return {
        "task": task,
        "method": method,
        "label": label,
        "adversarial": section,
        "metric": robustness["metric"],
        "clean": metrics[robustness["metric"]],
        "perturbed": robustness["perturbed"],
        "drop": robustness["drop"],
        "per_kind": {k: v[robustness["metric"]] for k, v in robustness["per_kind"].items()},
        "edited_fraction": robustness["edited_fraction"],
        "train_seconds": metrics["train_seconds"],
        "train_steps": metrics["train_steps"],
        "train_examples": metrics["train_examples"],
        "test_examples": metrics["test_examples"],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def add_ratios(entries: list[dict]) -> None:
    plain = {e["task"]: e for e in entries if e["method"] == "plain"}
    for entry in entries:
        base = plain.get(entry["task"])
        if base is None:
            continue
        entry["train_time_vs_plain"] = round(entry["train_seconds"] / base["train_seconds"], 2)
        entry["clean_minus_plain"] = round(entry["clean"] - base["clean"], 4)
        entry["perturbed_minus_plain"] = round(entry["perturbed"] - base["perturbed"], 4)


def plot(entries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({e["task"] for e in entries})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), dpi=110, squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = [e for e in entries if e["task"] == task]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [e["clean"] for e in rows], width=0.4, label="clean")
        ax.bar([i + 0.2 for i in x], [e["perturbed"] for e in rows], width=0.4, label="perturbed")
        ax.set_xticks(list(x), [f"{e.get('label', e['method'])}\n{e['train_seconds']:.0f}s" for e in rows], fontsize=8)
        low = min(e["perturbed"] for e in rows)
        ax.set_ylim(max(0.0, low - 0.1), 1.0)
        ax.set_title(f"{task}: {rows[0]['metric']} (rate {rows[0]['edited_fraction']:.2f} edited)")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "ner"], choices=sorted(HEADLINE))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--checkpoint", default="runs/quickstart/pretrain")
    parser.add_argument("--finetune", default="full", choices=["full", "lora"])
    parser.add_argument("--train-examples", type=int, default=4000)
    parser.add_argument("--test-examples", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilon", type=float, default=None, help="rescale the methods' epsilon (and alpha)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="runs/adversarial")
    parser.add_argument("--out", default="benchmarks/results/adversarial_robustness.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    for task in args.tasks:
        for method in args.methods:
            entry = run_one(task, method, args)
            print(json.dumps(entry, ensure_ascii=False), flush=True)
            save(out, entry, args)  # after every run, so a cut-off invocation keeps what it finished


def _key(entry: dict) -> tuple[str, str]:
    return entry["task"], entry.get("label", entry["method"])


def save(out: Path, entry: dict, args) -> None:
    previous = json.loads(out.read_text())["runs"] if out.is_file() else []
    entries = [e for e in previous if _key(e) != _key(entry)] + [entry]
    entries.sort(key=lambda e: (e["task"], list(METHODS).index(e["method"]), e["adversarial"].get("epsilon", 0)))
    add_ratios(entries)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "what": "fine-tuning from the tiny pre-trained encoder, plain vs adversarial; clean and perturbed test score",
        "settings": {
            "finetune": args.finetune,
            "train_examples": args.train_examples,
            "test_examples": args.test_examples,
            "epochs": args.epochs,
            "rate": args.rate,
            "seed": args.seed,
            "threads": args.threads,
            "methods": METHODS,
        },
        "machine": {"platform": platform.platform(), "cpu_count": torch.get_num_threads(), "torch": torch.__version__},
        "runs": entries,
    }
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(entries, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
