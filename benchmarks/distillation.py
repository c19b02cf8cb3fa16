"""Distillation on review sentiment: how much of the teacher's score a 2-layer student keeps, at what size and speed.

    python benchmarks/distillation.py --out benchmarks/results/distillation.json
    # multilingual-e5-small fine-tuned on sentiment (12 layers, 384 wide) into a native 4-layer, 128-wide Sora that
    # reads its trimmed vocabulary (recipes/pretrain/e5-student-mlm.yaml); hidden states are not matched
    python benchmarks/distillation.py --recipe e5-sentiment-distill --teacher runs/e5/quality/sentiment-full \
        --checkpoint runs/e5/student-mlm --runs runs/e5/distill --epochs 3 \
        --only plain --only soft_targets --only latency --out benchmarks/results/e5_distillation.json

Teacher: the full-fine-tuned 4-layer Sora at `runs/cmp/sentiment-full`. Students: layers 0 and 2 of the pre-trained
encoder the teacher came from (`runs/quickstart/pretrain`), trained from `recipes/finetune/sentiment-distill.yaml`
with the same data, steps and seed three ways: labels only (`alpha: 0`, the plain baseline: no teacher term at all),
soft targets (`hidden_weight: 0`), and soft targets plus hidden states (the recipe as shipped). All are scored on
the same test split; CPU latency of teacher and student (model forward on tokenised reviews, batch 1 and batch 32,
median of interleaved repeats, same process and threads) is measured last.

Each student run lands in `<runs>/<variant>` and is reused when its `metrics.json` exists (`--retrain` redoes it),
so `--only plain` etc. can split the work into shorter commands.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

import sora_hf
from sora_hf.recipes import find_recipe, load_finetune_recipe
from sora_hf.runs import run_finetuning

VARIANTS = {
    "plain": {"distillation.alpha": 0.0, "distillation.hidden_weight": 0.0},
    "soft_targets": {"distillation.hidden_weight": 0.0},
    "soft_targets_hidden": {},
}


def train_student(variant: str, args) -> dict:
    output_dir = Path(args.runs) / variant
    metrics_path = output_dir / "metrics.json"
    if metrics_path.is_file() and not args.retrain:
        return json.loads(metrics_path.read_text())
    overrides = {
        **VARIANTS[variant],
        "output_dir": str(output_dir),
        "distillation.teacher": args.teacher,
        "checkpoint": args.checkpoint,
        "training.num_train_epochs": args.epochs,
        "training.eval_strategy": "no",
        "training.save_strategy": "no",
    }
    if args.max_train_examples:
        overrides["data.max_train_examples"] = args.max_train_examples
    return run_finetuning(load_finetune_recipe(find_recipe(args.recipe, "finetune"), overrides), overwrite=True)


def teacher_accuracy(args) -> float:
    """The teacher re-scored on the students' test split (same recipe, same seed), not read from its run."""
    from sora_hf.runs.finetune_steps import build_features, load_task
    from sora_hf.tasks import get_task
    from sora_hf.tokenizer import load_tokenizer

    recipe = load_finetune_recipe(find_recipe(args.recipe, "finetune"), {"distillation.teacher": args.teacher})
    dataset, info = load_task(recipe)
    tokenizer = load_tokenizer(args.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    task = get_task(info.task_type)
    _, test_features = build_features(recipe, info, dataset, tokenizer)
    collator = task.collator(tokenizer, teacher)
    predictions = task.predict(teacher, test_features, collator, tokenizer, dataset["test"], 64, recipe)
    return task.score(info, dataset["test"], predictions)["test_accuracy"]


def latency(models: dict[str, torch.nn.Module], tokenizer, texts: list[str], repeats: int, batch_size: int) -> dict:
    """Median forward time per model for batch 1 and batch `batch_size`, the models interleaved in each repeat."""
    singles = [tokenizer(t, truncation=True, max_length=128, return_tensors="pt") for t in texts[:repeats]]
    batches = [
        tokenizer(texts[i : i + batch_size], truncation=True, max_length=128, padding=True, return_tensors="pt")
        for i in range(0, len(texts) - batch_size + 1, batch_size)
    ]
    times: dict[str, dict[str, list[float]]] = {name: {"batch_1": [], f"batch_{batch_size}": []} for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            for inputs in singles[:5] + batches[:1]:
                model(**inputs)
        for key, inputs_list in (("batch_1", singles), (f"batch_{batch_size}", batches)):
            for inputs in inputs_list:
                for name, model in models.items():
                    start = time.perf_counter()
                    model(**inputs)
                    times[name][key].append(time.perf_counter() - start)
    return {
        name: {f"{key}_ms_median": 1000 * statistics.median(values) for key, values in per_key.items()}
        | {"repeats": {key: len(values) for key, values in per_key.items()}}
        for name, per_key in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="sentiment-distill", help="the distillation recipe (name or path)")
    parser.add_argument("--teacher", default="runs/cmp/sentiment-full")
    parser.add_argument("--checkpoint", default="runs/quickstart/pretrain")
    parser.add_argument("--runs", default="runs/distill")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train-examples", type=int, default=None)
    parser.add_argument("--only", choices=[*VARIANTS, "latency"], action="append", help="run only these parts")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/distillation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.only or [*VARIANTS, "latency"]

    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update(
        benchmark="distillation",
        machine={"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads},
        versions={"torch": torch.__version__, "sora_hf": sora_hf.__version__},
        settings={k: v for k, v in vars(args).items() if k not in ("only", "retrain")},
    )
    students = report.setdefault("students", {})
    for variant in VARIANTS:
        if variant in parts:
            metrics = train_student(variant, args)
            students[variant] = {
                key: metrics[key]
                for key in ("test_accuracy", "test_f1_macro", "train_examples", "train_steps", "train_seconds")
            } | {"parameters": metrics["total_parameters"], "distillation": metrics.get("distillation")}
    if "latency" in parts or "teacher" not in report:
        report["teacher"] = {"path": args.teacher, "test_accuracy": teacher_accuracy(args)}
    if "latency" in parts:
        from sora_hf.data import load_review_sentiment
        from sora_hf.tokenizer import load_tokenizer

        # every variant has the same architecture: time the first one trained
        student_dir = next(Path(args.runs) / v for v in reversed(VARIANTS) if (Path(args.runs) / v).is_dir())
        models = {
            "teacher": AutoModelForSequenceClassification.from_pretrained(args.teacher).eval(),
            "student": AutoModelForSequenceClassification.from_pretrained(student_dir).eval(),
        }
        texts = list(load_review_sentiment()["test"]["text"])
        report["latency"] = latency(models, load_tokenizer(args.teacher), texts, args.repeats, args.batch_size)
        report["teacher"]["parameters"] = sum(p.numel() for p in models["teacher"].parameters())
        report["teacher"]["layers"] = models["teacher"].config.num_hidden_layers
        report["student_layers"] = models["student"].config.num_hidden_layers
    teacher_score = report["teacher"]["test_accuracy"]
    ratios = {f"{name}_accuracy_kept": s["test_accuracy"] / teacher_score for name, s in students.items()}
    if "parameters" in report["teacher"] and students:
        student_parameters = next(iter(students.values()))["parameters"]
        ratios["parameters_student_over_teacher"] = student_parameters / report["teacher"]["parameters"]
    if "latency" in report:
        for key in report["latency"]["student"]:
            if key.endswith("_ms_median"):
                ratios[f"speedup_{key.removesuffix('_ms_median')}"] = (
                    report["latency"]["teacher"][key] / report["latency"]["student"][key]
                )
    report["ratios"] = ratios
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"teacher": report["teacher"], "students": students, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
