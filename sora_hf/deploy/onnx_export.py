"""ONNX export of Sora checkpoints, with an onnxruntime parity check written beside the graph.

Supported: the encoder heads (sequence classification, token classification, extractive QA, sentence embeddings)
as one forward with dynamic batch and sequence axes, and `SoraForCausalLM` as one *decoding step* with the key/value
cache as explicit inputs and outputs (`past_key_values.{i}.key/value` -> `present.{i}.key/value`), so a greedy or
sampling loop runs in onnxruntime alone (see `sora_hf.deploy.onnx_runtime`).

The exporter is torch's TorchScript-based one (`torch.onnx.export(..., dynamo=False)`) by default: it exports every
supported head in well under a second and keeps a past length of 0 (the first decoding step) a valid input, which
`torch.export` specialises away. `exporter="dynamo"` uses the torch.export-based exporter for the encoder heads.

Encoder graphs then go through onnxruntime's transformer optimizer (`optimize=True`, as BERT users deploy theirs):
each RMSNorm and its residual add become one `SkipSimplifiedLayerNormalization` kernel, and the graph shrinks to
about 40% of its nodes. The parity check runs on the graph that is written.

The exported folder holds `model.onnx`, `config.json`, the tokenizer files and `export_info.json` (opset, inputs,
outputs, head, the fused operators, and the largest absolute difference against torch measured at export time at
two batch sizes and sequence lengths with padding).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel
from transformers.cache_utils import DynamicCache

from ..auto.heads import HEADS
from ..folders.checkpoints import CheckpointError, check_checkpoint_folder, load_checked, resolve_checkpoint
from ..folders.outputs import OutputFolder, check_output_folder
from ..modeling_sora import CACHE_ARG, output_cache
from ..tokenizer import check_tokenizer_fits

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
EXPORT_INFO_FILE = "export_info.json"
DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
# fp32 parity that an export must reach against torch, on logits of unit scale
PARITY_ATOL = 1e-4


class OnnxExportError(ValueError):
    """A checkpoint that cannot be exported (not a model folder, not a Sora model, an unsupported head)."""


# ---------------------------------------------------------------------------------------------------------------
# Wrappers: plain tensors in, plain tensors out, with names the graph keeps


class _EncoderHead(nn.Module):
    """Runs an encoder head on explicit tensors and returns its named outputs as a tuple."""

    def __init__(self, model: PreTrainedModel, outputs: tuple[str, ...], token_types: bool):
        super().__init__()
        self.model = model
        self.outputs = outputs
        self.token_types = token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"token_type_ids": token_type_ids} if self.token_types else {}
        result = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return tuple(result[name] for name in self.outputs)


class _DecoderStep(nn.Module):
    """One step of a causal LM: new tokens plus the cache so far -> logits plus the grown cache.

    `attention_mask` covers past and new tokens (`(batch, past + new)`); `position_ids` covers the new tokens.
    """

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.num_layers = model.config.num_hidden_layers

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = DynamicCache(config=self.model.config)
        for layer in range(self.num_layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{CACHE_ARG: cache},
            use_cache=True,
        )
        present = []
        for layer in output_cache(out).layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


@dataclass(frozen=True)
class HeadSpec:
    """How one architecture is exported: the outputs it returns and whether it is a decoding step."""

    architecture: str
    outputs: tuple[str, ...]
    kind: str  # "encoder" or "decoder_step"
    task: str  # the transformers pipeline task this graph serves
    per_token: bool = False  # outputs have a sequence axis (token classification, QA)


# the exportable rows of the heads table
SUPPORTED_HEADS = {
    row.name: HeadSpec(row.name, row.onnx_outputs, row.onnx_graph, row.pipeline_task, per_token=row.onnx_per_token)
    for row in HEADS
    if row.onnx_outputs
}


def _unsupported(name: str) -> OnnxExportError:
    return OnnxExportError(
        f"cannot export {name} to ONNX: supported heads are {', '.join(SUPPORTED_HEADS)} "
        "(encoder heads as one forward, SoraForCausalLM as one decoding step with its key/value cache)"
    )


def head_spec(model: PreTrainedModel) -> HeadSpec:
    """The export recipe for `model`, or an `OnnxExportError` naming the head and what is supported."""
    if getattr(model.config, "model_type", None) != "sora":
        raise OnnxExportError(
            f"cannot export a {type(model).__name__} (model_type={getattr(model.config, 'model_type', None)!r}): "
            "only Sora models (model_type 'sora') are supported"
        )
    name = type(model).__name__
    if name not in SUPPORTED_HEADS:
        raise _unsupported(name)
    if getattr(model.config, "use_crf", False):
        raise OnnxExportError(
            f"cannot export {name} with use_crf=True: its tags come from the CRF's Viterbi decoding, which the ONNX "
            "graph (one forward giving per-token logits) does not hold, and the logits alone would give other tags; "
            "serve it with torch (`sora-hf serve`), or fine-tune without use_crf for ONNX"
        )
    return SUPPORTED_HEADS[name]


def load_for_export(checkpoint: str | Path, tokenizer_required: bool = False) -> PreTrainedModel:
    """Load a saved Sora checkpoint with the class named in its config, refusing what cannot be exported (with
    `tokenizer_required`, a folder without its tokenizer, before the weights are read)."""
    import sora_hf  # noqa: F401  (registers Sora with the Auto classes)

    path = Path(resolve_checkpoint(checkpoint))
    try:
        check_checkpoint_folder(path)
    except CheckpointError as error:
        raise OnnxExportError(str(error)) from None
    try:  # trust_remote_code=False: never transformers' interactive "run the custom code? [y/N]" prompt
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except ValueError as error:
        raise OnnxExportError(_load_refusal(checkpoint, error)) from None
    if config.model_type != "sora":
        raise OnnxExportError(
            f"{checkpoint} holds a {config.model_type!r} model; only Sora models (model_type 'sora') are supported"
        )
    architectures = config.architectures or ["SoraModel"]
    name = architectures[0]
    if name not in SUPPORTED_HEADS:
        raise _unsupported(f"{name} (from {checkpoint})")
    if tokenizer_required:
        check_tokenizer_files(path)
    model_class = getattr(sora_hf, name)
    return load_checked(model_class, path, attn_implementation="sdpa").eval()


# ---------------------------------------------------------------------------------------------------------------
# Names and sample inputs


def input_names(model: PreTrainedModel, spec: HeadSpec) -> list[str]:
    if spec.kind == "decoder_step":
        return ["input_ids", "attention_mask", "position_ids", *past_names(model.config, "past_key_values")]
    names = ["input_ids", "attention_mask"]
    if _uses_token_types(model):
        names.append("token_type_ids")
    return names


def output_names(model: PreTrainedModel, spec: HeadSpec) -> list[str]:
    if spec.kind == "decoder_step":
        return ["logits", *past_names(model.config, "present")]
    return list(spec.outputs)


def past_names(config, prefix: str) -> list[str]:
    return [f"{prefix}.{layer}.{part}" for layer in range(config.num_hidden_layers) for part in ("key", "value")]


def _uses_token_types(model: PreTrainedModel) -> bool:
    base = getattr(model, "model", model)
    return getattr(base, "token_type_embeddings", None) is not None


def sample_inputs(
    config, spec: HeadSpec, batch: int, seq: int, past: int = 0, seed: int = 0, token_types: bool = False
) -> dict[str, torch.Tensor]:
    """Random token ids with right padding on the second row (left padding for a decoder), as tensors by name."""
    g = torch.Generator().manual_seed(seed)
    low = min(7, config.vocab_size - 1)
    total = past + seq
    ids = torch.randint(low, config.vocab_size, (batch, seq), generator=g)
    mask = torch.ones(batch, total if spec.kind == "decoder_step" else seq, dtype=torch.long)
    if batch > 1:
        n_pad = max(1, mask.shape[1] // 3)
        if spec.kind == "decoder_step":
            mask[1, :n_pad] = 0
        else:
            mask[1, -n_pad:] = 0
            ids[1, -n_pad:] = config.pad_token_id or 0
    if spec.kind == "decoder_step":
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
        shape = (batch, config.num_key_value_heads, past, config.head_dim)
        tensors = [torch.randn(shape, generator=g) for _ in range(2 * config.num_hidden_layers)]
        names = ["input_ids", "attention_mask", "position_ids", *past_names(config, "past_key_values")]
        return dict(zip(names, [ids, mask, positions, *tensors], strict=True))
    inputs = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    return inputs


def _wrap(model: PreTrainedModel, spec: HeadSpec) -> nn.Module:
    if spec.kind == "decoder_step":
        return _DecoderStep(model).eval()
    return _EncoderHead(model, spec.outputs, _uses_token_types(model)).eval()


def _dynamic_axes(model: PreTrainedModel, spec: HeadSpec) -> dict[str, dict[int, str]]:
    if spec.kind == "decoder_step":
        axes = {
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "total_sequence"},
            "position_ids": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"},
        }
        axes.update({name: {0: "batch", 2: "past_sequence"} for name in past_names(model.config, "past_key_values")})
        axes.update({name: {0: "batch", 2: "total_sequence"} for name in past_names(model.config, "present")})
        return axes
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names(model, spec)}
    for name in spec.outputs:
        axes[name] = {0: "batch", 1: "sequence"} if spec.per_token else {0: "batch"}
    return axes


# ---------------------------------------------------------------------------------------------------------------
# Export


@dataclass
class ExportInfo:
    """What `export_info.json` records about an export."""

    architecture: str
    task: str
    kind: str
    opset: int
    exporter: str
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[str, str]]
    fused_operators: dict[str, int] = field(default_factory=dict)
    max_abs_diff: float | None = None
    parity_checks: list[dict] = field(default_factory=list)
    export_seconds: float | None = None
    torch_version: str = torch.__version__

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# the files `AutoTokenizer.from_pretrained` needs for a Sora (fast) tokenizer
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def check_tokenizer_files(checkpoint: Path) -> None:
    """Refuse a checkpoint folder without its tokenizer before anything is exported: the graph takes token ids, and
    nothing in the exported folder would say how to make them from text."""
    missing = [name for name in TOKENIZER_FILES if not (checkpoint / name).is_file()]
    if missing:
        raise OnnxExportError(
            f"{checkpoint} has no tokenizer ({', '.join(missing)} missing): the exported graph takes token ids and "
            "nobody could feed it text; save the tokenizer there first (tokenizer.save_pretrained(folder))"
        )


def _load_refusal(checkpoint: str | Path, error: BaseException) -> str:
    text = " ".join(str(error).split())
    if "trust_remote_code" in text or "custom code" in text:
        return (
            f"cannot export {checkpoint}: its config needs custom code shipped with the checkpoint (auto_map) and "
            "sora-hf export never runs a checkpoint's code; only Sora models (model_type 'sora') are supported"
        )
    return f"cannot export {checkpoint}: {text}"


def export_onnx(
    model_or_checkpoint: PreTrainedModel | str | Path,
    output_dir: str | Path,
    tokenizer=None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    check: bool = True,
    overwrite: bool = False,
    optimize: bool = True,
) -> ExportInfo:
    """Export a Sora head to `output_dir/model.onnx` with config, tokenizer and `export_info.json`.

    `model_or_checkpoint` is a loaded Sora model or a save_pretrained folder (its tokenizer is copied when present).
    With `check`, onnxruntime runs the graph at two batch sizes and sequence lengths (with padding, and for a
    decoder with and without a past) and the largest absolute difference to torch is recorded; a difference above
    1e-4 raises, since a graph that disagrees with its model must not be shipped. With `optimize`, an encoder graph
    is rewritten by onnxruntime's transformer optimizer (fused norms) before the check. The export is written beside
    `output_dir` and moved in place only once it has passed; an existing folder with files is replaced only with
    `overwrite` (see sora_hf.folders.outputs).
    """
    if exporter not in EXPORTERS:
        raise OnnxExportError(f"exporter={exporter!r} is not supported; use one of {EXPORTERS}")
    inputs = [model_or_checkpoint] if isinstance(model_or_checkpoint, (str, Path)) else []
    target = check_output_folder(output_dir, inputs=inputs, overwrite=overwrite, what="output folder")
    model, tokenizer = _model_and_tokenizer(model_or_checkpoint, tokenizer)
    if tokenizer is not None:
        check_tokenizer_fits(tokenizer, model.config)  # the exported folder would fail at its first long id
    spec = _prepare_for_export(model, exporter)

    with OutputFolder(target, overwrite=overwrite) as out:
        output_dir = out.path
        info = _export_graph(model, spec, output_dir / ONNX_FILE, opset=opset, exporter=exporter, optimize=optimize)
        model.config.save_pretrained(output_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
        if check:
            _check_graph_parity(info, model, output_dir / ONNX_FILE, target)
        (output_dir / EXPORT_INFO_FILE).write_text(info.to_json() + "\n", encoding="utf-8")
        out.commit()
    return info


def _model_and_tokenizer(
    model_or_checkpoint: PreTrainedModel | str | Path, tokenizer: Any
) -> tuple[PreTrainedModel, Any]:
    """The model to export, loaded when given as a folder, and its tokenizer (the folder's when none is given)."""
    if not isinstance(model_or_checkpoint, (str, Path)):
        return model_or_checkpoint.eval(), tokenizer
    checkpoint = Path(resolve_checkpoint(model_or_checkpoint))
    model = load_for_export(checkpoint, tokenizer_required=tokenizer is None)
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=False)
        except (OSError, ValueError) as error:
            raise OnnxExportError(
                f"the tokenizer of {checkpoint} does not load ({' '.join(str(error).split())}); an exported "
                "graph without its tokenizer cannot be fed: save the tokenizer there (tokenizer.save_pretrained)"
            ) from None
    return model, tokenizer


