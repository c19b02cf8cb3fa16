"""The architectures Sora converts from, and the `SoraConfig` options that give each one's maths exactly.

A Sora encoder computes BERT's and RoBERTa's block with five options (learned absolute positions, LayerNorm with
biases, post-norm, an embedding norm, the plain GELU MLP); `encoder_key` renames their parameters.

A Sora decoder is Llama's block (pre-norm RMSNorm, rotary, gated MLP, grouped-query attention) under Llama's
parameter names, so a Llama-family state dict loads as it is; what differs between the family's members becomes an
option: Qwen2's biases on query/key/value only (`attention_bias` + `attention_output_bias=False`), Qwen3's per-head
query/key norm (`qk_norm`), Mistral's and Qwen's sliding window (`sliding_window`, `layer_types`). A source option
that Sora has no equivalent for is refused here, by name, before any weight is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Head = Literal["causal-lm", "masked-lm", "sentence-embedding", "sequence-classification", "token-classification"]
ENCODER_HEADS: tuple[Head, ...] = (
    "masked-lm",
    "sentence-embedding",
    "sequence-classification",
    "token-classification",
)


class ConversionError(ValueError):
    """A source that cannot become Sora (or a Sora model that cannot become the target) with the same outputs."""


def _qwen2_options(config: Any) -> dict[str, Any]:
    """Qwen2Attention: biases on query, key and value, none on the output; sliding layers as `layer_types` says."""
    return {"attention_bias": True, "attention_output_bias": False, **_sliding_layers(config)}


def _qwen3_options(config: Any) -> dict[str, Any]:
    """Qwen3's per-head RMSNorm of queries and keys; sliding layers as `layer_types` says."""
    return {"qk_norm": True, **_sliding_layers(config)}


def _mistral_options(config: Any) -> dict[str, Any]:
    """Mistral slides one window over every layer."""
    window = getattr(config, "sliding_window", None)
    return {} if window is None else {"sliding_window": window}


def _sliding_layers(config: Any) -> dict[str, Any]:
    layer_types = getattr(config, "layer_types", None)
    if layer_types and "sliding_attention" in layer_types:
        return {"sliding_window": config.sliding_window, "layer_types": list(layer_types)}
    return {}


@dataclass(frozen=True)
class Source:
    """One convertible architecture, and what converting it takes: its `model_type`, the heads it converts to, what
    it is, the prefix of its transformers class names, its family (an encoder's parameters are renamed by
    `encoder_key` and its options read by `_encoder_options`; a decoder's are Llama's) and, for a decoder, the
    options its members add to Llama's. Adding a source is one row here (and its options function)."""

    model_type: str
    heads: tuple[Head, ...]
    description: str
    class_prefix: str
    family: Literal["encoder", "decoder"]
    decoder_options: Callable[[Any], dict[str, Any]] | None = None
    position_offset_from_padding: bool = False  # RoBERTa counts positions from padding_idx + 1


SOURCES: dict[str, Source] = {
    source.model_type: source
    for source in (
        Source(
            "llama",
            ("causal-lm",),
            "Llama 2/3 decoders (and every checkpoint saved as LlamaForCausalLM)",
            "Llama",
            "decoder",
        ),
        Source(
            "mistral",
            ("causal-lm",),
            "Mistral decoders, sliding-window attention included",
            "Mistral",
            "decoder",
            _mistral_options,
        ),
        Source(
            "qwen2",
            ("causal-lm",),
            "Qwen2 / Qwen2.5 decoders (biases on query, key and value)",
            "Qwen2",
            "decoder",
            _qwen2_options,
        ),
        Source(
            "qwen3",
            ("causal-lm",),
            "Qwen3 dense decoders (per-head query/key RMSNorm)",
            "Qwen3",
            "decoder",
            _qwen3_options,
        ),
        Source(
            "bert",
            ENCODER_HEADS,
            "BERT encoders: bert-base-chinese, MacBERT, MiniLM, chinese-roberta-wwm-ext",
            "Bert",
            "encoder",
        ),
        Source(
            "roberta",
            ENCODER_HEADS,
            "RoBERTa encoders (positions counted from padding_idx + 1)",
            "Roberta",
            "encoder",
            position_offset_from_padding=True,
        ),
    )
}

