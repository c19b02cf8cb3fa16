"""Helpers shared by the Sora pipelines.

Kept in the same flat folder as the pipelines (relative imports only), so that `Pipeline.save_pretrained` can copy
them next to a saved pipeline as remote code.
"""

from __future__ import annotations

import inspect
import unicodedata
from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoModel, AutoModelForTextEncoding, PretrainedConfig

TEXT_ENCODING_AUTO_CLASS = "AutoModelForTextEncoding"


class TextPipelineMixin:
    """What `pipeline()` loads for a Sora text pipeline: the tokenizer, and no processor, image or video processor or
    feature extractor. Put it before `Pipeline` / `ChunkPipeline` in the bases."""

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _require_tokenizer(self, fast: bool = False, why: str = "") -> None:
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None or (fast and not getattr(tokenizer, "is_fast", False)):
            raise ValueError(f"{type(self).__name__} needs a {'fast ' if fast else ''}tokenizer{why}")


def is_blank(text: str) -> bool:
    """True for a text with no visible character: empty, whitespace, or only invisible format characters (Unicode
    category Cf: zero-width space U+200B, joiners U+200C/U+200D, byte order mark U+FEFF, word joiner U+2060, ...).
    A model would still answer such a text, from its special tokens alone: a prediction about nothing."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def model_input_names(model: torch.nn.Module, tokenizer: Any) -> tuple[str, ...]:
    """Names of the tokenizer outputs to feed the model.

    A model gets a tokenizer output only if its `forward` accepts it: `token_type_ids` from a BERT-style tokenizer
    would crash a model without segment embeddings, and a model whose forward only takes `**kwargs` may ignore it
    silently, so `token_type_ids` needs an explicit parameter. `attention_mask` is always requested, because padded
    batches are wrong without it.
    """
    names = list(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
    if "attention_mask" not in names:
        names.append("attention_mask")
    params = inspect.signature(model.forward).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return tuple(
        name for name in names if name in params or (takes_kwargs and name in ("input_ids", "attention_mask"))
    )


def forward_accepts(model: torch.nn.Module, name: str) -> bool:
    """Whether `model.forward` has an explicit parameter `name` (e.g. `use_cache`)."""
    return name in inspect.signature(model.forward).parameters


def output_field(output: Any, name: str, index: int | None = None) -> Any:
    """Read `name` from a model output (`ModelOutput`, dict or plain object), or position `index` of a tuple.

    Returns None when the field is absent, so callers can fall back to another field.
    """
    if isinstance(output, Mapping):
        value = output.get(name)
    else:
        value = getattr(output, name, None)
    if value is None and index is not None and isinstance(output, (tuple, list)) and len(output) > index:
        value = output[index]
    return value


def default_max_length(model: torch.nn.Module, tokenizer: Any, cap: int) -> int:
    """The longest input worth building: the tokenizer's limit, the model's position table, and `cap`.

    Saved fast tokenizers default `model_max_length` to 1e30, so the config's `max_position_embeddings` is the
    limit that actually holds for models with learned positions.
    """
    limits = [cap, int(min(getattr(tokenizer, "model_max_length", cap) or cap, cap))]
    max_positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(max_positions, int) and max_positions > 0:
        limits.append(max_positions)
    return min(limits)


def _class_names(model_class: Any) -> set[str]:
    classes = model_class if isinstance(model_class, (list, tuple)) else (model_class,)
    return {getattr(c, "__name__", str(c)) for c in classes}


def text_encoding_class_names(config: PretrainedConfig) -> set[str]:
    """Names of the class(es) `AutoModelForTextEncoding` loads for this config: registered, or from `auto_map`."""
    names: set[str] = set()
    reference = (getattr(config, "auto_map", None) or {}).get(TEXT_ENCODING_AUTO_CLASS)
    for ref in reference if isinstance(reference, (list, tuple)) else [reference]:
        if isinstance(ref, str):
            names.add(ref.rsplit(".", 1)[-1])
    try:
        names |= _class_names(AutoModelForTextEncoding._model_mapping[type(config)])
    except KeyError:
        pass
    return names


def is_text_encoding_checkpoint(config: PretrainedConfig) -> bool:
    """Whether the checkpoint was saved from its family's text-encoding head (`config.architectures` names it)."""
    architectures = getattr(config, "architectures", None) or []
    return bool(architectures) and bool(set(architectures) & text_encoding_class_names(config))


def auto_class_for(model: Any) -> type:
    """The transformers Auto class that loads `model`'s class back from a folder: `AutoModelForTextEncoding` for a
    text-encoding head, else `AutoModel` (what a saved pipeline's `custom_pipelines` should name)."""
    config = getattr(model, "config", None)
    if config is not None and type(model).__name__ in text_encoding_class_names(config):
        return AutoModelForTextEncoding
    return AutoModel
