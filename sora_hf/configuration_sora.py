"""Sora model configuration.

One `SoraConfig` describes the three shapes of the family: a bidirectional encoder (`is_decoder=False`, the
default: masked LM, classification, QA...), a causal decoder (`is_decoder=True`: causal LM, set automatically by
`SoraForCausalLM`) and an encoder-decoder (`is_encoder_decoder=True`: set by `SoraForSeq2SeqLM`, with
`num_decoder_layers` decoder blocks that cross-attend to the encoder).

This file imports only transformers so that it travels to the Hub as custom code beside `modeling_sora.py`.
"""

import copy
import functools
from typing import Literal

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassFieldValidationError
from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters
from transformers.utils import logging

logger = logging.get_logger(__name__)

# the values of the `Literal` fields below, spelled out as constants for the code that reads them (recipes.sources
# reads POOLING_MODES from this file's text); test_config checks that each matches its field's `Literal`
POOLING_MODES = ("cls", "mean", "last")
TASK_LOSS_WEIGHTINGS = ("fixed", "uncertainty")
MULTITASK_TYPES = ("classification", "token_classification", "question_answering")
TASK_SPEC_KEYS = ("type", "labels", "problem_type", "tag_scheme", "loss_weight")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
LAYER_TYPES = ("full_attention", "sliding_attention")
CHOICE_FIELDS = {
    "classifier_pooling": POOLING_MODES,
    "task_loss_weighting": TASK_LOSS_WEIGHTINGS,
    "position_embedding_type": ("rotary", "absolute"),
    "norm_type": ("rms_norm", "layer_norm"),
    "norm_position": ("pre", "post"),
    "mlp_type": ("gated", "plain"),
}


def _choice_errors_are_value_errors(cls):
    """`@strict` refuses a value outside a field's `Literal` with its own `StrictDataclassFieldValidationError`;
    the constructor says it as a `ValueError` naming the field, the value and the choices, like every other
    refused value of `SoraConfig` (assigning to the field later keeps strict's error)."""
    strict_init = cls.__init__

    @functools.wraps(strict_init)
    def __init__(self, *args, **kwargs):
        try:
            strict_init(self, *args, **kwargs)
        except StrictDataclassFieldValidationError as error:
            for name, choices in CHOICE_FIELDS.items():
                if name in kwargs and kwargs[name] not in choices:
                    raise ValueError(f"SoraConfig.{name}={kwargs[name]!r} must be one of {choices}.") from error
            raise

    cls.__init__ = __init__
    return cls