# the sizes that Sora, Llama, Qwen, Mistral and BERT configs all spell alike
_SHARED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_act",
    "max_position_embeddings",
)
# source options that change the maths, with the value under which Sora computes the same thing
_MUST_EQUAL = {"pretraining_tp": 1, "use_mrope": False}


def source_of(config: Any) -> Source:
    """The `Source` of a transformers config (or of its `model_type`), or an error naming what converts."""
    model_type = config if isinstance(config, str | None) else getattr(config, "model_type", None)
    if model_type not in SOURCES:
        supported = ", ".join(f"{s.model_type} ({s.description})" for s in SOURCES.values())
        raise ConversionError(f"cannot convert a {model_type!r} checkpoint into Sora; supported: {supported}")
    return SOURCES[model_type]


def sora_options(config: Any, tokenizer: Any = None) -> dict[str, Any]:
    """The `SoraConfig` keyword arguments of a model with exactly `config`'s maths."""
    source = source_of(config)
    if source.family == "encoder":
        return _encoder_options(config, tokenizer, source)
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
        **{name: getattr(config, name) for name in _SHARED_FIELDS},
        "num_key_value_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        "head_dim": head_dim,
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
    if source.decoder_options is not None:
        options.update(source.decoder_options(config))
    layer_types = getattr(config, "layer_types", None)
    if layer_types and set(layer_types) - {"full_attention", "sliding_attention"}:
        raise ConversionError(f"{config.model_type} checkpoint has layer types Sora lacks: {sorted(set(layer_types))}")
    return options


def check_saved_config(saved: dict[str, Any]) -> None:
    """Options of a saved config.json that transformers 5 no longer reads (its BERT dropped relative positions, and
    loads such a checkpoint as absolute): refused, since neither it nor Sora computes what the weights learnt."""
    kind = saved.get("position_embedding_type", "absolute")
    source = SOURCES.get(saved.get("model_type"))
    if source is not None and source.family == "encoder" and kind != "absolute":
        raise ConversionError(
            f"{saved['model_type']} checkpoint has options Sora has no equivalent for: position_embedding_type="
            f"{kind!r} (Sora: absolute or rotary positions)"
        )


def check_architectures(saved: dict[str, Any], where: str) -> None:
    """A config.json whose `architectures` name another source's class than its `model_type` (BERT weights saved
    under `roberta`, Llama's under `bert`): its weights were not trained for the maths that model_type computes."""
    model_type = saved.get("model_type")
    for name in saved.get("architectures") or []:
        family = next((s.model_type for s in SOURCES.values() if _is_class_of(str(name), s.class_prefix)), None)
        if family is not None and family != model_type:
            raise ConversionError(
                f"{where} says model_type {model_type!r} but architectures {name!r} (a {family} model): the config "
                f"does not describe its weights. Set model_type to {family!r} in config.json (or put back the "
                "config.json the model was saved with) and convert again"
            )


def _is_class_of(name: str, prefix: str) -> bool:
    """`BertForMaskedLM` is a Bert class; `Qwen2ForCausalLM` is not a Qwen3 one, `RobertaModel` not a Bert one."""
    return name.startswith(prefix) and name[len(prefix) : len(prefix) + 1] in ("F", "M", "P", "L", "")


def named_like(names: list[str]) -> str | None:
    """Which source's parameter names `names` carry (from their prefixes), for an error message; None: unknown."""
    for name in names:
        if name.startswith(("bert.", "roberta.")):
            return f"a {name.split('.', 1)[0]} model"
        if name.startswith(("model.layers.", "model.embed_tokens.", "model.norm.")):
            return "a Llama-family decoder (llama, mistral, qwen2 or qwen3)"
        if name.startswith(("embeddings.word_embeddings.", "encoder.layer.")):
            return "a BERT-style encoder (bert or roberta)"
    return None


