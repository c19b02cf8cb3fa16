"""Fine-tuning defaults chosen on validation data: learning rates for `method: full` and `method: lora`, with early
stopping on the validation loss, from one pre-trained encoder.

    python benchmarks/finetuning_defaults.py --checkpoint runs/zh-tiny-mlm-1h --task sentiment \
        --out benchmarks/results/finetuning_defaults.json

Every run is `recipes/finetune/<task>.yaml` with `checkpoint`, `method` and `training.learning_rate` set, at most
`--epochs` epochs with `early_stopping_patience` 1 (the best epoch kept). The choice is the rate with the best
validation score (accuracy / entity F1 on the split carved from train); test scores are written beside it for the
record, never used to choose (nor their train times, when two runs share the machine: `torch_threads` says how
many threads each had). Results accumulate in `--out` per task and method, so tasks can be run one at a time.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from quality import METRIC  # the results table's headline score per task (run from benchmarks/ as a script)

from sora_hf.recipes import find_recipe, load_finetune_recipe
from sora_hf.runs import run_finetuning

RATES = {"full": [3e-4, 1e-3, 3e-3], "lora": [1e-3, 3e-3, 1e-2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/zh-tiny-mlm-1h")
    parser.add_argument("--task", default="sentiment", choices=list(METRIC))
    parser.add_argument("--methods", nargs="+", default=["full", "lora"], choices=list(RATES))
    parser.add_argument("--rates", nargs="+", type=float, default=None, help="instead of the method's grid")
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides for every run")
    parser.add_argument("--runs", default="runs/finetuning_defaults")
    parser.add_argument("--out", default="benchmarks/results/finetuning_defaults.json")
    args = parser.parse_args()
    import torch
    import yaml

    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update(checkpoint=args.checkpoint, machine={"cpu": platform.processor() or platform.machine()})
    metric = METRIC[args.task]
    for method in args.methods:
        results = {}
        for rate in args.rates or RATES[method]:
            suffix = "".join(f"-{k.split('.')[-1]}{v}" for k, v in extra.items())
            folder = Path(args.runs) / f"{args.task}-{method}-lr{rate:g}{suffix}"
            if not (folder / "metrics.json").is_file():
                overrides = {"checkpoint": args.checkpoint, "method": method, "output_dir": str(folder),
                             "training.learning_rate": rate, "training.num_train_epochs": args.epochs,
                             "early_stopping_patience": 1, **extra}  # fmt: skip
                run_finetuning(load_finetune_recipe(find_recipe(args.task, "finetune"), overrides), overwrite=True)
            m = json.loads((folder / "metrics.json").read_text())
            results[f"{rate:g}"] = {
                "validation": m[f"validation_{metric}"], "validation_loss": m["validation_loss"],
                "test": m[f"test_{metric}"], "epochs_trained": m.get("epochs_trained"), "best_step": m.get("best_step"),
                "train_seconds": m["train_seconds"], "torch_threads": torch.get_num_threads(),
            }  # fmt: skip
            print(args.task, method, rate, json.dumps(results[f"{rate:g}"]), flush=True)
        key = f"{args.task}/{method}" + "".join(f"/{k}={v}" for k, v in extra.items())
        report = json.loads(out.read_text()) if out.is_file() else report  # another process may have added a key
        results = {**report.get(key, {}).get("results", {}), **results}  # runs of other rates, other invocations
        chosen = max(results, key=lambda r: results[r]["validation"])
        report[key] = {"metric": metric, "max_epochs": args.epochs, "early_stopping_patience": 1,
                       "results": dict(sorted(results.items(), key=lambda kv: float(kv[0]))),
                       "chosen_learning_rate": float(chosen)}  # fmt: skip
        out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if "/" in k}, indent=2))


if __name__ == "__main__":
    main()
