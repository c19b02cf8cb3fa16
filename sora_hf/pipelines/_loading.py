"""The model class a pipeline loads from a folder: the bare model, or the embedding head the folder was saved from.

`transformers.pipelines.base.load_model` tries the task's Auto classes first and `config.architectures` only after
them (and only for classes transformers itself exports). For feature-extraction and sentence-similarity the task class
is `AutoModel`, which always succeeds, so a folder saved from an embedding head such as `SoraForSentenceEmbedding`
loads as the bare encoder: its trained pooler is dropped with only an UNEXPECTED line in the load report, and the
folder gives other vectors than the model object it was saved from.

`AutoModelOrTextEncoder` reads the checkpoint's config first and loads with `AutoModelForTextEncoding` when
`config.architectures` names the family's text-encoding head (the class `AutoModelForTextEncoding` maps the config
to, or the class its `auto_map` names for it), else with `AutoModel`, exactly as before. For BERT-like families
the two Auto classes give the same class, so nothing changes for them; a folder of a bare encoder still loads bare
(no untrained pooler is made up for it).
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, PretrainedConfig

from ._utils import is_text_encoding_checkpoint

# `from_pretrained` keyword arguments that also apply to reading the config (device, dtype etc. do not)
CONFIG_KWARGS = (
    "revision",
    "token",
    "trust_remote_code",
    "local_files_only",
    "cache_dir",
    "force_download",
    "proxies",
    "subfolder",
    "code_revision",
    "_commit_hash",
    "_from_pipeline",
)


class AutoModelOrTextEncoder(AutoModel):
    """`AutoModel`, unless the checkpoint was saved from its family's text-encoding head: then that head.

    Used as the model class of pipelines whose output is an embedding, so that `pipeline(task, model=<folder>)` gives
    what `pipeline(task, model=<the model object>)` gives. `model_types` limits the switch to some families (None:
    all); every other checkpoint, and everything that is not a folder or Hub id, goes to `AutoModel` unchanged.
    """

    model_types: frozenset[str] | None = None

    @classmethod
    def choose(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> type:
        """The Auto class to load this checkpoint with."""
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            return AutoModel
        config = kwargs.get("config")
        if not isinstance(config, PretrainedConfig):
            config_kwargs = {key: kwargs[key] for key in CONFIG_KWARGS if key in kwargs}
            try:
                config = AutoConfig.from_pretrained(config or pretrained_model_name_or_path, **config_kwargs)
            except (OSError, ValueError):  # e.g. a PEFT adapter folder: AutoModel knows what to do with it
                return AutoModel
        if cls.model_types is not None and getattr(config, "model_type", None) not in cls.model_types:
            return AutoModel
        return AutoModelForTextEncoding if is_text_encoding_checkpoint(config) else AutoModel

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any) -> Any:
        auto_class = cls.choose(pretrained_model_name_or_path, **kwargs)
        return auto_class.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


class SoraAutoModelForFeatureExtraction(AutoModelOrTextEncoder):
    """transformers' feature-extraction task with this class: Sora embedding folders load their head (the pipeline
    then returns the head's embeddings, as it does for the model object); every other family loads as before."""

    model_types = frozenset({"sora"})
