"""Int8 dynamic quantization of exported Sora graphs (onnxruntime), with a before/after report.

The served route is onnxruntime's dynamic quantization of the exported fp32 graph: int8 weights for every MatMul
(and the embedding Gather), activations quantized per batch at run time, no calibration data. torch's own
`torch.ao.quantization.quantize_dynamic` still works in torch 2.13 but is deprecated (it warns that quantized
tensors will be removed; pytorch/ao#2259) and its modules cannot be saved with `save_pretrained`; it is kept here
for in-process comparison only (`quantize_torch_dynamic`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..folders.checkpoints import resolve_checkpoint
from ..folders.outputs import OutputFolder, check_output_folder
from .evaluation import (
    accuracy,
    classification_data,
    file_size_mb,
    latency_inputs,
    onnx_latency_ms,
)
from .onnx_export import EXPORT_INFO_FILE, ONNX_FILE, SUPPORTED_HEADS, OnnxExportError, export_onnx, sample_inputs
from .onnx_runtime import OnnxModel, OnnxSequenceClassifier

logger = logging.getLogger(__name__)

REPORT_FILE = "quantization_report.json"


def quantize_onnx(source: str | Path, target: str | Path, per_channel: bool = False) -> Path:
    """onnxruntime dynamic int8 quantization of `source` (an .onnx file) into `target`."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # shape inference cannot type the outputs of onnxruntime's fused (com.microsoft) kernels: they are float32
    # (and the quantizer logs a warning per tensor after them, on the root logger: silenced while it runs)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    return target


def quantize_torch_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    """torch dynamic int8 quantization of every `nn.Linear` (a copy); deprecated in torch 2.13, in-process only."""
    import copy

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear}, dtype=torch.qint8)


def _copy_side_files(source: Path, target: Path) -> None:
    """Config, tokenizer files and export record travel with the graph."""
    for path in source.iterdir():
        if path.is_file() and path.suffix != ".onnx" and not path.name.endswith(".onnx.data"):
            shutil.copy2(path, target / path.name)


def run_quantization(
    source: str | Path,
    output_dir: str | Path,
    task: str | None = "sentiment",
    max_examples: int | None = None,
    max_length: int = 128,
    per_channel: bool = False,
    threads: int | None = None,
    repeats: int = 30,
    overwrite: bool = False,
) -> dict:
    """Quantize a checkpoint (exported first) or an exported folder; write the int8 folder and its report.

    The report compares the fp32 and int8 graphs under onnxruntime: file size, median latency at batch 1 and 32,
    and, for a sequence classifier with `task` (an embedded classification task), test accuracy and the largest
    logit change. The int8 folder is written beside `output_dir` and moved in place when done; the source is never
    an output, and an existing folder with files is replaced only with `overwrite` (see sora_hf.folders.outputs).
    """
    source = Path(resolve_checkpoint(source, what="source"))
    target = check_output_folder(output_dir, inputs=[source], overwrite=overwrite, what="output folder")
    if not (source / ONNX_FILE).is_file() and not (source / "config.json").is_file():
        raise OnnxExportError(f"{source} is neither an exported ONNX folder ({ONNX_FILE}) nor a model folder")
    with tempfile.TemporaryDirectory(prefix="sora-fp32-") as scratch, OutputFolder(target, overwrite=overwrite) as out:
        output_dir = out.path
        if (source / ONNX_FILE).is_file():
            fp32_dir = source
        else:
            fp32_dir = Path(scratch) / "fp32"
            export_onnx(source, fp32_dir)
        quantize_onnx(fp32_dir / ONNX_FILE, output_dir / ONNX_FILE, per_channel=per_channel)
        _copy_side_files(fp32_dir, output_dir)
        report = compare_onnx(fp32_dir, output_dir, task, max_examples, max_length, threads, repeats)
        report["source"] = str(source)
        report["per_channel"] = per_channel
        info_path = output_dir / EXPORT_INFO_FILE
        if info_path.is_file():
            info = json.loads(info_path.read_text(encoding="utf-8"))
            info["quantization"] = {"method": "onnxruntime dynamic int8", "per_channel": per_channel}
            info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        out.commit()
    return report


def compare_onnx(
    fp32_dir: Path,
    int8_dir: Path,
    task: str | None,
    max_examples: int | None,
    max_length: int,
    threads: int | None,
    repeats: int,
) -> dict:
    """Size, latency and (for classifiers with a task) accuracy of two exported folders of the same model."""
    fp32, int8 = OnnxModel(fp32_dir, threads), OnnxModel(int8_dir, threads)
    report: dict = {
        "size_mb": {"fp32": file_size_mb(fp32_dir / ONNX_FILE), "int8": file_size_mb(int8_dir / ONNX_FILE)},
    }
    report["size_ratio"] = report["size_mb"]["int8"] / report["size_mb"]["fp32"]
    is_classifier = fp32.info.get("architecture") == "SoraForSequenceClassification"
    texts = None
    if task is not None and is_classifier:
        data = classification_data(task, fp32.config, "test", max_examples)
        texts = data.texts
        scores, logits = {}, {}
        for name, folder in (("fp32", fp32_dir), ("int8", int8_dir)):
            classifier = OnnxSequenceClassifier(folder, threads, max_length=max_length)
            logits[name] = classifier.logits(data.texts, batch_size=64)
            scores[name] = accuracy(logits[name], data.labels)
        report["task"] = {"name": task, "split": "test", "examples": len(data.texts)}
        report["accuracy"] = {**scores, "change": scores["int8"] - scores["fp32"]}
        report["max_abs_logit_change"] = float(np.abs(logits["int8"] - logits["fp32"]).max())
    elif task is not None:
        logger.warning("accuracy is reported for sequence classifiers only; %s is not one", fp32.info)
    report["latency_ms"] = {}
    for batch in (1, 32):
        if texts is not None and fp32.tokenizer is not None:
            inputs = latency_inputs(fp32.tokenizer, texts, batch, max_length)
        else:
            spec = SUPPORTED_HEADS[fp32.info["architecture"]]
            sample = sample_inputs(fp32.config, spec, batch, min(max_length, 64))
            inputs = {name: tensor.numpy() for name, tensor in sample.items()}
        before, after = onnx_latency_ms(fp32, inputs, repeats), onnx_latency_ms(int8, inputs, repeats)
        report["latency_ms"][f"batch_{batch}"] = {"fp32": before, "int8": after, "speedup": before / after}
    return report


__all__ = ["REPORT_FILE", "compare_onnx", "quantize_onnx", "quantize_torch_dynamic", "run_quantization"]
