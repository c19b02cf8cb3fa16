"""`export_llama`: a Sora decoder whose options are Llama's, written as a plain `LlamaForCausalLM` folder (no remote
code, no `auto_map`), so that vLLM, TGI, llama.cpp's converter and every other Llama consumer read it natively.
Parity with the Sora model is measured before writing, as for `convert`; an option Llama lacks is refused by name,
and so is any Sora checkpoint that was not saved as a causal decoder (an encoder's body would load into
`SoraForCausalLM`, its head dropped, and parity would compare that wrong model with its own copy).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..folders.checkpoints import check_weight_files, load_checked, resolve_checkpoint
from ..folders.outputs import OutputFolder, check_output_folder
from .convert import DEFAULT_TOLERANCE, Conversion, _tokenizer, no_space_is_an_error, saved_config
from .parity import compare_causal_lms
from .sources import ConversionError, llama_options


def export_llama(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
) -> Conversion:
    """Write the Sora decoder at `checkpoint` as a `LlamaForCausalLM` checkpoint at `output_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..modeling_sora import SoraForCausalLM

    spec = resolve_checkpoint(checkpoint)
    saved = saved_config(spec)
    check_causal_decoder(saved, str(checkpoint))
    check_output_folder(output_dir, inputs=[checkpoint], overwrite=overwrite)
    model = load_checked(SoraForCausalLM, checkpoint, dtype=torch.float32).eval()
    if Path(spec).is_dir():
        _check_no_unused_weights(spec, model)
    options = llama_options(model.config)
    llama = LlamaForCausalLM(LlamaConfig(**options)).eval()
    missing, unexpected = llama.load_state_dict(model.state_dict(), strict=False)
    if missing or unexpected:
        raise ConversionError(
            f"{checkpoint} does not fit LlamaForCausalLM: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    tokenizer = _tokenizer(str(checkpoint))
    parity = compare_causal_lms(model, llama, tokenizer, tolerance)
    if not parity.passed:
        raise ConversionError(
            f"the Llama export differs from {checkpoint} by more than {tolerance:g} (largest absolute differences: "
            f"{parity.figures()}); nothing was written"
        )
    dtype = getattr(torch, str(saved.get("dtype") or saved.get("torch_dtype") or "float32"))
    with no_space_is_an_error(output_dir), OutputFolder(output_dir, overwrite=overwrite) as out:
        llama.generation_config = model.generation_config
        llama.to(dtype).save_pretrained(out.path)
        if tokenizer is not None:
            tokenizer.save_pretrained(out.path)
        (out.path / "parity.json").write_text(parity.to_json(), encoding="utf-8")
        target = out.commit()
    return Conversion(Path(target), str(checkpoint), "llama", "causal-lm", parity, None)


def check_causal_decoder(saved: dict[str, Any], where: str) -> None:
    """Only a Sora causal decoder has a Llama equivalent. `SoraForCausalLM.from_pretrained` would load an encoder's
    weights too (a masked LM, a classifier: the body fits, the head is dropped) and make it causal, and parity
    against that model would compare the wrong model with itself: what the checkpoint was saved as decides."""
    if saved.get("model_type") != "sora":
        return  # load_checked names the model_type it found
    architectures = list(saved.get("architectures") or [])
    if saved.get("is_decoder") is True and (not architectures or architectures == ["SoraForCausalLM"]):
        return
    kind = ", ".join(architectures) or "Sora model"
    if saved.get("is_encoder_decoder"):
        shape = "encoder-decoder"
    else:
        shape = "decoder" if saved.get("is_decoder") else "encoder (is_decoder=false)"
    message = (
        f"export llama takes a Sora causal decoder (SoraForCausalLM, is_decoder=true); {where} is a {kind} {shape}, "
        "which Llama has no equivalent of"
    )
    from ..auto.heads import HEADS

    row = next((row for row in HEADS if row.name in architectures), None)
    if row is not None and row.onnx_outputs:  # what export onnx writes
        message += f". Export it for deployment with `sora-hf export onnx {where} <output-dir>`"
    elif row is not None and row.pipeline_task:
        message += f". It deploys as it is: `sora-hf serve {where}` ({row.pipeline_task})"
    raise ConversionError(message)


def _check_no_unused_weights(folder: str, model: Any) -> None:
    """Every weight the checkpoint holds was loaded (`load_checked` checks the converse: none missing)."""
    names: set[str] = set()
    for file in check_weight_files(folder):
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                names.update(handle.keys())
    unused = sorted(names - set(model.state_dict()))
    if unused:
        raise ConversionError(
            f"{folder} holds {len(unused)} weights that SoraForCausalLM has no place for (e.g. {unused[0]}): it was "
            "not saved from a SoraForCausalLM, so its Llama export would drop them"
        )


__all__ = ["check_causal_decoder", "export_llama"]