def _prepare_for_export(model: PreTrainedModel, exporter: str) -> HeadSpec:
    """The head's export recipe, refused where `exporter` cannot export it; the model set to an attention that
    exports."""
    spec = head_spec(model)
    if exporter == "dynamo" and spec.kind == "decoder_step":
        raise OnnxExportError(
            "exporter='dynamo' does not support the SoraForCausalLM decoding step (torch.export specialises an "
            "empty key/value cache away); use exporter='torchscript'"
        )
    # eager and sdpa both export; sdpa is the model's default and becomes one fused-friendly graph
    if model.config._attn_implementation not in ("eager", "sdpa"):
        model.set_attn_implementation("sdpa")
    return spec


def _export_graph(
    model: PreTrainedModel, spec: HeadSpec, path: Path, *, opset: int, exporter: str, optimize: bool
) -> ExportInfo:
    """Trace the head into `path` (an encoder graph then optimized); what was exported, and in how many seconds."""
    wrapper = _wrap(model, spec)
    names_in, names_out = input_names(model, spec), output_names(model, spec)
    past = 3 if spec.kind == "decoder_step" else 0
    example = sample_inputs(model.config, spec, 2, 8, past=past, token_types=_uses_token_types(model))
    axes = _dynamic_axes(model, spec)
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        args = tuple(example[name] for name in names_in)
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=names_in,
            output_names=names_out,
            opset_version=opset,
            **_exporter_options(exporter, axes, names_in),
        )
    fused = optimize_graph(path, model.config) if optimize and spec.kind == "encoder" else {}
    return ExportInfo(
        fused_operators=fused,
        architecture=spec.architecture,
        task=spec.task,
        kind=spec.kind,
        opset=opset,
        exporter=exporter,
        inputs=names_in,
        outputs=names_out,
        dynamic_axes={name: {str(k): v for k, v in dims.items()} for name, dims in axes.items()},
        export_seconds=round(time.perf_counter() - start, 3),
    )


