"""Multi-level attention pooling against plain last-layer CLS and mean pooling, same encoder, data and seed.

    python benchmarks/pooling.py --out benchmarks/results/pooling.json

The seeds' "multi-level attention" (a learned mix of every layer's pooled vector) is on by default in every pooled
head; this runs `recipes/finetune/<task>.yaml` three times from one pre-trained encoder (`--checkpoint`, default the
one `benchmarks/token_classification_crf.py` pre-trains) with `model.multi_level_attention` on (mean, as shipped), off
(mean) and off (CLS), and reports validation accuracy (what the choice is made on) and the test score (reported, not chosen on).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from sora_hf.recipes import find_recipe, load_finetune_recipe
from sora_hf.runs import run_finetuning

VARIANTS = {
    "multi_level_mean": {"model.multi_level_attention": True, "model.classifier_pooling": "mean"},
    "last_layer_cls": {"model.multi_level_attention": False, "model.classifier_pooling": "cls"},
    "last_layer_mean": {"model.multi_level_attention": False, "model.classifier_pooling": "mean"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/crf/pretrain")
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--method", default="full", choices=("full", "lora"))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--runs", default="runs/pooling")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/pooling.json")
    args = parser.parse_args()
    results = {}
    for variant, overrides in VARIANTS.items():
        out = Path(args.runs) / f"{args.task}-{args.method}-{variant}"
        if args.retrain or not (out / "metrics.json").is_file():
            overrides = {**overrides, "output_dir": str(out), "checkpoint": args.checkpoint, "method": args.method,
                         "training.num_train_epochs": args.epochs}  # fmt: skip
            run_finetuning(load_finetune_recipe(find_recipe(args.task, "finetune"), overrides), overwrite=True)
        metrics = json.loads((out / "metrics.json").read_text())
        results[variant] = {k: v for k, v in metrics.items() if k.startswith(("test_", "validation_", "train_sec"))
                            and not isinstance(v, dict | list)}  # fmt: skip
        print(variant, json.dumps(results[variant]), flush=True)
    chosen = max(results, key=lambda v: results[v]["validation_accuracy"])
    report = {
        "task": args.task,
        "method": args.method,
        "epochs": args.epochs,
        "checkpoint": args.checkpoint,
        "machine": {"cpu": platform.processor() or platform.machine()},
        "results": results,
        "chosen_on_validation_accuracy": chosen,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
