"""The architectures Sora converts from, and the `SoraConfig` options that give each one's maths exactly.

A Sora decoder is Llama's block (pre-norm RMSNorm, rotary, gated MLP, grouped-query attention) under Llama's
parameter names, so a Llama-family state dict loads as it is; what differs between the family's members becomes an
option: Qwen2's biases on query/key/value only (`attention_bias` + `attention_output_bias=False`), Qwen3's per-head
query/key norm (`qk_norm`), Mistral's and Qwen's sliding window (`sliding_window`, `layer_types`). A source option
that Sora has no equivalent for is refused here, by name, before any weight is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Head = Literal["causal-lm"]


class ConversionError(ValueError):
    """A source that cannot become Sora (or a Sora model that cannot become the target) with the same outputs."""


@dataclass(frozen=True)
class Source:
    """One convertible architecture: its `model_type`, the heads it converts to, and what it is."""

    model_type: str
    heads: tuple[Head, ...]
    description: str


SOURCES: dict[str, Source] = {
    source.model_type: source
    for source in (
        Source("llama", ("causal-lm",), "Llama 2/3 decoders (and every checkpoint saved as LlamaForCausalLM)"),
        Source("mistral", ("causal-lm",), "Mistral decoders, sliding-window attention included"),
        Source("qwen2", ("causal-lm",), "Qwen2 / Qwen2.5 decoders (biases on query, key and value)"),
        Source("qwen3", ("causal-lm",), "Qwen3 dense decoders (per-head query/key RMSNorm)"),
    )
}

# source options that change the maths, with the value under which Sora computes the same thing
_MUST_EQUAL = {"pretraining_tp": 1, "use_mrope": False}


def source_of(config: Any) -> Source:
    """The `Source` of a transformers config, or an error naming what converts."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SOURCES:
        supported = ", ".join(f"{s.model_type} ({s.description})" for s in SOURCES.values())
        raise ConversionError(f"cannot convert a {model_type!r} checkpoint into Sora; supported: {supported}")
    return SOURCES[model_type]


def sora_options(config: Any) -> dict[str, Any]:
    """The `SoraConfig` keyword arguments of a decoder with exactly `config`'s maths."""
    source = source_of(config)
    problems = [
        f"{name}={getattr(config, name)!r} (Sora computes only {value!r})"
        for name, value in _MUST_EQUAL.items()
        if getattr(config, name, value) not in (value, None)
    ]
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        problems.append(f"rope_parameters.partial_rotary_factor={rope['partial_rotary_factor']} (Sora rotates all)")
    from transformers.activations import ACT2FN
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope_type = rope.get("rope_type", "default")
    if rope_type != "default" and rope_type not in ROPE_INIT_FUNCTIONS:
        problems.append(f"rope_parameters.rope_type={rope_type!r} (known: default, {', '.join(ROPE_INIT_FUNCTIONS)})")
    if config.hidden_act not in ACT2FN:
        problems.append(f"hidden_act={config.hidden_act!r}")
    if problems:
        raise ConversionError(
            f"{config.model_type} checkpoint has options Sora has no equivalent for: {'; '.join(problems)}"
        )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    options: dict[str, Any] = {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        "head_dim": head_dim,
        "hidden_act": config.hidden_act,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": rope or None,
        "initializer_range": getattr(config, "initializer_range", 0.02),
        "attention_dropout": float(getattr(config, "attention_dropout", 0.0) or 0.0),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "attention_bias": bool(getattr(config, "attention_bias", False)),
        "mlp_bias": bool(getattr(config, "mlp_bias", False)),
        "is_decoder": True,
        "type_vocab_size": 0,
        # a decoder's special tokens are its source's; Sora's encoder ones (cls, sep, mask) mean nothing here
        "pad_token_id": getattr(config, "pad_token_id", None),
        "bos_token_id": getattr(config, "bos_token_id", None),
        "eos_token_id": getattr(config, "eos_token_id", None),
        "cls_token_id": None,
        "sep_token_id": None,
        "mask_token_id": None,
        "decoder_start_token_id": None,
    }
    if source.model_type == "qwen2":
        options.update(attention_bias=True, attention_output_bias=False)  # Qwen2Attention: q/k/v biased, o not
    if source.model_type == "qwen3":
        options.update(qk_norm=True)
    if source.model_type == "mistral" and getattr(config, "sliding_window", None) is not None:
        options.update(sliding_window=config.sliding_window)
    layer_types = getattr(config, "layer_types", None)
    if source.model_type in ("qwen2", "qwen3") and layer_types and "sliding_attention" in layer_types:
        options.update(sliding_window=config.sliding_window, layer_types=list(layer_types))
    if layer_types and set(layer_types) - {"full_attention", "sliding_attention"}:
        raise ConversionError(f"{config.model_type} checkpoint has layer types Sora lacks: {sorted(set(layer_types))}")
    return options


def llama_options(config: Any) -> dict[str, Any]:
    """The `LlamaConfig` keyword arguments of a Sora decoder, or an error naming each option Llama lacks."""
    problems = []
    if not config.is_decoder or config.is_encoder_decoder:
        problems.append("it is not a decoder-only model (is_decoder=False or an encoder-decoder)")
    if config.qk_norm:
        problems.append("qk_norm=True (Qwen3's per-head query/key norm; Llama has none)")
    if config.attention_output_bias != config.attention_bias:
        problems.append(
            f"attention_output_bias={config.attention_output_bias} differs from attention_bias={config.attention_bias}"
            " (Qwen2's layout; Llama biases all four projections or none)"
        )
    if config.sliding_window is not None:
        problems.append(f"sliding_window={config.sliding_window} (Llama attends to every position)")
    if config.tasks:
        problems.append("it is a multi-task model")
    if problems:
        raise ConversionError(f"this Sora decoder has no Llama equivalent: {'; '.join(problems)}")
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "hidden_act": config.hidden_act,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": dict(config.rope_parameters),
        "initializer_range": config.initializer_range,
        "attention_dropout": config.attention_dropout,
        "attention_bias": config.attention_bias,
        "mlp_bias": config.mlp_bias,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
    }


__all__ = ["SOURCES", "ConversionError", "Head", "Source", "llama_options", "sora_options", "source_of"]
