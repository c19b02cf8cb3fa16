"""Deployment: ONNX export with onnxruntime parity, int8 dynamic quantization and structured pruning.

Each piece is one import away and one `sora-hf` command: `export onnx`, `quantize`, `prune`.
"""

from .onnx_export import SUPPORTED_HEADS, ExportInfo, OnnxExportError, export_onnx
from .onnx_runtime import OnnxCausalLM, OnnxModel, OnnxSequenceClassifier

__all__ = [
    "SUPPORTED_HEADS",
    "ExportInfo",
    "OnnxCausalLM",
    "OnnxExportError",
    "OnnxModel",
    "OnnxSequenceClassifier",
    "export_onnx",
]
