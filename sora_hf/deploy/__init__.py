"""Deployment: ONNX export with onnxruntime parity, int8 dynamic quantization and structured pruning.

Each piece is one import away and one `sora-hf` command: `export onnx`, `quantize`, `prune`.
"""

from .onnx_export import SUPPORTED_HEADS, ExportInfo, OnnxExportError, export_onnx
from .onnx_runtime import OnnxCausalLM, OnnxModel, OnnxSequenceClassifier
from .pruning import PruningError, compute_importance, prune_by_importance, prune_model, run_pruning
from .quantization import quantize_onnx, run_quantization

__all__ = [
    "SUPPORTED_HEADS",
    "ExportInfo",
    "OnnxCausalLM",
    "OnnxExportError",
    "OnnxModel",
    "OnnxSequenceClassifier",
    "PruningError",
    "compute_importance",
    "export_onnx",
    "prune_by_importance",
    "prune_model",
    "quantize_onnx",
    "run_pruning",
    "run_quantization",
]