@_choice_errors_are_value_errors
@strict
class SoraConfig(PreTrainedConfig):
    r"""
    Configuration of a Sora model. Defaults describe a small Chinese/English encoder (about 30M parameters).

    Args:
        vocab_size (`int`): size of the token vocabulary (the tokenizer's `len()` must not exceed it).
        hidden_size (`int`): width of the residual stream.
        intermediate_size (`int`): width of the gated MLP (SwiGLU-style: `act(gate(x)) * up(x)`).
        num_hidden_layers (`int`): number of encoder (or decoder-only) blocks.
        num_decoder_layers (`int`, *optional*): decoder blocks of an encoder-decoder; defaults to `num_hidden_layers`.
        num_attention_heads (`int`): query heads.
        num_key_value_heads (`int`, *optional*): key/value heads; fewer than `num_attention_heads` gives grouped-query
            attention. Defaults to `num_attention_heads`.
        head_dim (`int`, *optional*): defaults to `hidden_size // num_attention_heads`.
        hidden_act (`str`): activation of the gated MLP, any key of `transformers.activations.ACT2FN`.
        max_position_embeddings (`int`): longest sequence the model is meant for (rotary positions).
        type_vocab_size (`int`): number of segment (token type) ids; 0 disables segment embeddings.
        rms_norm_eps (`float`): epsilon of the RMSNorm layers (pre-norm blocks and a final norm).
        hidden_dropout (`float`): dropout on embeddings and on each block's residual branches.
        attention_dropout (`float`): dropout on attention probabilities.
        classifier_dropout (`float`, *optional*): dropout before task heads; defaults to `hidden_dropout`.
        use_crf (`bool`): token classification: a linear-chain CRF over the tags (loss: its negative log-likelihood;
            decoding: Viterbi, constrained to the transitions valid in the BIO, BIOES or BMES scheme of `id2label`).
        classifier_pooling (`"cls"`, `"mean"` or `"last"`): how a layer's token states become one vector for pooled
            heads: the first token, the mean of the real tokens, or the last real token (a decoder's `"cls"`, since
            under causal attention only the last token has seen the whole sequence).
        multi_level_attention (`bool`): pooled heads (sequence classification, multiple choice, sentence embeddings)
            attend over the pooled vectors of *all* layers with a learned query instead of using the last layer only.
            Off by default: measured against last-layer pooling on review sentiment it did not win on validation
            accuracy (0.821 vs 0.823, `benchmarks/pooling.py`) and trains 15-20% slower.
        attention_bias (`bool`): biases on the query, key, value and output projections (Llama's `attention_bias`).
        attention_output_bias (`bool`, *optional*): bias on the output projection alone; defaults to
            `attention_bias`. Qwen2 has biases on query, key and value but not on the output (`attention_bias=True,
            attention_output_bias=False`).
        mlp_bias (`bool`): biases on the gated MLP's three projections.
        qk_norm (`bool`): an RMSNorm over each head's query and key before the rotary positions (Qwen3, OLMo-2 style:
            it keeps attention logits bounded at large learning rates).
        sliding_window (`int`, *optional*): decoders: layers of type `"sliding_attention"` attend only to the last
            `sliding_window` positions (Mistral); every layer is one when `layer_types` is not given.
        layer_types (`list[str]`, *optional*): per layer, `"full_attention"` or `"sliding_attention"` (Qwen2/Qwen3
            with `use_sliding_window`); defaults to every layer sliding when `sliding_window` is set, else full.
        position_embedding_type (`"rotary"` or `"absolute"`): rotary positions in every attention (the default), or a
            learned position embedding added to the token embeddings (BERT, RoBERTa).
        position_offset (`int`): absolute positions: the index of the first position, counted over the real tokens
            of each row (RoBERTa: `pad_token_id + 1`); 0 counts from the first column (BERT).
        norm_type (`"rms_norm"` or `"layer_norm"`): RMSNorm, or LayerNorm with a bias (BERT); `rms_norm_eps` is
            the epsilon of either.
        norm_position (`"pre"` or `"post"`): pre-norm blocks and a final norm (the default), or BERT's post-norm
            blocks (the norm after each residual sum) and no final norm.
        embedding_norm (`bool`): a norm on the summed embeddings, before the first block (BERT).
        mlp_type (`"gated"` or `"plain"`): the gated MLP `down(act(gate(x)) * up(x))`, or BERT's `down(act(up(x)))`.
        is_decoder (`bool`): causal self-attention (decoder-only model).
        tie_word_embeddings (`bool`): output projection of LM heads shares the input embedding matrix.
        generator_hidden_size, generator_intermediate_size, generator_num_hidden_layers,
        generator_num_attention_heads: size of the ELECTRA-style generator of `SoraForPreTraining`; default to a
            quarter of the width (at least one head of 32 dims) and the same depth.
        rtd_loss_weight (`float`): weight of the replaced-token-detection loss against the generator's MLM loss
            (ELECTRA uses 50).
        sparse_prediction (`bool`): when training the masked LM with labels, run the MLM head and the vocabulary
            projection only at the labelled (masked) positions; `logits` is then `(num_masked, vocab_size)`. The
            vocabulary projection dominates small models' cost, so pre-training runs several times faster.
        tasks (`dict`, *optional*): the heads of `SoraForMultiTask`, task name -> `{"type": "classification" |
            "token_classification" | "question_answering", "labels": [...]}` (labels: class names or tags; none for
            QA), plus optional `"problem_type"` (classification: `single_label_classification` (default),
            `multi_label_classification`, `regression`), `"tag_scheme"` (`BIO` or `BMES`) and `"loss_weight"` (a
            positive float, default 1). Task names are Python identifiers: each names its head module.
        task_loss_weighting (`"fixed"` or `"uncertainty"`): how `SoraForMultiTask` weights each task's loss: the
            tasks' `loss_weight`s, or learned homoscedastic uncertainty (Kendall et al., 2018).
        padding_free (`bool`, *optional*): the encoder drops pad tokens before its layers and runs every sequence
            of the batch packed into one row, each attending only to itself; the outputs are padded back (zeros at the
            pads), so heads and users see the usual `(batch, seq, hidden)`. With flash attention its variable-length
            kernels make a padded batch cost only its real tokens; with sdpa or eager the projections, MLP and norms
            run on the real tokens and each layer's attention on the padded rows; with flex attention a block-sparse
            document mask. `None` (default): on with flash attention for any padded batch, with sdpa or eager for
            batches at least 1/8 padding (below that, moving the tokens costs more than it saves), off with flex
            attention; `True` forces it on any padded batch; `False` turns it off. Never in a traced graph
            (torch.compile, ONNX export).

    Example:

    ```python
    >>> import sora_hf
    >>> from sora_hf import SoraConfig, SoraForMaskedLM
    >>> config = SoraConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4)
    >>> model = SoraForMaskedLM(config)
    ```
    """

    model_type = "sora"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    base_model_tp_plan = {
        "layers.*.self_attn.q_proj": "colwise",
        "layers.*.self_attn.k_proj": "colwise",
        "layers.*.self_attn.v_proj": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.gate_proj": "colwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    # stage boundaries for pipeline parallelism (transformers, vLLM's Transformers backend), as Llama's
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 16000
    hidden_size: int = 512
    intermediate_size: int = 1408
    num_hidden_layers: int = 8
    num_decoder_layers: int | None = None
    num_attention_heads: int = 8
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    hidden_dropout: float | int = 0.0
    attention_dropout: float | int = 0.0
    classifier_dropout: float | int | None = None
    classifier_pooling: Literal["cls", "mean", "last"] = "cls"
    multi_level_attention: bool = False
    use_crf: bool = False
    attention_bias: bool = False
    attention_output_bias: bool | None = None
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    layer_types: list[str] | None = None
    position_embedding_type: Literal["rotary", "absolute"] = "rotary"
    position_offset: int = 0
    norm_type: Literal["rms_norm", "layer_norm"] = "rms_norm"
    norm_position: Literal["pre", "post"] = "pre"
    embedding_norm: bool = False
    mlp_type: Literal["gated", "plain"] = "gated"
    rope_parameters: RopeParameters | dict | None = None
    is_decoder: bool = False
    use_cache: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    cls_token_id: int | None = 2
    sep_token_id: int | None = 3
    mask_token_id: int | None = 4
    bos_token_id: int | None = 5
    eos_token_id: int | list[int] | None = 6
    decoder_start_token_id: int | None = 5
    generator_hidden_size: int | None = None
    generator_intermediate_size: int | None = None
    generator_num_hidden_layers: int | None = None
    generator_num_attention_heads: int | None = None
    rtd_loss_weight: float = 50.0
    sparse_prediction: bool = False
    tasks: dict | None = None
    task_loss_weighting: Literal["fixed", "uncertainty"] = "fixed"
    padding_free: bool | None = None

    def __post_init__(self, **kwargs):
        if self.layer_types is None or (
            len(set(self.layer_types)) == 1 and len(self.layer_types) != self.num_hidden_layers
        ):  # spelled out, as transformers' masks and caches read it; a uniform list follows the depth
            uniform = self.layer_types[0] if self.layer_types else None
            uniform = uniform or ("full_attention" if self.sliding_window is None else "sliding_attention")
            self.layer_types = [uniform] * self.num_hidden_layers
        self._check_fields()
        self._check_tasks()
        self._check_labels(kwargs.get("num_labels"))
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_hidden_layers
        if self.attention_output_bias is None:
            self.attention_output_bias = self.attention_bias
        if self.classifier_dropout is None:
            self.classifier_dropout = self.hidden_dropout
        if self.generator_hidden_size is None:
            self.generator_hidden_size = max(self.hidden_size // 4, 32)
        if self.generator_num_attention_heads is None:
            self.generator_num_attention_heads = max(self.generator_hidden_size // 64, 1)
        if self.generator_intermediate_size is None:
            self.generator_intermediate_size = max(self.intermediate_size // 4, 64)
        if self.generator_num_hidden_layers is None:
            self.generator_num_hidden_layers = self.num_hidden_layers
        super().__post_init__(**kwargs)

    def _check_fields(self) -> None:
        """Reject inconsistent sizes with a ValueError naming the field, before any tensor is built."""
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"SoraConfig.{name} must be a positive integer, got {getattr(self, name)}.")
        if self.position_offset < 0:
            raise ValueError(f"SoraConfig.position_offset must be >= 0, got {self.position_offset}.")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"SoraConfig.sliding_window must be a positive integer, got {self.sliding_window}.")
        if self.layer_types is not None:
            unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
            if unknown or len(self.layer_types) != self.num_hidden_layers:
                raise ValueError(
                    f"SoraConfig.layer_types must list one of {LAYER_TYPES} per layer ({self.num_hidden_layers}), "
                    f"got {self.layer_types}."
                )
            if "sliding_attention" in self.layer_types and self.sliding_window is None:
                raise ValueError("SoraConfig.layer_types has sliding_attention layers but sliding_window is not set.")
        if self.head_dim is None and self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"SoraConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}), or set head_dim explicitly."
            )
        if self.num_key_value_heads is not None and (
            self.num_key_value_heads <= 0 or self.num_attention_heads % self.num_key_value_heads != 0
        ):
            raise ValueError(
                f"SoraConfig.num_key_value_heads ({self.num_key_value_heads}) must divide num_attention_heads "
                f"({self.num_attention_heads}) for grouped-query attention."
            )
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"SoraConfig.hidden_act={self.hidden_act!r} is not a known activation; use one of "
                f"{sorted(ACT2FN)[:12]}..."
            )
        for name in ("hidden_dropout", "attention_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"SoraConfig.{name} must be in [0, 1), got {value}.")
        if self.type_vocab_size < 0:
            raise ValueError(f"SoraConfig.type_vocab_size must be >= 0, got {self.type_vocab_size}.")
        if self.num_decoder_layers is not None and self.num_decoder_layers <= 0:
            raise ValueError(f"SoraConfig.num_decoder_layers must be positive, got {self.num_decoder_layers}.")
        for name in (
            "pad_token_id",
            "cls_token_id",
            "sep_token_id",
            "mask_token_id",
            "bos_token_id",
            "decoder_start_token_id",
        ):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"SoraConfig.{name}={value} is outside the vocabulary (vocab_size={self.vocab_size})."
                )
        gen_hidden, gen_heads = self.generator_hidden_size, self.generator_num_attention_heads
        if gen_hidden is not None and gen_heads is not None and gen_hidden % gen_heads != 0:
            raise ValueError(
                f"SoraConfig.generator_hidden_size ({gen_hidden}) must be divisible by "
                f"generator_num_attention_heads ({gen_heads})."
            )

    def _check_tasks(self) -> None:
        """The heads of a multi-task model: a wrong type or label list would only fail deep inside training."""
        if self.tasks is None:
            return
        if not isinstance(self.tasks, dict) or not self.tasks:
            raise ValueError(f"SoraConfig.tasks must be a non-empty mapping task name -> spec, got {self.tasks!r}.")
        for name, spec in self.tasks.items():
            where = f"SoraConfig.tasks[{name!r}]"
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{where}: a task name must be a Python identifier (it names the head module).")
            if not isinstance(spec, dict):
                raise ValueError(f"{where} must be a mapping with 'type' and 'labels', got {spec!r}.")
            unknown = sorted(set(spec) - set(TASK_SPEC_KEYS))
            if unknown:
                raise ValueError(f"{where} has unknown keys {unknown}; allowed: {list(TASK_SPEC_KEYS)}.")
            task_type = spec.get("type")
            if task_type not in MULTITASK_TYPES:
                raise ValueError(f"{where}.type={task_type!r} must be one of {MULTITASK_TYPES}.")
            labels = spec.get("labels")
            if task_type == "question_answering":
                if labels:
                    raise ValueError(f"{where}: a question_answering head has no labels, got {labels!r}.")
            elif not isinstance(labels, list) or not labels or len(set(map(str, labels))) != len(labels):
                raise ValueError(f"{where}.labels must be a non-empty list of distinct names, got {labels!r}.")
            problem_type = spec.get("problem_type")
            if problem_type is not None and (task_type != "classification" or problem_type not in PROBLEM_TYPES):
                raise ValueError(
                    f"{where}.problem_type={problem_type!r}: only classification tasks take one, from {PROBLEM_TYPES}."
                )
            if spec.get("tag_scheme") not in (None, "BIO", "BMES"):
                raise ValueError(f"{where}.tag_scheme={spec['tag_scheme']!r} must be 'BIO' or 'BMES'.")
            weight = spec.get("loss_weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
                raise ValueError(f"{where}.loss_weight={weight!r} must be a positive number.")

    def _check_labels(self, num_labels: int | None) -> None:
        """transformers only warns when `num_labels` and `id2label` disagree; a head of the wrong size is worse."""
        if self.id2label is None:
            return
        generic = all(str(label) == f"LABEL_{int(i)}" for i, label in self.id2label.items())
        if num_labels is not None and num_labels != len(self.id2label) and generic:
            # placeholder names (a checkpoint trained without named labels): re-size like BERT does
            self.id2label = self.label2id = None
            return
        if num_labels is not None and num_labels != len(self.id2label):
            raise ValueError(
                f"SoraConfig got num_labels={num_labels} but id2label has {len(self.id2label)} labels "
                f"({list(self.id2label.values())[:10]}); give one of them, or make them agree."
            )
        if self.label2id is not None:
            id2label = {int(i): label for i, label in self.id2label.items()}
            if any(id2label.get(int(i)) != label for label, i in self.label2id.items()) or len(self.label2id) != len(
                id2label
            ):
                raise ValueError(
                    f"SoraConfig.label2id {dict(self.label2id)} is not the inverse of id2label {id2label}."
                )

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "SoraConfig":
        """A saved config with a new `num_labels` (`from_pretrained(ckpt, num_labels=5, ignore_mismatched_sizes=True)`,
        fine-tuning a fine-tuned model on other labels) gets a new head with placeholder labels, as BERT does; only a
        config built by hand with both disagreeing is refused, in `__init__`."""
        num_labels = kwargs.get("num_labels")
        id2label = config_dict.get("id2label")
        if (
            num_labels is not None
            and id2label is not None
            and len(id2label) != num_labels
            and "id2label" not in kwargs
        ):
            logger.warning(
                f"num_labels={num_labels} replaces the checkpoint's {len(id2label)} labels "
                f"({list(id2label.values())[:10]}): the classifier is newly initialised with LABEL_0..LABEL_{num_labels - 1}."
            )
            config_dict = {key: value for key, value in config_dict.items() if key not in ("id2label", "label2id")}
        return super().from_dict(config_dict, **kwargs)

    def get_text_config(self, decoder=None, encoder=None) -> "SoraConfig":
        """The decoder of an encoder-decoder has `num_decoder_layers` blocks: caches (dynamic and static) size
        themselves from this view."""
        config = super().get_text_config(decoder=decoder, encoder=encoder)
        if decoder and not encoder and self.is_encoder_decoder and self.num_decoder_layers != self.num_hidden_layers:
            config = copy.deepcopy(config)
            config.num_hidden_layers = self.num_decoder_layers
            config.layer_types = ["full_attention"] * self.num_decoder_layers
        return config

    def generator_config(self) -> "SoraConfig":
        """The config of the small ELECTRA generator: same vocabulary and positions, narrower blocks."""
        # a config edited after it was built (`config.vocab_size = 4`, as transformers' resize tests do) may hold
        # special ids past the vocabulary: the generator, an MLM head over given ids, reads none of them but padding
        stale_ids = {
            name: None
            for name in ("cls_token_id", "sep_token_id", "mask_token_id", "bos_token_id", "decoder_start_token_id")
            if isinstance(getattr(self, name), int) and not 0 <= getattr(self, name) < self.vocab_size
        }
        return SoraConfig(
            **{
                **self.to_dict(),
                **stale_ids,
                "hidden_size": self.generator_hidden_size,
                "intermediate_size": self.generator_intermediate_size,
                "num_hidden_layers": self.generator_num_hidden_layers,
                "num_attention_heads": self.generator_num_attention_heads,
                "num_key_value_heads": None,
                "head_dim": None,
                "is_decoder": False,
                "multi_level_attention": False,
                "sliding_window": None,
                "layer_types": None,
                "architectures": None,
            }
        )


__all__ = ["SoraConfig"]
