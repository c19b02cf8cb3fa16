"""The results table: every embedded task fine-tuned from one pre-trained checkpoint, full and LoRA, beside its
classical reference.

    python benchmarks/references.py            # once: the references, chosen on validation (needs [benchmarks])
    python benchmarks/quality.py --checkpoint runs/zh-tiny-mlm-1h --out benchmarks/results/quality.json

Each run is `recipes/finetune/<task>.yaml` as shipped (its defaults were chosen on the carved validation split) with
`checkpoint` and `method` set; the test split is scored once, at the end of each run. Runs whose `metrics.json`
already exists under `--runs` are read, not repeated (`--retrain` repeats them). Writes the JSON, a PNG beside it
and prints the README's markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from sora_hf.recipes import find_recipe, load_finetune_recipe
from sora_hf.runs import run_finetuning

# the task's headline score (its metrics.json key without the split prefix), as the references report it
METRIC = {"sentiment": "accuracy", "ner": "overall_f1", "pos": "overall_f1", "seg": "overall_f1"}
METHODS = ("full", "lora")


def run_one(task: str, method: str, checkpoint: str, runs: Path, retrain: bool, overrides: dict) -> dict:
    out = runs / f"{task}-{method}"
    if retrain or not (out / "metrics.json").is_file():
        given = {"checkpoint": checkpoint, "method": method, "output_dir": str(out), **overrides}
        run_finetuning(load_finetune_recipe(find_recipe(task, "finetune"), given), overwrite=True)
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics.get("checkpoint") != checkpoint:
        raise SystemExit(f"{out} was fine-tuned from {metrics.get('checkpoint')}, not {checkpoint}: use --retrain")
    metric = METRIC[task]
    return {
        "task": task,
        "method": method,
        "metric": metric,
        "validation": metrics.get(f"validation_{metric}"),
        "test": metrics[f"test_{metric}"],
        "train_seconds": metrics["train_seconds"],
        "epochs_trained": metrics.get("epochs_trained"),
        "trainable_parameters": metrics.get("trainable_parameters"),
    }


def table(rows: list[dict], references: dict) -> str:
    """The README's markdown table: one line per task, Sora full / LoRA beside the reference, with train times."""
    lines = [
        "| task | metric | Sora full: validation / test (train time) | Sora LoRA: validation / test (train time) "
        "| reference: test (train time) |",
        "|---|---|---|---|---|",
    ]

    def cell(row: dict | None) -> str:
        if row is None:
            return "not run"
        validation = "-" if row["validation"] is None else f"{row['validation']:.3f}"
        return f"{validation} / {row['test']:.3f} ({row['train_seconds'] / 60:.1f} min)"

    for task in dict.fromkeys(r["task"] for r in rows):
        by_method = {r["method"]: r for r in rows if r["task"] == task}
        ref = references.get(task)
        ref_cell = "not measured"
        if ref is not None:
            ref_cell = f"{ref['reference']}: {ref[f'test_{METRIC[task]}']:.3f} ({ref['train_seconds'] / 60:.1f} min)"
        lines.append(f"| {task} | {METRIC[task]} | {cell(by_method.get('full'))} | {cell(by_method.get('lora'))} "
                     f"| {ref_cell} |")  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[dict], references: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    bars = [*METHODS, "reference"]
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 4), dpi=110)
    width = 0.8 / len(bars)
    for i, bar in enumerate(bars):
        heights = []
        for task in tasks:
            if bar == "reference":
                ref = references.get(task)
                heights.append(ref[f"test_{METRIC[task]}"] if ref else 0.0)
            else:
                row = next((r for r in rows if r["task"] == task and r["method"] == bar), None)
                heights.append(row["test"] if row else 0.0)
        positions = [t + (i - (len(bars) - 1) / 2) * width for t in range(len(tasks))]
        drawn = ax.bar(positions, heights, width, label=bar if bar == "reference" else f"Sora {bar}")
        ax.bar_label(drawn, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(range(len(tasks)), [f"{t}\n({METRIC[t]})" for t in tasks])
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("test score (scored once)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/zh-tiny-mlm-1h", help="a pre-trained Sora encoder folder")
    parser.add_argument("--tasks", nargs="+", default=list(METRIC), choices=list(METRIC))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--references", default="benchmarks/results/references.json")
    parser.add_argument("--runs", default="runs/quality")
    parser.add_argument("--retrain", action="store_true", help="repeat runs whose metrics.json exists")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides for every run, e.g. data.max_train_examples=64 (a quick check)")  # fmt: skip
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    args = parser.parse_args(argv)
    import yaml

    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    references_path = Path(args.references)
    references = json.loads(references_path.read_text()) if references_path.is_file() else {}
    pretrained = Path(args.checkpoint) / "metrics.json"
    rows = []
    for task in args.tasks:
        for method in args.methods:
            rows.append(run_one(task, method, args.checkpoint, Path(args.runs), args.retrain, overrides))
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "checkpoint": args.checkpoint,
        "pretraining": json.loads(pretrained.read_text()) if pretrained.is_file() else None,
        "overrides": overrides,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "rows": rows,
        "references": {task: references[task] for task in args.tasks if task in references},
        "table": table(rows, references),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot(rows, references, out.with_suffix(".png"), f"Sora from {args.checkpoint} vs classical references")
    print(report["table"])
    return report


if __name__ == "__main__":
    main()