def _encoder_options(config: Any, tokenizer: Any, source: Source) -> dict[str, Any]:
    problems = []
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        problems.append("is_decoder / add_cross_attention (a BERT decoder)")
    if problems:
        raise ConversionError(
            f"{config.model_type} checkpoint has options Sora has no equivalent for: {'; '.join(problems)}"
        )
    pad = getattr(config, "pad_token_id", 0)
    special = {}
    for name in ("cls", "sep", "mask", "bos", "eos"):
        token_id = getattr(tokenizer, f"{name}_token_id", None) if tokenizer is not None else None
        special[f"{name}_token_id"] = token_id
    return {
        **{name: getattr(config, name) for name in _SHARED_FIELDS},
        "type_vocab_size": config.type_vocab_size,
        "rms_norm_eps": config.layer_norm_eps,
        "initializer_range": config.initializer_range,
        "hidden_dropout": config.hidden_dropout_prob,
        "attention_dropout": config.attention_probs_dropout_prob,
        "classifier_dropout": getattr(config, "classifier_dropout", None),
        "attention_bias": True,
        "mlp_bias": True,
        "position_embedding_type": "absolute",
        "position_offset": pad + 1 if source.position_offset_from_padding else 0,
        "norm_type": "layer_norm",
        "norm_position": "post",
        "embedding_norm": True,
        "mlp_type": "plain",
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", True)),
        "pad_token_id": pad,
        "decoder_start_token_id": None,
        **special,
    }


# BERT / RoBERTa parameter names -> Sora's (after the `bert.` / `roberta.` prefix); None: not used by Sora
_ENCODER_KEYS = [
    (r"embeddings\.word_embeddings\.", "model.embed_tokens."),
    (r"embeddings\.position_embeddings\.", "model.embed_positions."),
    (r"embeddings\.token_type_embeddings\.", "model.token_type_embeddings."),
    (r"embeddings\.LayerNorm\.", "model.embed_norm."),
    (r"embeddings\.(position_ids|token_type_ids)$", None),
    (r"encoder\.layer\.(\d+)\.attention\.self\.query\.", r"model.layers.\1.self_attn.q_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.key\.", r"model.layers.\1.self_attn.k_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.value\.", r"model.layers.\1.self_attn.v_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"model.layers.\1.self_attn.o_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"model.layers.\1.post_attention_layernorm."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"model.layers.\1.mlp.up_proj."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"model.layers.\1.mlp.down_proj."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"model.layers.\1.post_feedforward_layernorm."),
    (r"pooler\.dense\.", None),  # next-sentence pooler: Sora's pooled heads have their own
    (r"cls\.seq_relationship\.", None),
    (r"(cls\.predictions\.transform|lm_head)\.dense\.", "head.dense."),
    (r"(cls\.predictions\.transform\.LayerNorm|lm_head\.layer_norm)\.", "head.norm."),
    (r"(cls\.predictions|lm_head)\.decoder\.weight$", "decoder.weight"),
    (r"(cls\.predictions|lm_head)(\.decoder)?\.bias$", "decoder.bias"),
]


def encoder_key(key: str) -> str | None:
    """Sora's name for a BERT / RoBERTa parameter (None: a weight Sora does not use); an error for an unknown one."""
    key = re.sub(r"^(bert|roberta)\.", "", key)
    for pattern, replacement in _ENCODER_KEYS:
        if re.match(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key, count=1)
    raise ConversionError(f"the source has a parameter Sora has no place for: {key}")


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
        **{name: getattr(config, name) for name in _SHARED_FIELDS},
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
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


__all__ = [
    "ENCODER_HEADS",
    "SOURCES",
    "ConversionError",
    "Head",
    "Source",
    "check_architectures",
    "check_saved_config",
    "encoder_key",
    "llama_options",
    "named_like",
    "sora_options",
    "source_of",
]
