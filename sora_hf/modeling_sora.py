"""PyTorch Sora model: encoder, causal decoder and encoder-decoder from one `SoraConfig`, with every task head.

The blocks are modern pre-norm transformer blocks (RMSNorm, rotary positions, gated MLP, optional grouped-query
attention, no biases by default). Attention goes through transformers' attention interface, so `eager`, `sdpa`,
`flex_attention` and `flash_attention_*` all work. Pooled heads may use *multi-level attention*: a learned attention
over the pooled vectors of every layer instead of the last layer alone (`config.multi_level_attention`).

One class has one shape, as in T5Gemma: `SoraSelfAttention` and `SoraCrossAttention`; `SoraLayer` (pre-norm
self-attention block), `SoraPostNormLayer` (BERT's post-norm block) and `SoraDecoderLayer` (self- plus
cross-attention); the stacks `SoraModel` (the encoder), `SoraDecoderModel` (the causal decoder of `SoraForCausalLM`)
and `SoraSeq2SeqDecoder` (the cross-attending decoder of `SoraSeq2SeqModel`), the first two over one `SoraStack`. The multi-task model lives in `modeling_sora_multitask.py`, the CRF of
the token-classification head in `crf.py`, the `modules.json` an embedding folder needs for sentence-transformers in
`sentence_transformers_folder.py`.

This file imports only torch, transformers and those files, so that `save_pretrained` copies them beside the weights
and the model loads with `trust_remote_code=True` where sora_hf is not installed.
"""

import copy
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import (
    create_bidirectional_mask,
    create_causal_mask,
    create_sliding_window_causal_mask,
    find_packed_sequence_indices,
    packed_sequence_mask_function,
)
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPast,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithPast,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_sora import SoraConfig
from .crf import SoraCRF
from .sentence_transformers_folder import write_modules_json

logger = logging.get_logger(__name__)

# `padding_free=None` with sdpa or eager attention unpads a batch only from this share of padding up
PADDING_FREE_MIN_PAD_SHARE = 0.125

# transformers 5.24 renamed the cache argument of forwards, masks and `generate()` from `past_key_values` to `cache`,
# and the cache field of the outputs with it; 5.17-5.23 use the old name. Sora's forwards accept both names and speak
# to transformers in the one the installed release uses, so a checkpoint's remote code decodes right on either.
CACHE_ARG = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"
CACHE_FIELD = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


def _one_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The cache a caller passed, under either name; the old name warns as transformers' own models do where the
    installed release has renamed it (5.24+: `@deprecate_kwarg("past_key_values", new_name="cache")` on Llama's)."""
    if cache is not None and past_key_values is not None:
        raise ValueError("Pass the cache as `cache` or as `past_key_values`, not both.")
    if past_key_values is not None and CACHE_ARG == "cache":
        warnings.warn(
            "`past_key_values` is deprecated and will be removed in version 5.40.0 for Sora's forward. Use `cache` "
            "instead.",
            FutureWarning,
            stacklevel=3,
        )
    return cache if cache is not None else past_key_values


def output_cache(outputs: ModelOutput) -> Cache | None:
    """The cache an output carries, whatever the installed transformers calls its field."""
    return getattr(outputs, CACHE_FIELD, None)


class SoraRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            # Llama's ops: ONNX opset 17 has no RMSNorm, and onnxruntime fuses this pattern into its own kernel
            hidden_states = hidden_states.to(torch.float32)
            variance = hidden_states.pow(2).mean(-1, keepdim=True)
            hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
            return self.weight * hidden_states.to(input_dtype)
        # one fused kernel, bit-identical to those ops in float32; half precision is normalised in float32 and
        # scaled after the cast back, as Llama does
        if input_dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(hidden_states, self.weight.shape, self.weight, self.variance_epsilon)
        normed = F.rms_norm(hidden_states.to(torch.float32), self.weight.shape, None, self.variance_epsilon)
        return self.weight * normed.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}"


class SoraLayerNorm(nn.LayerNorm):
    """LayerNorm with a bias (`norm_type="layer_norm"`: BERT's norm)."""


def sora_norm(config: SoraConfig, size: int | None = None) -> nn.Module:
    """The norm `config.norm_type` names, over `size` (default: the hidden size)."""
    size = size or config.hidden_size
    if config.norm_type == "layer_norm":
        return SoraLayerNorm(size, eps=config.rms_norm_eps)
    return SoraRMSNorm(size, eps=config.rms_norm_eps)


class SoraRotaryEmbedding(nn.Module):
    def __init__(self, config: SoraConfig):
        super().__init__()
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings
        self.config = config
        self.rope_type = self.config.rope_parameters["rope_type"]
        rope_init_fn: Callable = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init_fn(self.config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: SoraConfig, **kwargs) -> tuple[torch.Tensor, float]:
        base = config.rope_parameters["rope_theta"]
        dim = config.head_dim
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        return inv_freq, 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


def _dropout(module: nn.Dropout, hidden_states: torch.Tensor) -> torch.Tensor:
    """`module(hidden_states)` only where dropout does something: skipping the call in eval saves ~3% of a small
    model's decoding step on CPU (nine module calls per forward)."""
    return module(hidden_states) if module.training and module.p > 0 else hidden_states


def layer_attention_type(config: SoraConfig, layer_idx: int) -> str:
    """A layer's attention, `"full_attention"` or `"sliding_attention"` (`config.layer_types`); the decoder layers
    of an encoder-decoder, which may outnumber the encoder's, attend in full."""
    return config.layer_types[layer_idx] if layer_idx < len(config.layer_types) else "full_attention"


class SoraMLP(nn.Module):
    """Gated MLP: `down(act(gate(x)) * up(x))`."""

    def __init__(self, config: SoraConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class SoraPlainMLP(nn.Module):
    """BERT's MLP (`mlp_type="plain"`): `down(act(up(x)))`."""

    def __init__(self, config: SoraConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))


def sora_mlp(config: SoraConfig) -> nn.Module:
    return SoraPlainMLP(config) if config.mlp_type == "plain" else SoraMLP(config)


@dataclass
class PaddedRows:
    """Where the real tokens of a padded `(batch, seq)` batch sit once packed into one row: the padding-free encoder
    runs its token-wise parts (projections, MLP, norms) on those alone, and with sdpa or eager attention each layer
    scatters its queries, keys and values back into the padded rows for the one step that mixes positions."""

    indices: torch.Tensor  # flat positions of the real tokens in `batch * seq`
    batch_size: int
    seq_len: int

    def pad(self, states: torch.Tensor) -> torch.Tensor:
        """`(1, real tokens, *dims)` -> `(batch, seq, *dims)`, zeros at the pads."""
        flat = states[0].reshape(states.shape[1], -1)
        padded = flat.new_zeros(self.batch_size * self.seq_len, flat.shape[-1]).index_copy(0, self.indices, flat)
        return padded.view(self.batch_size, self.seq_len, *states.shape[2:])

    def unpad(self, states: torch.Tensor) -> torch.Tensor:
        """`(batch, seq, *dims)` -> `(1, real tokens, *dims)`."""
        flat = states.reshape(self.batch_size * self.seq_len, *states.shape[2:])
        return flat.index_select(0, self.indices).unsqueeze(0)


