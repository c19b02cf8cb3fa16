"""CPU deployment figures for a fine-tuned Sora classifier: torch fp32 vs onnxruntime fp32 vs int8 vs pruned.

    python benchmarks/deployment_cpu.py --checkpoint runs/cmp/sentiment-full \
        --out benchmarks/results/deployment_cpu.json

One process, one set of inputs, every variant at the same thread count. For each variant: test accuracy on the
embedded `sentiment` test split, weight file size, and median latency at batch 1 and batch 32 (texts truncated to
`--max-length` tokens, padded per batch as a served pipeline does; batch 1 cycles through 50 test texts). Each
variant's calls run in a block, and the blocks go round three times so that load changes on a shared machine reach
every variant; ratios are against torch fp32 in the same run. Variants:

- torch fp32: the checkpoint as `from_pretrained` loads it (sdpa attention)
- ort fp32: `sora_hf.deploy.export_onnx` of it under onnxruntime
- ort int8: onnxruntime dynamic int8 quantization of that graph
- torch int8: `torch.ao.quantization.quantize_dynamic` on every Linear (deprecated in torch 2.13; comparison only)
- pruned torch / ort fp32 / ort int8: `--prune-heads` of the key/value groups and `--prune-mlp` of the MLP units
  removed per layer by gradient importance (`--importance-batches` train batches), no recovery training
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import sora_hf  # noqa: F401  (registers Sora)
from sora_hf.deploy import OnnxModel, export_onnx
from sora_hf.deploy.evaluation import accuracy, batches_of, classification_data, file_size_mb
from sora_hf.deploy.pruning import (
    classification_batches,
    compute_importance,
    fraction_to_count,
    parameter_count,
    prune_by_importance,
)
from sora_hf.deploy.quantization import quantize_onnx, quantize_torch_dynamic


def torch_runner(model):
    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()

    return run


def onnx_runner(onnx_model: OnnxModel):
    return lambda inputs: onnx_model.run(**inputs)["logits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/cmp/sentiment-full")
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100, help="batch-1 calls per variant (batch 32: a fifth)")
    parser.add_argument("--prune-heads", type=float, default=0.5)
    parser.add_argument("--prune-mlp", type=float, default=0.5)
    parser.add_argument("--importance-batches", type=int, default=16)
    parser.add_argument("--work-dir", default=None, help="keep exported/pruned models here (default: temporary)")
    parser.add_argument("--out", default="benchmarks/results/deployment_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="sora-deploy-"))
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(args.checkpoint).eval()
    test = classification_data(args.task, model.config, "test")
    train = classification_data(args.task, model.config, "train")

    # build every variant
    export_onnx(args.checkpoint, work / "onnx-fp32")
    quantize_onnx(work / "onnx-fp32" / "model.onnx", work / "onnx-int8" / "model.onnx")
    pruned = AutoModelForSequenceClassification.from_pretrained(args.checkpoint).eval()
    remove_groups = fraction_to_count(args.prune_heads, pruned.config.num_key_value_heads, "heads")
    remove_mlp = fraction_to_count(args.prune_mlp, pruned.config.intermediate_size, "mlp")
    batches = classification_batches(
        tokenizer, train.texts, train.labels, 32, args.max_length, args.importance_batches
    )
    prune_by_importance(pruned, compute_importance(pruned, batches), remove_groups, remove_mlp)
    pruned.save_pretrained(work / "pruned")
    tokenizer.save_pretrained(work / "pruned")
    export_onnx(work / "pruned", work / "pruned-onnx-fp32")
    quantize_onnx(work / "pruned-onnx-fp32" / "model.onnx", work / "pruned-onnx-int8" / "model.onnx")
    for name in ("onnx-int8", "pruned-onnx-int8"):
        source = work / name.replace("int8", "fp32")
        for side in ("config.json", "export_info.json"):
            (work / name / side).write_bytes((source / side).read_bytes())

    variants = {
        "torch fp32": (torch_runner(model), file_size_mb(args.checkpoint), parameter_count(model)),
        "ort fp32": (onnx_runner(OnnxModel(work / "onnx-fp32", args.threads)), file_size_mb(work / "onnx-fp32"), None),
        "ort int8": (onnx_runner(OnnxModel(work / "onnx-int8", args.threads)), file_size_mb(work / "onnx-int8"), None),
        "torch int8 (deprecated quantize_dynamic)": (torch_runner(quantize_torch_dynamic(model)), None, None),
        "pruned torch fp32": (torch_runner(pruned), file_size_mb(work / "pruned"), parameter_count(pruned)),
        "pruned ort fp32": (
            onnx_runner(OnnxModel(work / "pruned-onnx-fp32", args.threads)),
            file_size_mb(work / "pruned-onnx-fp32"),
            None,
        ),
        "pruned ort int8": (
            onnx_runner(OnnxModel(work / "pruned-onnx-int8", args.threads)),
            file_size_mb(work / "pruned-onnx-int8"),
            None,
        ),
    }

    # accuracy on the whole test split
    results: dict[str, dict] = {}
    eval_batches = list(batches_of(tokenizer, test.texts, 64, args.max_length, return_tensors="np"))
    reference_logits = None
    for name, (run, size, params) in variants.items():
        logits = np.concatenate([run(dict(enc)) for enc in eval_batches])
        reference_logits = logits if reference_logits is None else reference_logits
        results[name] = {
            "accuracy": accuracy(logits, test.labels),
            "max_abs_logit_diff_vs_torch_fp32": float(np.abs(logits - reference_logits).max()),
            "size_mb": size,
            "parameters": params,
        }

    # latency: each variant runs its calls in a block (onnxruntime's worker threads spin after a call and would
    # steal the 2 cores from a torch call right behind it), and the blocks go round three times so that load drift
    # on a shared machine reaches every variant
    single = [dict(next(batches_of(tokenizer, [t], 1, args.max_length, "np"))) for t in test.texts[:50]]
    batch32 = dict(next(batches_of(tokenizer, test.texts[:32], 32, args.max_length, "np")))
    rounds = 3
    for label, inputs, repeats in (("batch_1", single, args.repeats), ("batch_32", [batch32], args.repeats // 5)):
        times = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (run, _, _) in variants.items():
                for x in inputs[:3]:  # warm-up
                    run(x)
                for r in range(max(1, repeats // rounds)):
                    x = inputs[r % len(inputs)]
                    start = time.perf_counter()
                    run(x)
                    times[name].append(time.perf_counter() - start)
        for name in variants:
            results[name][f"latency_ms_{label}"] = 1000 * statistics.median(times[name])

    base = results["torch fp32"]
    for row in results.values():
        row["accuracy_change_vs_torch_fp32"] = row["accuracy"] - base["accuracy"]
        row["speedup_batch_1_vs_torch_fp32"] = base["latency_ms_batch_1"] / row["latency_ms_batch_1"]
        row["speedup_batch_32_vs_torch_fp32"] = base["latency_ms_batch_32"] / row["latency_ms_batch_32"]
        if row["size_mb"] is not None:
            row["size_ratio_vs_torch_fp32"] = row["size_mb"] / base["size_mb"]

    report = {
        "checkpoint": args.checkpoint,
        "task": {"name": args.task, "split": "test", "examples": len(test.texts)},
        "max_length": args.max_length,
        "threads": args.threads,
        "repeats": {"batch_1": args.repeats, "batch_32": args.repeats // 5},
        "pruning": {
            "key_value_groups_removed_per_layer": remove_groups,
            "mlp_units_removed_per_layer": remove_mlp,
            "importance_batches": args.importance_batches,
            "pruned_config": {
                "num_attention_heads": pruned.config.num_attention_heads,
                "num_key_value_heads": pruned.config.num_key_value_heads,
                "intermediate_size": pruned.config.intermediate_size,
            },
            "recovery_training": None,
        },
        "variants": results,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
            "machine": platform.machine(),
            "cpu_count": __import__("os").cpu_count(),
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    width = max(len(n) for n in results)
    print(f"{'variant':<{width}}  acc     size MB  b1 ms   b32 ms  b1 x   b32 x")
    for name, row in results.items():
        size = f"{row['size_mb']:.2f}" if row["size_mb"] is not None else "-"
        print(
            f"{name:<{width}}  {row['accuracy']:.4f}  {size:>7}  {row['latency_ms_batch_1']:6.2f}  "
            f"{row['latency_ms_batch_32']:7.1f}  {row['speedup_batch_1_vs_torch_fp32']:4.2f}  "
            f"{row['speedup_batch_32_vs_torch_fp32']:4.2f}"
        )


if __name__ == "__main__":
    main()
