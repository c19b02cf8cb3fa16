"""Multi-task (sentiment + NER, one shared encoder) against each single task, from the same pre-trained encoder.

    python benchmarks/multitask_vs_single.py --checkpoint runs/quickstart/pretrain \
        --out benchmarks/results/multitask_vs_single.json [--runs sentiment,ner,multitask,multitask_uncertainty]

Budget: the same data and the same epochs. Every run trains full fine-tuning for one epoch over the same subsets
(`--train-examples` of each task), with the same batch size, learning rate, length and seed. Multi-task sampling is
proportional, so each task's batches are drawn about once per epoch and the multi-task run takes as many optimizer
steps as the two single-task runs together (one model instead of two). Each run is scored on the same test subsets.
Runs can be measured one at a time (`--runs`); the JSON keeps earlier runs and recomputes the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import sora_hf  # noqa: F401  (registers the Sora classes)
from sora_hf.recipes import parse_finetune_recipe, parse_multitask_recipe
from sora_hf.runs import run_finetuning, run_multitask

RUNS = ("sentiment", "ner", "multitask", "multitask_uncertainty")


def common(args: argparse.Namespace, name: str) -> dict:
    return {
        "name": name,
        "checkpoint": args.checkpoint,
        "output_dir": str(Path(args.runs_dir) / name),
        "method": "full",
        "max_length": 128,
        "doc_stride": 32,
        "seed": 42,
        "model": {"multi_level_attention": True, "classifier_pooling": "mean"},
        "training": {
            "num_train_epochs": 1,
            "per_device_train_batch_size": 32,
            "learning_rate": 2e-3,
            "logging_steps": 20,
            "eval_strategy": "no",
            "save_strategy": "no",
        },
    }


def data(args: argparse.Namespace, task: str) -> dict:
    return {"embedded": task, "max_train_examples": args.train_examples, "max_eval_examples": args.test_examples}


def run(args: argparse.Namespace, name: str) -> dict:
    started = time.perf_counter()
    if name in ("sentiment", "ner"):
        metrics = run_finetuning(
            parse_finetune_recipe({**common(args, name), "data": data(args, name)}), overwrite=True
        )
        per_task = {name: {k: v for k, v in metrics.items() if k.startswith("test_") and k != "test_per_type"}}
        steps, seconds = metrics["train_steps"], metrics["train_seconds"]
    else:
        raw = common(args, name)
        raw["training"].pop("eval_strategy")
        raw.update(
            sampling="proportional",
            loss_weighting="uncertainty" if name == "multitask_uncertainty" else "fixed",
            tasks={"sentiment": {"data": data(args, "sentiment")}, "ner": {"data": data(args, "ner")}},
        )
        metrics = run_multitask(parse_multitask_recipe(raw), overwrite=True)
        per_task = {
            task: {k: v for k, v in scores.items() if k.startswith("test_") and k != "test_per_type"}
            | {"train_batches": scores["train_batches"]}
            for task, scores in metrics["tasks"].items()
        }
        steps, seconds = metrics["train_steps"], metrics["train_seconds"]
    result = {"tasks": per_task, "train_steps": steps, "train_seconds": seconds}
    if "learned_loss_weights" in metrics:
        result["learned_loss_weights"] = metrics["learned_loss_weights"]
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def summarise(runs: dict) -> dict:
    """Accuracy and entity F1 side by side, and multi-task / single-task ratios."""
    table = {}
    single = {"sentiment": runs.get("sentiment"), "ner": runs.get("ner")}
    for name, result in runs.items():
        sentiment = result["tasks"].get("sentiment", {}).get("test_accuracy")
        ner = result["tasks"].get("ner", {}).get("test_overall_f1")
        row = {"sentiment_accuracy": sentiment, "ner_entity_f1": ner, "train_steps": result["train_steps"]}
        row["train_seconds"] = result["train_seconds"]
        if name.startswith("multitask"):
            if single["sentiment"]:
                row["sentiment_accuracy_vs_single"] = round(
                    sentiment / single["sentiment"]["tasks"]["sentiment"]["test_accuracy"], 4
                )
            if single["ner"]:
                row["ner_f1_vs_single"] = round(ner / single["ner"]["tasks"]["ner"]["test_overall_f1"], 4)
            if single["sentiment"] and single["ner"]:
                both = single["sentiment"]["train_seconds"] + single["ner"]["train_seconds"]
                row["train_seconds_vs_both_single"] = round(result["train_seconds"] / both, 4)
        table[name] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="runs/quickstart/pretrain")
    parser.add_argument("--runs-dir", default="runs/multitask-bench")
    parser.add_argument("--out", default="benchmarks/results/multitask_vs_single.json")
    parser.add_argument("--runs", default=",".join(RUNS[:3]), help=f"comma-separated, from {RUNS}")
    parser.add_argument("--train-examples", type=int, default=4000)
    parser.add_argument("--test-examples", type=int, default=800)
    args = parser.parse_args()
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; choose from {RUNS}")
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    settings = {
        "checkpoint": args.checkpoint,
        "train_examples_per_task": args.train_examples,
        "test_examples_per_task": args.test_examples,
        "budget": "same data, 1 epoch each; multi-task = proportional sampling, as many steps as both single runs",
    }
    if report.get("settings") not in (None, settings):
        report = {}  # another size: earlier runs are not comparable
    report["settings"] = settings
    report["machine"] = {"platform": platform.platform(), "torch_threads": torch.get_num_threads()}
    report.setdefault("runs", {})
    for name in names:
        report["runs"][name] = run(args, name)
        report["table"] = summarise(report["runs"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["table"], indent=2))


if __name__ == "__main__":
    main()