class SoraSelfAttention(nn.Module):
    """Multi-head (optionally grouped-query) self-attention with rotary positions; causal in a decoder."""

    def __init__(self, config: SoraConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = is_causal
        self.attention_type = layer_attention_type(config, layer_idx)
        self.sliding_window = config.sliding_window if self.attention_type == "sliding_attention" else None
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(
            config.num_attention_heads * self.head_dim, config.hidden_size, bias=config.attention_output_bias
        )
        self.qk_norm = config.qk_norm  # read once: config attribute reads cost at every decoding step
        if config.qk_norm:  # per head, over head_dim (Qwen3)
            self.q_norm = sora_norm(config, self.head_dim)
            self.k_norm = sora_norm(config, self.head_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        rows: PaddedRows | None = kwargs.pop("padded_rows", None)
        query_states = self.q_proj(hidden_states).view(hidden_shape)
        key_states = self.k_proj(hidden_states).view(hidden_shape)
        if self.qk_norm:
            query_states, key_states = self.q_norm(query_states), self.k_norm(key_states)
        value_states = self.v_proj(hidden_states).view(hidden_shape)
        if rows is None:
            query_states, key_states = query_states.transpose(1, 2), key_states.transpose(1, 2)
            value_states = value_states.transpose(1, 2)
        if position_embeddings is not None:  # None: absolute positions, added to the embeddings
            cos, sin = position_embeddings
            heads_dim = 1 if rows is None else 2
            query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin, heads_dim)
        if rows is not None:  # packed real tokens: attention alone runs on the padded rows
            query_states = rows.pad(query_states).transpose(1, 2)
            key_states = rows.pad(key_states).transpose(1, 2)
            value_states = rows.pad(value_states).transpose(1, 2)
        if cache is not None and CACHE_ARG == "cache":
            # 5.24+: caches take the attention kwargs (a paged cache writes there what its attention reads)
            key_states, value_states = cache.update(key_states, value_states, self.layer_idx, kwargs=kwargs)
        elif type(cache).__name__ == "PagedAttentionCache":
            # continuous batching before 5.24 hands its paged cache to the attention function, which fills it
            kwargs["cache"] = cache
        elif cache is not None:
            key_states, value_states = cache.update(key_states, value_states, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            sliding_window=self.sliding_window,
            **kwargs,
        )
        if rows is not None:
            attn_output = rows.unpad(attn_output)
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output), attn_weights


