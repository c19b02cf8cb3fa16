"""`convert`: a transformers checkpoint (a folder, or a Hub id where the network is allowed) into a Sora checkpoint
with the same outputs, its tokenizer, generation config, a model card naming the source and its licence, and
`parity.json`. Refused before anything is written: an unsupported architecture or option, an output folder that
holds files (without `overwrite`), and a converted model whose outputs differ from the source's by more than
`tolerance`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoints import resolve_checkpoint
from ..outputs import OutputFolder, check_output_folder
from .parity import ParityReport, compare_causal_lms
from .sources import ConversionError, Head, sora_options, source_of

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-5


@dataclass
class Conversion:
    """What `convert` wrote."""

    output_dir: Path
    source: str
    model_type: str
    head: Head
    parity: ParityReport
    licence: str | None


def convert(
    source: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    head: Head | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
) -> Conversion:
    """Convert `source` into a Sora checkpoint at `output_dir`; returns what was written (and measured)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..configuration_sora import SoraConfig
    from ..modeling_sora import SoraForCausalLM

    spec = resolve_checkpoint(source, what="source")
    config = AutoConfig.from_pretrained(spec)
    found = source_of(config)
    head = head or found.heads[0]
    if head not in found.heads:
        raise ConversionError(f"a {found.model_type} checkpoint converts to {', '.join(found.heads)}, not {head!r}")
    options = sora_options(config)
    check_output_folder(output_dir, inputs=[spec], overwrite=overwrite)

    saved_dtype = getattr(config, "dtype", None) or torch.float32
    saved_dtype = getattr(torch, saved_dtype) if isinstance(saved_dtype, str) else saved_dtype
    source_model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32)
    model = SoraForCausalLM(SoraConfig(**options)).eval()
    state = source_model.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConversionError(
            f"{spec}'s weights do not fit SoraForCausalLM: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    tokenizer = _tokenizer(spec)
    parity = compare_causal_lms(source_model, model, tokenizer, tolerance)
    if not parity.passed:
        raise ConversionError(
            f"the converted model differs from {spec}: logits by {parity.max_abs_logit_diff:.3g}, hidden states by "
            f"{parity.max_abs_hidden_diff:.3g} (tolerance {tolerance:g}), greedy tokens equal: "
            f"{parity.greedy_tokens_equal}; nothing was written"
        )
    licence = _licence(spec)
    with OutputFolder(output_dir, overwrite=overwrite) as out:
        model.generation_config = source_model.generation_config
        model.to(saved_dtype).save_pretrained(out.path)
        if tokenizer is not None:
            tokenizer.save_pretrained(out.path)
        (out.path / "parity.json").write_text(parity.to_json(), encoding="utf-8")
        (out.path / "README.md").write_text(_model_card(spec, found.model_type, head, parity, licence), "utf-8")
        target = out.commit()
    logger.info("converted %s (%s) into %s", spec, found.model_type, target)
    return Conversion(target, spec, found.model_type, head, parity, licence)


def _tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as error:
        logger.warning("%s has no tokenizer that loads (%s); the checkpoint is written without one", spec, error)
        return None


def _licence(spec: str) -> str | None:
    """The source's licence, from its model card's metadata (a local README.md, or the Hub's card)."""
    card = Path(spec) / "README.md"
    if card.is_file():
        match = re.search(r"^---\n(.*?)\n---", card.read_text(encoding="utf-8"), re.S)
        found = match and re.search(r"^license:\s*(\S+)", match.group(1), re.M)
        return found.group(1) if found else None
    if Path(spec).is_dir():
        return None
    try:
        from huggingface_hub import model_info

        return (model_info(spec).card_data or {}).get("license")
    except Exception:  # offline, gated, or no card: the card says the licence is unknown
        return None


def _model_card(spec: str, model_type: str, head: Head, parity: ParityReport, licence: str | None) -> str:
    name = Path(spec).name if Path(spec).is_dir() else spec
    front = f"---\nlicense: {licence}\nlibrary_name: transformers\ntags:\n- sora\n---\n" if licence else ""
    return (
        f"{front}# Sora {head} converted from {name}\n\n"
        f"Converted with `sora-hf convert` from `{spec}` ({model_type}); licence: "
        f"{licence or 'not stated by the source: check its terms before use'}.\n\n"
        "Parity with the source, measured before writing (`parity.json`): largest absolute logit difference "
        f"{parity.max_abs_logit_diff:.2g} (logits up to {parity.max_abs_logit:.3g}), hidden states "
        f"{parity.max_abs_hidden_diff:.2g}, greedy tokens equal: {parity.greedy_tokens_equal}.\n\n"
        "Loads with `AutoModelForCausalLM.from_pretrained(folder)` after `import sora_hf`, or with "
        "`trust_remote_code=True` where sora_hf is not installed.\n"
    )


__all__ = ["DEFAULT_TOLERANCE", "Conversion", "convert"]
