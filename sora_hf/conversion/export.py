"""`export_llama`: a Sora decoder whose options are Llama's, written as a plain `LlamaForCausalLM` folder (no remote
code, no `auto_map`), so that vLLM, TGI, llama.cpp's converter and every other Llama consumer read it natively.
Parity with the Sora model is measured before writing, as for `convert`; an option Llama lacks is refused by name.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoints import load_checked, read_config_file
from ..outputs import OutputFolder, check_output_folder
from .convert import DEFAULT_TOLERANCE, Conversion, _tokenizer
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

    check_output_folder(output_dir, inputs=[checkpoint], overwrite=overwrite)
    model = load_checked(SoraForCausalLM, checkpoint, dtype=torch.float32).eval()
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
    saved = read_config_file(checkpoint) if Path(checkpoint).is_dir() else {}
    dtype = getattr(torch, str(saved.get("dtype") or saved.get("torch_dtype") or "float32"))
    with OutputFolder(output_dir, overwrite=overwrite) as out:
        llama.generation_config = model.generation_config
        llama.to(dtype).save_pretrained(out.path)
        if tokenizer is not None:
            tokenizer.save_pretrained(out.path)
        (out.path / "parity.json").write_text(parity.to_json(), encoding="utf-8")
        target = out.commit()
    return Conversion(Path(target), str(checkpoint), "llama", "causal-lm", parity, None)


__all__ = ["export_llama"]