class SoraCrossAttention(nn.Module):
    """Attention of the encoder-decoder's decoder to the encoder states: no positions, never causal; the encoder's
    keys and values are projected once per generation and read back from the cache at every later step."""

    def __init__(self, config: SoraConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = False
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(
            config.num_attention_heads * self.head_dim, config.hidden_size, bias=config.attention_output_bias
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        query_states = self.q_proj(hidden_states).view(*input_shape, -1, self.head_dim).transpose(1, 2)
        if cache is not None and cache.is_updated.get(self.layer_idx, False):
            # the encoder states do not change while decoding: reuse their projections
            key_states = cache.cross_attention_cache.layers[self.layer_idx].keys
            value_states = cache.cross_attention_cache.layers[self.layer_idx].values
        else:
            kv_shape = (*encoder_hidden_states.shape[:-1], -1, self.head_dim)
            key_states = self.k_proj(encoder_hidden_states).view(kv_shape).transpose(1, 2)
            value_states = self.v_proj(encoder_hidden_states).view(kv_shape).transpose(1, 2)
            if cache is not None:
                key_states, value_states = cache.cross_attention_cache.update(key_states, value_states, self.layer_idx)
                cache.is_updated[self.layer_idx] = True

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output), attn_weights


class SoraLayer(GradientCheckpointingLayer):
    """Pre-norm block of `SoraModel` (the encoder, or the causal decoder): self-attention and gated MLP."""

    def __init__(self, config: SoraConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.input_layernorm = sora_norm(config)
        self.self_attn = SoraSelfAttention(config, layer_idx, is_causal=is_causal)
        self.post_attention_layernorm = sora_norm(config)
        self.mlp = sora_mlp(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        keep = kwargs.pop("token_keep", None)  # a padded encoder batch: its pads stay zeros (`SoraModel`)
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = residual + _dropout(self.dropout, hidden_states)
        residual = hidden_states
        hidden_states = residual + _dropout(self.dropout, self.mlp(self.post_attention_layernorm(hidden_states)))
        return hidden_states if keep is None else hidden_states * keep


class SoraPostNormLayer(GradientCheckpointingLayer):
    """BERT's post-norm block (`norm_position="post"`): the norm after each residual sum, none before (and the stack
    has no final norm). Its own class beside `SoraLayer`: both are named in `_no_split_modules` and recorded as
    hidden states."""

    def __init__(self, config: SoraConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.self_attn = SoraSelfAttention(config, layer_idx, is_causal=is_causal)
        self.post_attention_layernorm = sora_norm(config)
        self.mlp = sora_mlp(config)
        self.post_feedforward_layernorm = sora_norm(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        keep = kwargs.pop("token_keep", None)
        attention, _ = self.self_attn(
            hidden_states,
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = self.post_attention_layernorm(hidden_states + _dropout(self.dropout, attention))
        hidden_states = self.post_feedforward_layernorm(
            hidden_states + _dropout(self.dropout, self.mlp(hidden_states))
        )
        return hidden_states if keep is None else hidden_states * keep


class SoraDecoderLayer(SoraLayer):
    """Pre-norm block of the encoder-decoder's decoder: causal self-attention, cross-attention to the encoder, gated
    MLP: a `SoraLayer` plus the cross-attention (its own entry in `_no_split_modules`)."""

    def __init__(self, config: SoraConfig, layer_idx: int):
        super().__init__(config, layer_idx, is_causal=True)
        self.cross_attn_layernorm = SoraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.cross_attn = SoraCrossAttention(config, layer_idx)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=None if cache is None else cache.self_attention_cache,
            **kwargs,
        )
        hidden_states = residual + _dropout(self.dropout, hidden_states)
        residual = hidden_states
        hidden_states, _ = self.cross_attn(
            self.cross_attn_layernorm(hidden_states),
            encoder_hidden_states,
            attention_mask=encoder_attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = residual + _dropout(self.dropout, hidden_states)
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + _dropout(self.dropout, hidden_states)


def pool_tokens(
    hidden_state: torch.Tensor, attention_mask: torch.Tensor | None, pooling: Literal["cls", "mean", "last"]
) -> torch.Tensor:
    """`(batch, seq, hidden)` -> `(batch, hidden)`: the first token, the last real one, or the mean of the real ones."""
    if attention_mask is not None and attention_mask.dim() == 2:
        attention_mask = attention_mask[:, -hidden_state.shape[1] :]  # peft's prefix tuning: virtual mask columns
    elif attention_mask is not None:
        attention_mask = None  # a 4D mask built by the caller: no per-token padding to read
    if pooling == "cls":
        return hidden_state[:, 0]
    if pooling == "last":
        if attention_mask is None:
            return hidden_state[:, -1]
        positions = torch.arange(hidden_state.shape[1], device=hidden_state.device)
        last = (positions * attention_mask.to(positions.dtype)).argmax(-1)  # right or left padding alike
        return hidden_state[torch.arange(hidden_state.shape[0], device=hidden_state.device), last]
    if attention_mask is None:
        return hidden_state.mean(dim=1)
    mask = attention_mask.to(hidden_state.dtype).unsqueeze(-1)
    return (hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class SoraPooler(nn.Module):
    """Turns token states into one vector per sequence.

    Each layer is pooled with `config.classifier_pooling` (`cls`: first token, `mean`: mean over real tokens, `last`:
    last real token, what a decoder's `cls` means since its first token has seen nothing else). With
    `config.multi_level_attention`, every layer's pooled (and RMS-normalised) vector is a candidate and a learned
    attention (`v^T tanh(W h_l)`, softmax over layers) mixes them, so a head can draw on lower layers' lexical
    features as well as the top layer's. The query starts at zero, i.e. as a uniform average of the layers.
    """

    def __init__(self, config: SoraConfig):
        super().__init__()
        self.pooling = config.classifier_pooling
        if config.is_decoder and self.pooling == "cls":
            # under causal attention the first token has seen nothing: pool the last real one, as Llama's heads do
            self.pooling = "last"
        self.multi_level = config.multi_level_attention
        if self.multi_level:
            self.level_norm = SoraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.level_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
            self.level_query = nn.Parameter(torch.zeros(config.hidden_size))

    def pool(self, hidden_state: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return pool_tokens(hidden_state, attention_mask, self.pooling)

    def forward(
        self,
        last_hidden_state: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        all_hidden_states: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the pooled vectors `(batch, hidden)` and, with multi-level attention, the layer weights."""
        if attention_mask is not None and attention_mask.shape[-1] > last_hidden_state.shape[1]:
            # prefix tuning (peft) prepends its virtual tokens to the mask only: they have no states to pool
            attention_mask = attention_mask[:, -last_hidden_state.shape[1] :]
        if not self.multi_level:
            return self.pool(last_hidden_state, attention_mask), None
        if all_hidden_states is None:
            raise ValueError("multi-level attention needs the hidden states of every layer")
        # hidden_states[0] is the embedding output; the layers' outputs follow
        levels = torch.stack([self.pool(self.level_norm(h), attention_mask) for h in all_hidden_states[1:]], dim=1)
        scores = torch.tanh(self.level_proj(levels)) @ self.level_query
        weights = torch.softmax(scores.float(), dim=-1).to(levels.dtype)
        return (weights.unsqueeze(-1) * levels).sum(dim=1), weights


class SoraClassificationHead(nn.Module):
    """Pooler + dense + activation + dropout + projection; one module so peft's `modules_to_save` keeps it whole."""

    def __init__(self, config: SoraConfig, num_outputs: int):
        super().__init__()
        self.pooler = SoraPooler(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN["gelu"]
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.out_proj = nn.Linear(config.hidden_size, num_outputs)

    def forward(self, last_hidden_state, attention_mask=None, all_hidden_states=None) -> torch.Tensor:
        pooled, _ = self.pooler(last_hidden_state, attention_mask, all_hidden_states)
        return self.out_proj(self.dropout(self.act(self.dense(self.dropout(pooled)))))


# Every head, so that a checkpoint of any one of them loads as any other with `trust_remote_code=True`
# (transformers alone writes only the saved class's own entry).
SORA_AUTO_MAP = {
    "AutoConfig": "configuration_sora.SoraConfig",
    "AutoModel": "modeling_sora.SoraModel",
    "AutoModelForMaskedLM": "modeling_sora.SoraForMaskedLM",
    "AutoModelForPreTraining": "modeling_sora.SoraForPreTraining",
    "AutoModelForCausalLM": "modeling_sora.SoraForCausalLM",
    "AutoModelForSeq2SeqLM": "modeling_sora.SoraForSeq2SeqLM",
    "AutoModelForSequenceClassification": "modeling_sora.SoraForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_sora.SoraForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_sora.SoraForQuestionAnswering",
    "AutoModelForMultipleChoice": "modeling_sora.SoraForMultipleChoice",
    "AutoModelForTextEncoding": "modeling_sora.SoraForSentenceEmbedding",
}


class SoraPreTrainedModel(PreTrainedModel):
    config: SoraConfig
    base_model_prefix = "model"
    # Most heads' losses are a mean over their own batch (they do not read `num_items_in_batch`), so Trainer must
    # divide them by the gradient-accumulation steps itself, which it does only for models that say so. The LM heads
    # that do divide by `num_items_in_batch` set this back to True.
    accepts_loss_kwargs = False
    supports_gradient_checkpointing = True
    # each stack names the block class it holds (`SoraModel`: `SoraLayer`, or `SoraPostNormLayer` in BERT's layout;
    # `SoraSeq2SeqDecoder`: `SoraDecoderLayer`) and transformers gathers the submodels' lists: device maps and
    # Accelerate's FSDP (which reads them when its config names no class) keep exactly the model's blocks whole
    _no_split_modules = None
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    _supports_attention_backend = True
    # recorded by the stacks (`SoraModel`, `SoraSeq2SeqDecoder`), each for its own layers
    _can_record_outputs = None

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        # residual-branch outputs are scaled down with depth (GPT-2 / ModernBERT style) to keep the stream stable
        out_std = std / (2.0 * self.config.num_hidden_layers) ** 0.5
        if isinstance(module, (SoraSelfAttention, SoraCrossAttention)):
            init.normal_(module.o_proj.weight, mean=0.0, std=out_std)
        elif isinstance(module, SoraMLP):
            init.normal_(module.down_proj.weight, mean=0.0, std=out_std)
        elif isinstance(module, SoraPooler) and module.multi_level:
            init.zeros_(module.level_query)
        elif isinstance(module, SoraForMaskedLM):
            init.zeros_(module.decoder.bias)
        elif isinstance(module, SoraCRF):
            for parameter in (module.transitions, module.start_transitions, module.end_transitions):
                init.zeros_(parameter)
            buffers = (module.transition_penalty, module.start_penalty, module.end_penalty)
            for buffer, value in zip(buffers, module.scheme_penalties(), strict=True):
                init.copy_(buffer, value)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            self.config.auto_map = {**SORA_AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)


@dataclass
class SoraModelOutput(BaseModelOutputWithPast):
    r"""pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`, encoders only):
    one vector per sequence, pooled as `config.classifier_pooling` says (the first token, the mean of the real
    tokens, or the last real one), as `BertModel` returns one. Parameter-free: the pooled heads (classification,
    multiple choice, sentence embeddings) have poolers of their own."""

    pooler_output: torch.FloatTensor | None = None


class SoraStack(SoraPreTrainedModel):
    """What the encoder and the causal decoder share: the embeddings (tokens, with segments in the encoder; learned
    positions and an embedding norm in BERT's layout), the blocks and the final norm. Build one with
    `sora_stack(config)`, or as `AutoModel` does."""

    is_causal: bool
    _can_record_outputs = {
        "hidden_states": [SoraLayer, SoraPostNormLayer],
        "attentions": OutputRecorder(SoraSelfAttention, index=1),
    }

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        self.attention_types = set(config.layer_types)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size)
            if config.type_vocab_size > 0 and not self.is_causal
            else None
        )
        absolute = config.position_embedding_type == "absolute"
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size) if absolute else None
        self.embed_norm = sora_norm(config) if config.embedding_norm else None
        self.embed_dropout = nn.Dropout(config.hidden_dropout)
        layer_class = SoraPostNormLayer if config.norm_position == "post" else SoraLayer
        self._no_split_modules = [layer_class.__name__]
        self.layers = nn.ModuleList(
            [layer_class(config, i, is_causal=self.is_causal) for i in range(config.num_hidden_layers)]
        )
        # post-norm blocks end on a norm already (BERT has no final one)
        self.norm = sora_norm(config) if config.norm_position == "pre" else nn.Identity()
        self.rotary_emb = None if absolute else SoraRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def _embed(self, input_ids, token_type_ids, inputs_embeds) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                inputs_embeds = inputs_embeds + self.token_type_embeddings.weight[0]
            else:
                inputs_embeds = inputs_embeds + self.token_type_embeddings(token_type_ids)
        return inputs_embeds

    def _add_positions(self, inputs_embeds, position_ids, attention_mask, cache) -> torch.Tensor:
        """Learned positions (BERT, RoBERTa) and the embedding norm, where the layout has them."""
        if self.embed_positions is not None:
            past_seen = cache.get_seq_length() if cache is not None else 0
            positions = _absolute_positions_of(self.config, position_ids, attention_mask, past_seen, inputs_embeds)
            inputs_embeds = inputs_embeds + self.embed_positions(positions)
        if self.embed_norm is not None:
            inputs_embeds = self.embed_norm(inputs_embeds)
        return inputs_embeds

    @staticmethod
    def _columns(inputs_embeds: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        """The rotary positions of a batch given none: its columns, after what the cache holds."""
        past_seen_tokens = cache.get_seq_length() if cache is not None else 0
        return (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen_tokens).unsqueeze(0)

    def _blocks(self, hidden_states, masks, position_ids, cache, use_cache, **kwargs) -> torch.Tensor:
        """Every block, then the final norm."""
        position_embeddings = None if self.rotary_emb is None else self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                masks[layer.self_attn.attention_type],
                position_embeddings=position_embeddings,
                cache=cache,
                use_cache=use_cache,
                **kwargs,
            )
        return self.norm(hidden_states)


class SoraModel(SoraStack):
    """The bare Sora encoder: bidirectional attention, segment embeddings, a parameter-free `pooler_output`.

    `AutoModel` (and `SoraModel.from_pretrained` / `from_config`) gives the stack a config describes: this encoder,
    `SoraDecoderModel` for a decoder (`config.is_decoder`), `SoraSeq2SeqModel` for an encoder-decoder. Built
    directly, `SoraModel(config)` refuses a decoder config rather than build an encoder from it silently.
    """

    is_causal = False

    def __init__(self, config: SoraConfig):
        if config.is_decoder:
            raise ValueError(
                "SoraModel is Sora's encoder and this config describes a decoder (is_decoder=True): build "
                "SoraDecoderModel(config), or AutoModel.from_config(config), which picks the stack the config describes"
            )
        if "sliding_attention" in set(config.layer_types):
            raise ValueError("SoraConfig.sliding_window is for decoders (SoraForCausalLM); an encoder attends to all.")
        super().__init__(config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """As for BART: the bare model of an encoder-decoder checkpoint (what `AutoModel` loads) is the
        encoder-decoder `SoraSeq2SeqModel`, not an encoder stack that would drop half the weights; a decoder's is
        `SoraDecoderModel`."""
        if cls is SoraModel:
            config = kwargs.get("config")
            if not isinstance(config, SoraConfig):
                config = _saved_config(pretrained_model_name_or_path, kwargs)
            target = _bare_model_class(config)
            if target is not SoraModel:
                return target.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def _from_config(cls, config: SoraConfig, **kwargs):
        if cls is SoraModel and _bare_model_class(config) is not SoraModel:
            return _bare_model_class(config)._from_config(config, **kwargs)
        return super()._from_config(config, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SoraModelOutput:
        r"""cache / past_key_values, use_cache: accepted as every stack takes them; an encoder keeps no cache."""
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        cache = _one_cache(cache, past_key_values)
        return_dict = kwargs.pop("return_dict", None)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if self._runs_padding_free(attention_mask, position_ids, cache, kwargs):
            outputs = self._padding_free_forward(
                input_ids, attention_mask, token_type_ids, inputs_embeds, return_dict=True, **kwargs
            )
        else:
            outputs = self._forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                cache=cache,
                inputs_embeds=inputs_embeds,
                return_dict=True,
                **kwargs,
            )
        outputs["pooler_output"] = pool_tokens(
            outputs.last_hidden_state, attention_mask, self.config.classifier_pooling
        )
        return outputs if return_dict else outputs.to_tuple()

    def _runs_padding_free(self, attention_mask, position_ids, cache, kwargs) -> bool:
        """Unpad only a padded encoder batch whose outputs can be padded back (no attention maps, no cache), and
        never in a traced graph (torch.compile, ONNX export), whose shapes must not hang on one batch's padding."""
        if cache is not None:
            return False
        wanted = self.config.padding_free
        implementation = self.config._attn_implementation
        if wanted is False or (wanted is None and implementation == "flex_attention"):
            return False
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return False
        if attention_mask is None or attention_mask.dim() != 2 or position_ids is not None:
            return False
        # attention maps, and hidden states a caller holds on to (selected by index, or kept for their gradient as
        # attribution methods do), come from the padded path, where every recorded tensor is on the autograd path
        if kwargs.get("output_attentions", self.config.output_attentions):
            return False
        if kwargs.get("output_hidden_states", self.config.output_hidden_states) not in (None, False):
            return False  # `0` selects the embeddings' output: an index, not a flag
        pads = int((attention_mask == 0).sum())
        if pads == attention_mask.numel():  # nothing to run: the padded path answers (zeros) as for any pad
            return False
        if wanted is None and not implementation.startswith("flash_attention"):
            # sdpa/eager attention still runs on the padded rows, and moving the tokens in and out of them costs
            # about what an eighth of the batch in padding does (measured on CPU, benchmarks/cpu_speed.py)
            return pads >= attention_mask.numel() * PADDING_FREE_MIN_PAD_SHARE
        return pads > 0

    def _padding_free_forward(self, input_ids, attention_mask, token_type_ids, inputs_embeds, **kwargs):
        """Run only the real tokens, packed into one row with per-sequence positions, then pad the outputs back."""
        return_dict = kwargs.pop("return_dict", self.config.return_dict)
        batch_size, seq_len = attention_mask.shape
        real = attention_mask.bool()
        indices = real.flatten().nonzero().squeeze(-1)
        lengths = real.sum(dim=1, dtype=torch.int32)
        # positions restart at 0 in each sequence: rotary sees the same relative positions as in the padded batch,
        # and the position jumps are how the mask (and flash attention's varlen kernels) find the sequences
        position_ids = (real.cumsum(dim=1) - 1)[real].unsqueeze(0)
        rows = PaddedRows(indices, batch_size, seq_len)
        implementation = self.config._attn_implementation
        masks = None  # flex attention: a block-sparse mask from the position jumps
        if implementation.startswith("flash_attention"):
            cu_seq_lens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
            max_length = int(lengths.max())
            kwargs.update(
                cu_seq_lens_q=cu_seq_lens, cu_seq_lens_k=cu_seq_lens, max_length_q=max_length, max_length_k=max_length
            )
        elif implementation != "flex_attention":
            # sdpa and eager have no variable-length kernel, and a block-diagonal mask over every real token of the
            # batch costs (batch * seq)^2: their attention runs on the padded rows with the usual padding mask
            shape = torch.empty(batch_size, seq_len, 0, dtype=self.dtype, device=attention_mask.device)
            masks = {
                "full_attention": create_bidirectional_mask(
                    config=self.config, inputs_embeds=shape, attention_mask=attention_mask
                )
            }
            kwargs["padded_rows"] = rows
        if inputs_embeds is None:
            # embedded in the batch's own shape: what hooks on the embedding see and change (adversarial training
            # perturbs it per row) keeps the usual `(batch, seq, hidden)`
            inputs_embeds = self.embed_tokens(input_ids)
        packed = {
            "inputs_embeds": rows.unpad(inputs_embeds),
            "token_type_ids": None if token_type_ids is None else token_type_ids.flatten()[indices].unsqueeze(0),
        }
        outputs = self._forward(
            **packed, attention_mask=masks, position_ids=position_ids, use_cache=False, return_dict=True, **kwargs
        )
        outputs.last_hidden_state = rows.pad(outputs.last_hidden_state)
        return outputs if return_dict else outputs.to_tuple()

    @merge_with_config_defaults
    @capture_outputs
    def _forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SoraModelOutput:
        inputs_embeds = self._embed(input_ids, token_type_ids, inputs_embeds)
        keep = None  # a padded batch: 1 at the real tokens, 0 at the pads, `(batch, seq, 1)`
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            real = attention_mask[:, -inputs_embeds.shape[1] :]  # a prefix (peft) has mask columns too
            keep = real[..., None].to(inputs_embeds.dtype)
            if position_ids is None:
                # one rule on both paths (the padding-free one packs the real tokens): a row's positions count
                # its real tokens, so neither left padding nor the rows around it change what a row gives
                position_ids = (real.long().cumsum(-1) - 1).clamp(min=0)
        inputs_embeds = self._add_positions(inputs_embeds, position_ids, attention_mask, cache)
        if position_ids is None:
            position_ids = self._columns(inputs_embeds, cache)

        if isinstance(attention_mask, dict):  # made by the caller already, one per layer type
            masks = attention_mask
        else:
            # several sequences packed into one row (padding-free, or transformers' DataCollatorWithFlattening):
            # the position ids restart at each sequence, and each sequence attends only to itself
            packed = None if attention_mask is not None else find_packed_sequence_indices(position_ids)
            mask = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                and_mask_function=None if packed is None else packed_sequence_mask_function(packed),
            )
            masks = {"full_attention": mask}

        hidden_states = _dropout(self.embed_dropout, inputs_embeds)
        if keep is not None and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            # zeros at the pads, as the padding-free path leaves them, and every block zeroes its own output there:
            # the recorded hidden states are the tensors the next block reads (their gradients are real ones). An
            # exported graph returns the last state alone, zeroed below: a multiply between a block's residual sum
            # and the next norm would keep onnxruntime from fusing them (SkipLayerNormalization)
            hidden_states = hidden_states * keep
            kwargs["token_keep"] = keep
        hidden_states = self._blocks(hidden_states, masks, position_ids, cache, False, **kwargs)
        if keep is not None:
            hidden_states = hidden_states * keep
        return SoraModelOutput(last_hidden_state=hidden_states, **{CACHE_FIELD: None})


class SoraDecoderModel(SoraStack):
    """The bare Sora causal decoder (of `SoraForCausalLM`, and of pooled heads built on a decoder config): causal
    self-attention, optionally sliding-window, with a KV cache. `AutoModel` loads a decoder checkpoint as this."""

    is_causal = True

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        r"""cache / past_key_values: the KV cache of earlier steps (one argument under two names: transformers 5.24
        calls it `cache`, earlier releases `past_key_values`). token_type_ids: accepted as every stack takes them;
        a decoder has no segments."""
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        return_dict = kwargs.pop("return_dict", None)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self._forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_one_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return outputs if return_dict else outputs.to_tuple()

    @merge_with_config_defaults
    @capture_outputs
    def _forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        inputs_embeds = self._embed(input_ids, None, inputs_embeds)
        if use_cache and cache is None and not self.training:
            # training never reads a cache back, and without one packed sequences (position ids restarting,
            # as transformers' DataCollatorWithFlattening makes them) get their block-diagonal causal mask
            cache = DynamicCache(config=self.config)
        inputs_embeds = self._add_positions(inputs_embeds, position_ids, attention_mask, cache)
        if position_ids is None:
            position_ids = self._columns(inputs_embeds, cache)

        if isinstance(attention_mask, dict):  # `generate` made them already, one per layer type
            masks = attention_mask
        else:
            mask_kwargs = {
                "config": self.config,
                "inputs_embeds": inputs_embeds,
                "attention_mask": attention_mask,
                "position_ids": position_ids,
                CACHE_ARG: cache,
            }
            builders = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}
            masks = {kind: builders[kind](**mask_kwargs) for kind in self.attention_types}

        hidden_states = _dropout(self.embed_dropout, inputs_embeds)
        hidden_states = self._blocks(hidden_states, masks, position_ids, cache, use_cache, **kwargs)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, **{CACHE_FIELD: cache if use_cache else None})


def sora_stack(config: SoraConfig) -> SoraStack:
    """The stack a head builds on: the causal decoder for a decoder config, else the encoder."""
    return SoraDecoderModel(config) if config.is_decoder else SoraModel(config)


def _bare_model_class(config: SoraConfig | None) -> type[SoraPreTrainedModel]:
    """What `AutoModel` gives for `config`: the encoder-decoder, the decoder or the encoder."""
    if config is not None and config.is_encoder_decoder:
        return SoraSeq2SeqModel
    return SoraDecoderModel if config is not None and config.is_decoder else SoraModel


def _saved_config(path, kwargs: dict) -> SoraConfig | None:
    """The config saved at `path` (None where it cannot be read here: `from_pretrained` then says why)."""
    keys = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
    try:
        return SoraConfig.from_pretrained(path, **{key: kwargs[key] for key in keys if key in kwargs})
    except (OSError, ValueError):
        return None


def _absolute_positions_of(
    config: SoraConfig, position_ids, attention_mask, past_seen: int, inputs_embeds: torch.Tensor
) -> torch.Tensor:
    """The learned-position indices: `position_ids` (or the columns) plus `position_offset`; with an offset and a
    padding mask, counted over each row's real tokens, pads at `offset - 1` (RoBERTa's `padding_idx`)."""
    offset = config.position_offset
    if position_ids is None and offset and attention_mask is not None and attention_mask.dim() == 2 and not past_seen:
        mask = attention_mask.to(torch.long)
        return mask.cumsum(-1) * mask - 1 + offset
    if position_ids is None:
        position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device).unsqueeze(0) + past_seen
    return position_ids + offset


def _needs_all_layers(config: SoraConfig, kwargs: dict) -> tuple[dict, bool]:
    """Pooled heads with multi-level attention need every layer's states; return them only if the user asked."""
    user_asked = kwargs.get("output_hidden_states", config.output_hidden_states)
    if config.multi_level_attention:
        kwargs = {**kwargs, "output_hidden_states": True}
    return kwargs, bool(user_asked)


class SoraMLMHead(nn.Module):
    """Dense + activation + RMSNorm before the (tied) vocabulary projection, as in BERT/ModernBERT."""

    def __init__(self, config: SoraConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN["gelu"]
        self.norm = sora_norm(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(hidden_states)))


class SoraForMaskedLM(SoraPreTrainedModel):
    accepts_loss_kwargs = True  # the loss divides by Trainer's `num_items_in_batch` when given
    _tied_weights_keys = {"decoder.weight": "model.embed_tokens.weight"}
    # the (tied) vocabulary projection is sharded on the vocabulary like the embedding, then gathered
    _tp_plan = {"decoder": "colwise_gather_output"}
    _pp_plan = {"head": (["hidden_states"], ["hidden_states"]), "decoder": (["hidden_states"], ["logits"])}
    _fsdp_plan = {"head": "keep_full_weight", "decoder": "keep_full_weight"}

    def __init__(self, config: SoraConfig):
        super().__init__(_with_shape(config, is_decoder=False))  # an encoder, whatever the config says
        config = self.config
        self.model = SoraModel(config)
        self.head = SoraMLMHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""labels: token ids to predict at masked positions, -100 elsewhere."""
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        loss = None
        if labels is not None and self.config.sparse_prediction:
            # only the masked positions need vocabulary logits: (num_masked, vocab_size)
            keep = labels != -100
            logits = self.decoder(self.head(hidden_states[keep]))
            # a sum over the kept tokens divided by their count (or by Trainer's count over all accumulated
            # micro-batches, as the dense loss does): no branch, so torch.compile traces it whole
            denominator = kwargs.get("num_items_in_batch")
            if denominator is None:
                denominator = keep.sum().clamp(min=1)
            loss = F.cross_entropy(logits.float(), labels[keep], reduction="sum") / denominator
        else:
            logits = self.decoder(self.head(hidden_states))
            if labels is not None:
                loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


@dataclass
class SoraForPreTrainingOutput(ModelOutput):
    """Output of replaced-token-detection pre-training.

    loss: `generator_loss + config.rtd_loss_weight * discriminator_loss` (when labels are given).
    logits: discriminator logits `(batch, seq)`; > 0 means "this token was replaced".
    replaced_input_ids / replaced_labels: what the discriminator saw and its targets (1 = replaced).
    """

    loss: torch.FloatTensor | None = None
    generator_loss: torch.FloatTensor | None = None
    discriminator_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    generator_logits: torch.FloatTensor | None = None
    replaced_input_ids: torch.LongTensor | None = None
    replaced_labels: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class SoraDiscriminatorHead(nn.Module):
    def __init__(self, config: SoraConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN["gelu"]
        self.out_proj = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.act(self.dense(hidden_states))).squeeze(-1)


class SoraForPreTraining(SoraPreTrainedModel):
    """ELECTRA-style pre-training: a small MLM generator fills the masked positions with sampled tokens and the
    discriminator (`self.model`, the encoder that fine-tuning keeps) learns, for every token, whether it was replaced.

    Give `input_ids` with `[MASK]` at the masked positions and `labels` holding the original ids there (-100
    elsewhere), as `DataCollatorForLanguageModeling` produces. Without labels only the discriminator runs on
    `input_ids` (replaced-token detection at inference).
    """

    def __init__(self, config: SoraConfig):
        super().__init__(_with_shape(config, is_decoder=False))  # an encoder, whatever the config says
        config = self.config
        self.model = SoraModel(config)
        self.discriminator_head = SoraDiscriminatorHead(config)
        self.generator = SoraForMaskedLM(config.generator_config())
        # the generator's config is a copy, not a sub-config: it follows the attention the model was built with
        self.generator.config._attn_implementation = self.config._attn_implementation
        self.post_init()

    def set_attn_implementation(self, attn_implementation, *args, **kwargs):
        super().set_attn_implementation(attn_implementation, *args, **kwargs)
        self.generator.set_attn_implementation(self.config._attn_implementation, *args, **kwargs)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """The generator has a vocabulary of its own: it must grow with the discriminator's, or it samples ids
        (and reads new tokens) outside its embedding."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self.generator.resize_token_embeddings(embeddings.num_embeddings, mean_resizing=mean_resizing)
        return embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SoraForPreTrainingOutput:
        generator_loss = generator_logits = replaced_labels = None
        discriminator_input = input_ids
        if labels is not None:
            gen_out = self.generator(
                return_dict=True,
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                labels=labels,
            )
            generator_loss, generator_logits = gen_out.loss, gen_out.logits
            with torch.no_grad():
                masked = labels != -100
                masked_logits = generator_logits if generator_logits.dim() == 2 else generator_logits[masked]
                probs = torch.softmax(masked_logits.float(), dim=-1)
                # evaluation samples with a fixed seed: the same batch gives the same loss at every evaluation (and
                # in eval mode the model is a function of its inputs, as transformers' common tests expect)
                sampler = None
                if not self.training and probs.numel():
                    sampler = torch.Generator(device=probs.device).manual_seed(0)
                sampled = (
                    torch.multinomial(probs, 1, generator=sampler).squeeze(-1) if probs.numel() else labels[masked]
                )
                discriminator_input = input_ids.clone()
                discriminator_input[masked] = sampled
                original = torch.where(masked, labels, input_ids)
                replaced_labels = (discriminator_input != original).long()
        outputs = self.model(
            return_dict=True,
            input_ids=discriminator_input,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            **kwargs,
        )
        logits = self.discriminator_head(outputs.last_hidden_state)
        loss = discriminator_loss = None
        if labels is not None:
            weights = attention_mask.to(logits.dtype) if attention_mask is not None else torch.ones_like(logits)
            per_token = F.binary_cross_entropy_with_logits(logits, replaced_labels.to(logits.dtype), reduction="none")
            discriminator_loss = (per_token * weights).sum() / weights.sum().clamp(min=1.0)
            loss = generator_loss + self.config.rtd_loss_weight * discriminator_loss
        return SoraForPreTrainingOutput(
            loss=loss,
            generator_loss=generator_loss,
            discriminator_loss=discriminator_loss,
            logits=logits,
            generator_logits=generator_logits,
            replaced_input_ids=discriminator_input,
            replaced_labels=replaced_labels,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def _with_shape(config: SoraConfig, **shape: bool) -> SoraConfig:
    """`config` with the shape flags a head implies, copied first if that changes it: a model never edits the
    config object its caller still holds (a `SoraModel(cfg)` built after `SoraForCausalLM(cfg)` stays an encoder)."""
    if all(getattr(config, key) == value for key, value in shape.items()):
        return config
    config = copy.deepcopy(config)
    for key, value in shape.items():
        setattr(config, key, value)
    return config


class SoraForCausalLM(SoraPreTrainedModel, GenerationMixin):
    accepts_loss_kwargs = True  # the loss divides by Trainer's `num_items_in_batch` when given
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    # the (tied) vocabulary projection is sharded on the vocabulary like the embedding, then gathered
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}
    _fsdp_plan = {"lm_head": "keep_full_weight"}

    def __init__(self, config: SoraConfig):
        # a causal LM is a decoder whatever the config said; record it (on a copy: the caller's config stays an
        # encoder's) so that AutoModel reloads the checkpoint as a decoder
        super().__init__(_with_shape(config, is_decoder=True))
        self.model = SoraDecoderModel(self.config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        r"""labels: the input ids themselves (shifted inside the loss), -100 where no loss is wanted.
        cache / past_key_values: the KV cache (transformers 5.24 passes `cache`, earlier releases `past_key_values`)."""
        kwargs.pop("token_type_ids", None)
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_one_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{CACHE_FIELD: output_cache(outputs)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels: prepend the start token, drop the last label, replace -100 by padding."""
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


class SoraSeq2SeqDecoder(SoraPreTrainedModel):
    """The decoder stack of `SoraSeq2SeqModel`: embeddings, `config.num_decoder_layers` causal blocks that also
    attend to `encoder_hidden_states`, and a final RMSNorm. Its cache is an `EncoderDecoderCache` (a bare
    self-attention cache is wrapped in one)."""

    _no_split_modules = ["SoraDecoderLayer"]
    _can_record_outputs = {
        "hidden_states": SoraDecoderLayer,
        "attentions": OutputRecorder(SoraSelfAttention, index=1),
        "cross_attentions": OutputRecorder(SoraCrossAttention, index=1),
    }

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        converted_only = {"position_embedding_type": "rotary", "norm_position": "pre", "mlp_type": "gated"}
        other = [
            f"{key}={getattr(config, key)!r}" for key, value in converted_only.items() if getattr(config, key) != value
        ]
        if other:
            raise ValueError(
                f"the Sora encoder-decoder has Sora's own blocks only; {', '.join(other)} is not supported"
            )
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.embed_dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList([SoraDecoderLayer(config, i) for i in range(config.num_decoder_layers)])
        self.norm = SoraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = SoraRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""encoder_hidden_states: the encoder's last hidden states; encoder_attention_mask: its padding mask (2D).
        cache / past_key_values: the KV cache of earlier steps, under either name."""
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if encoder_hidden_states is None:
            raise ValueError("SoraSeq2SeqDecoder needs `encoder_hidden_states` (the encoder's outputs)")
        cache = _one_cache(cache, past_key_values)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)

        if use_cache and cache is None and not self.training:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        elif cache is not None and not isinstance(cache, EncoderDecoderCache):
            cache = EncoderDecoderCache(cache, DynamicCache(config=self.config))
        self_attn_cache = None if cache is None else cache.self_attention_cache

        if position_ids is None:
            past_seen_tokens = self_attn_cache.get_seq_length() if self_attn_cache is not None else 0
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen_tokens
            position_ids = position_ids.unsqueeze(0)

        if isinstance(attention_mask, dict):  # `generate` made it already
            mask = attention_mask["full_attention"]
        else:
            mask = create_causal_mask(
                config=self.config,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **{CACHE_ARG: self_attn_cache},
            )
        cross_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )

        hidden_states = _dropout(self.embed_dropout, inputs_embeds)
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                mask,
                encoder_hidden_states,
                encoder_attention_mask=cross_mask,
                position_embeddings=position_embeddings,
                cache=cache,
                use_cache=use_cache,
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states, **{CACHE_FIELD: cache if use_cache else None}
        )


class SoraSeq2SeqModel(SoraPreTrainedModel):
    """Encoder (bidirectional) + decoder (causal, cross-attending), word embeddings tied when
    `config.tie_word_embeddings`."""

    _tied_weights_keys = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}

    def __init__(self, config: SoraConfig):
        super().__init__(_with_shape(config, is_encoder_decoder=True, is_decoder=False))
        config = self.config
        self.encoder = SoraModel(config)
        self.decoder = SoraSeq2SeqDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value
        if self.config.tie_word_embeddings:
            self.decoder.embed_tokens = value

    def get_encoder(self, modality: str | None = None) -> SoraModel:
        return self.encoder

    def get_decoder(self) -> SoraSeq2SeqDecoder:
        return self.decoder

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("SoraSeq2SeqModel needs decoder_input_ids (or labels, or input_ids to shift)")
            # as BART: without targets, the decoder reconstructs the (shifted) input, the denoising set-up
            decoder_input_ids = shift_tokens_right(
                input_ids, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                return_dict=True,
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                **kwargs,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        decoder_outputs = self.decoder(
            return_dict=True,
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=_one_cache(cache, past_key_values),
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **{CACHE_FIELD: output_cache(decoder_outputs)},
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class SoraForSeq2SeqLM(SoraPreTrainedModel, GenerationMixin):
    """Encoder-decoder LM for translation, summarisation, style transfer and denoising pre-training."""

    _tied_weights_keys = {
        "lm_head.weight": "model.encoder.embed_tokens.weight",
        "model.decoder.embed_tokens.weight": "model.encoder.embed_tokens.weight",
    }
    # the (tied) vocabulary projection is sharded on the vocabulary like the embedding, then gathered
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}
    _fsdp_plan = {"lm_head": "keep_full_weight"}

    def __init__(self, config: SoraConfig):
        super().__init__(_with_shape(config, is_encoder_decoder=True, is_decoder=False))
        self.model = SoraSeq2SeqModel(self.config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def get_encoder(self, modality: str | None = None) -> SoraModel:
        return self.model.encoder

    def get_decoder(self) -> SoraSeq2SeqDecoder:
        return self.model.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        r"""labels: target ids (-100 where no loss); decoder inputs are derived from them when not given."""
        kwargs.pop("token_type_ids", None)
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=_one_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, self.config.vocab_size),
                labels.to(logits.device).reshape(-1),
                ignore_index=-100,
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **{CACHE_FIELD: output_cache(outputs)},
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


class SoraForSequenceClassification(SoraPreTrainedModel):
    """Single-label, multi-label or regression head (`config.problem_type`, inferred from the labels if unset)."""

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = sora_stack(config)
        self.classifier = SoraClassificationHead(config, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        kwargs, return_hidden = _needs_all_layers(self.config, kwargs)
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            cache=_one_cache(cache, past_key_values),
            **kwargs,
        )
        logits = self.classifier(outputs.last_hidden_state, attention_mask, outputs.hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states if return_hidden else None,
            attentions=outputs.attentions,
        )


class SoraForMultipleChoice(SoraPreTrainedModel):
    """Scores each `(batch, num_choices, seq)` choice with the pooled head; softmax over choices."""

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        self.model = sora_stack(config)
        self.classifier = SoraClassificationHead(config, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultipleChoiceModelOutput:
        num_choices = input_ids.shape[1] if input_ids is not None else inputs_embeds.shape[1]

        def flat(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.reshape(-1, *x.shape[2:])

        kwargs, return_hidden = _needs_all_layers(self.config, kwargs)
        attention_mask = flat(attention_mask)
        outputs = self.model(
            return_dict=True,
            input_ids=flat(input_ids),
            attention_mask=attention_mask,
            token_type_ids=flat(token_type_ids),
            inputs_embeds=flat(inputs_embeds),
            **kwargs,
        )
        logits = self.classifier(outputs.last_hidden_state, attention_mask, outputs.hidden_states)
        logits = logits.view(-1, num_choices)
        loss = F.cross_entropy(logits.float(), labels.to(logits.device)) if labels is not None else None
        return MultipleChoiceModelOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states if return_hidden else None,
            attentions=outputs.attentions,
        )


@dataclass
class SoraTokenClassifierOutput(TokenClassifierOutput):
    """`TokenClassifierOutput`, plus with `config.use_crf` the CRF's best tags (`crf_tags`, -100 where no tag is
    decoded: padding and special tokens, or the positions without a label when labels are given)."""

    crf_tags: torch.LongTensor | None = None


class SoraForTokenClassification(SoraPreTrainedModel):
    """Per-token labels (NER, POS, word segmentation); with `config.use_crf` a CRF (`SoraCRF`) over the tags.

    The CRF's loss is taken over the positions with a label (not -100); without labels, `crf_tags` decodes every
    attended position except padding and the special tokens the config names.
    """

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = sora_stack(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.crf = SoraCRF(config) if getattr(config, "use_crf", False) else None
        self.post_init()

    def _tagged_positions(self, input_ids, attention_mask, shape) -> torch.Tensor:
        mask = torch.ones(shape, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        mask = mask.to(self.classifier.weight.device)
        if input_ids is not None:
            for name in ("pad_token_id", "cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id"):
                ids = getattr(self.config, name, None)
                for token_id in ids if isinstance(ids, list) else [ids]:
                    if token_id is not None:
                        mask = mask & (input_ids != token_id)
        return mask

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SoraTokenClassifierOutput:
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = crf_tags = None
        if self.crf is not None:
            labelled = labels != -100 if labels is not None else None
            if labels is not None:
                loss = self.crf.neg_log_likelihood(logits, labels, labelled)
            if not self.training:
                mask = (
                    labelled
                    if labelled is not None
                    else self._tagged_positions(input_ids, attention_mask, logits.shape[:2])
                )
                crf_tags = self.crf.decode(logits, mask)
        elif labels is not None:
            loss = self.loss_function(logits, labels, self.config)
        return SoraTokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            crf_tags=crf_tags,
        )


class SoraForQuestionAnswering(SoraPreTrainedModel):
    """Extractive QA: start and end logits over the tokens."""

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        self.model = sora_stack(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = logits.split(1, dim=-1)
        start_logits = start_logits.squeeze(-1).contiguous()
        end_logits = end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions, **kwargs)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


@dataclass
class SoraSentenceEmbeddingOutput(ModelOutput):
    """embeddings: one vector per sentence `(batch, hidden)`; level_weights: multi-level attention weights."""

    embeddings: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    level_weights: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class SoraForSentenceEmbedding(SoraPreTrainedModel):
    """Sentence embeddings (CLS, mean or multi-level pooling) for similarity search and clustering.

    One sentence per row, as a sentence-transformers encoder: the training loss of sentence pairs is not the model's
    (fine-tuning gives Trainer `sora_hf.tasks.similarity.pair_loss`, CoSENT over a batch that holds both sides).
    """

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        self.model = sora_stack(config)
        self.pooler = SoraPooler(config)
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also writes `modules.json` for sentence-transformers (`sentence_transformers_folder.py`)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_modules_json(save_directory)
        return result

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SoraSentenceEmbeddingOutput:
        kwargs, return_hidden = _needs_all_layers(self.config, kwargs)
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        embeddings, weights = self.pooler(outputs.last_hidden_state, attention_mask, outputs.hidden_states)
        return SoraSentenceEmbeddingOutput(
            embeddings=embeddings,
            last_hidden_state=outputs.last_hidden_state,
            level_weights=weights,
            hidden_states=outputs.hidden_states if return_hidden else None,
            attentions=outputs.attentions,
        )


__all__ = [
    "SoraPreTrainedModel",
    "SoraStack",
    "SoraModel",
    "SoraDecoderModel",
    "SoraForMaskedLM",
    "SoraForPreTraining",
    "SoraForCausalLM",
    "SoraSeq2SeqDecoder",
    "SoraSeq2SeqModel",
    "SoraForSeq2SeqLM",
    "SoraForSequenceClassification",
    "SoraForMultipleChoice",
    "SoraForTokenClassification",
    "SoraForQuestionAnswering",
    "SoraForSentenceEmbedding",
    "SoraModelOutput",
    "SoraForPreTrainingOutput",
    "SoraSentenceEmbeddingOutput",
]