def _exporter_options(exporter: str, axes: dict[str, dict[int, str]], names_in: list[str]) -> dict:
    """`torch.onnx.export`'s arguments for the exporter: dynamic axes (TorchScript) or dynamic shapes (dynamo)."""
    if exporter == "torchscript":
        return dict(dynamic_axes=axes, dynamo=False)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {name: {0: batch, 1: seq} for name in names_in}
    return dict(dynamic_shapes=shapes, dynamo=True, verbose=False)


def _check_graph_parity(info: ExportInfo, model: PreTrainedModel, onnx_path: Path, target: Path) -> None:
    """Record onnxruntime's differences to torch in `info`, refusing (nothing written) a graph beyond `PARITY_ATOL`."""
    info.parity_checks = check_parity(model, onnx_path)
    info.max_abs_diff = max(c["max_abs_diff"] for c in info.parity_checks)
    if info.max_abs_diff > PARITY_ATOL:
        raise OnnxExportError(
            f"onnxruntime disagrees with torch by {info.max_abs_diff:.2e} (> {PARITY_ATOL}) for "
            f"{info.architecture}; nothing was written to {target}"
        )


def optimize_graph(path: Path, config) -> dict[str, int]:
    """Rewrite an encoder graph in place with onnxruntime's transformer optimizer; the fused operators it made.

    The BERT graph rules apply to Sora's blocks where the maths is the same: RMSNorm (with the residual add before
    it) becomes `SimplifiedLayerNormalization` / `SkipSimplifiedLayerNormalization`, constants fold, shape
    subgraphs collapse.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    optimizer_logger = logging.getLogger("onnxruntime.transformers")
    level = optimizer_logger.level
    optimizer_logger.setLevel(logging.ERROR)  # it warns about every pattern that is not BERT's
    try:
        optimized = optimize_model(
            str(path), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
    finally:
        optimizer_logger.setLevel(level)
    optimized.save_model_to_file(str(path))
    return {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}


def check_parity(model: PreTrainedModel, onnx_path: str | Path, shapes=None) -> list[dict]:
    """Run torch and onnxruntime on the same padded inputs; the largest absolute difference per shape."""
    import onnxruntime as ort

    spec = head_spec(model)
    wrapper = _wrap(model, spec)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if shapes is None:
        # (batch, new tokens, past): a past of 0 is the decoder's first step (the prompt), 1 token a later step
        shapes = [(2, 8, 0), (3, 13, 0)] if spec.kind == "encoder" else [(2, 7, 0), (3, 1, 9), (1, 4, 5)]
    checks = []
    for i, (batch, seq, past) in enumerate(shapes):
        inputs = sample_inputs(
            model.config, spec, batch, seq, past, seed=100 + i, token_types=_uses_token_types(model)
        )
        with torch.no_grad():
            expected = wrapper(*inputs.values())
        got = session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})
        diff = max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))
        checks.append({"batch": batch, "sequence": seq, "past": past, "max_abs_diff": diff})
    return checks


__all__ = [
    "EXPORT_INFO_FILE",
    "ONNX_FILE",
    "SUPPORTED_HEADS",
    "ExportInfo",
    "HeadSpec",
    "OnnxExportError",
    "check_parity",
    "export_onnx",
    "head_spec",
    "load_for_export",
    "optimize_graph",
    "sample_inputs",
]
