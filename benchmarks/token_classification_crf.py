"""Token classification with and without a CRF on People's Daily NER, from the same pre-trained encoder.

    python benchmarks/token_classification_crf.py --out benchmarks/results/token_classification_crf.json

The encoder is `recipes/pretrain/zh-tiny-mlm.yaml` (pre-trained into `<runs>/pretrain` unless it exists). Each
variant fine-tunes `recipes/finetune/ner.yaml` with the same method, epochs, data and seed, once with the softmax head
and once with `model.use_crf: true`; the model is chosen on the validation split carved from train and the test split
is scored once. Each run lands in `<runs>/<variant>` and is reused when its `metrics.json` exists (`--retrain`).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from sora_hf.recipes import find_recipe, load_finetune_recipe, load_pretrain_recipe
from sora_hf.runs import run_finetuning, run_pretraining

KEYS = ("validation_overall_f1", "test_overall_f1", "test_overall_precision", "test_overall_recall", "test_token_accuracy", "train_seconds",
        "validation_loss", "train_examples", "validation_examples", "test_examples")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/crf")
    parser.add_argument("--task", default="ner", choices=("ner", "pos", "seg"))
    parser.add_argument("--method", default="full", choices=("full", "lora"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train-examples", type=int, default=None)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/token_classification_crf.json")
    args = parser.parse_args()
    runs = Path(args.runs)
    encoder = runs / "pretrain"
    if not (encoder / "config.json").is_file():
        recipe = load_pretrain_recipe(find_recipe("zh-tiny-mlm", "pretrain"), {"output_dir": str(encoder)})
        run_pretraining(recipe)
    results = {}
    for variant, use_crf in (("softmax", False), ("crf", True)):
        out = runs / f"{args.task}-{args.method}-{variant}"
        if args.retrain or not (out / "metrics.json").is_file():
            overrides = {"output_dir": str(out), "checkpoint": str(encoder), "method": args.method,
                         "training.num_train_epochs": args.epochs, "model.use_crf": use_crf}  # fmt: skip
            if args.max_train_examples:
                overrides["data.max_train_examples"] = args.max_train_examples
            run_finetuning(load_finetune_recipe(find_recipe(args.task, "finetune"), overrides), overwrite=True)
        metrics = json.loads((out / "metrics.json").read_text())
        results[variant] = {key: metrics.get(key) for key in KEYS}
        print(variant, json.dumps(results[variant]), flush=True)
    report = {
        "task": args.task,
        "method": args.method,
        "epochs": args.epochs,
        "encoder": str(encoder),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "results": results,
        "chosen_on_validation_f1": max(results, key=lambda v: results[v]["validation_overall_f1"]),
        "crf_minus_softmax_test_f1": results["crf"]["test_overall_f1"] - results["softmax"]["test_overall_f1"],
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
