"""What the quantize and prune reports measure: task accuracy, file size and CPU latency, the same way for torch
models and onnxruntime graphs so that the before/after figures compare."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class ClassificationData:
    """Texts of one split with label ids already in the model's `label2id` numbering."""

    texts: list[str]
    labels: np.ndarray
    task: str
    split: str


def classification_data(
    task: str, model_config, split: str = "test", max_examples: int | None = None
) -> ClassificationData:
    """An embedded classification task (e.g. `sentiment`), its labels mapped onto the model's label names.

    Refuses a task that is not single-label classification or whose label names the model does not know, since
    an accuracy over mismatched label ids would be meaningless.
    """
    from ..data.tasks import load_embedded_task

    dataset, info = load_embedded_task(task)
    if info.task_type != "classification" or info.problem_type != "single_label_classification":
        raise ValueError(
            f"task={task!r} is {info.task_type} ({info.problem_type}); scores are computed for single-label "
            "classification tasks (e.g. 'sentiment')"
        )
    label2id = {str(k): int(v) for k, v in (model_config.label2id or {}).items()}
    missing = [name for name in info.label_names if name not in label2id]
    if missing:
        raise ValueError(
            f"the model's labels {sorted(label2id)} do not cover task {task!r}'s labels {info.label_names} "
            f"(missing {missing})"
        )
    rows = dataset[split]
    if max_examples is not None:
        rows = rows.select(range(min(max_examples, len(rows))))
    labels = np.array([label2id[info.label_names[i]] for i in rows["label"]])
    return ClassificationData(list(rows["text"]), labels, task, split)


def batches_of(tokenizer, texts: list[str], batch_size: int, max_length: int, return_tensors: str = "pt"):
    for start in range(0, len(texts), batch_size):
        yield tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors=return_tensors,
        )


@torch.no_grad()
def torch_logits(model, tokenizer, texts: list[str], batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    model.eval()
    out = [model(**enc).logits.float().numpy() for enc in batches_of(tokenizer, texts, batch_size, max_length)]
    return np.concatenate(out)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def file_size_mb(path: str | Path) -> float:
    """Size of a file, or of the weight files of a folder (safetensors / onnx / bin), in MB (10^6 bytes)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    files = [p for p in path.iterdir() if p.suffix in (".safetensors", ".onnx", ".bin", ".data")]
    return sum(p.stat().st_size for p in files) / 1e6


def median_latency_ms(fn: Callable[[], object], repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of `fn()` in milliseconds, after a few untimed warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def latency_inputs(tokenizer, texts: list[str], batch_size: int, max_length: int) -> dict[str, np.ndarray]:
    """The first `batch_size` texts tokenised and padded once, as numpy arrays (torch callers convert)."""
    return dict(next(batches_of(tokenizer, texts[:batch_size], batch_size, max_length, return_tensors="np")))


def torch_latency_ms(model, inputs: dict[str, np.ndarray], repeats: int = 30) -> float:
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    model.eval()

    def call():
        with torch.no_grad():
            model(**tensors)

    return median_latency_ms(call, repeats)


def onnx_latency_ms(onnx_model, inputs: dict[str, np.ndarray], repeats: int = 30) -> float:
    return median_latency_ms(lambda: onnx_model.run(**inputs), repeats)


__all__ = [
    "ClassificationData",
    "accuracy",
    "classification_data",
    "file_size_mb",
    "latency_inputs",
    "median_latency_ms",
    "onnx_latency_ms",
    "torch_latency_ms",
    "torch_logits",
]
