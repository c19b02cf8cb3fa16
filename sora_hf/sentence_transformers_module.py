"""Sora embedding checkpoints in sentence-transformers: the module that their `modules.json` names.

Without a `modules.json`, sentence-transformers wraps any folder in its own `Transformer` (the bare encoder, via
`AutoModel`) plus a mean `Pooling`: for a `SoraForSentenceEmbedding` folder that silently drops the trained pooler
(CLS or multi-level attention over the layers) and gives other vectors than the model. So
`SoraForSentenceEmbedding.save_pretrained` writes a one-module `modules.json` naming `SoraSentenceEmbeddingModule`,
which runs the saved head itself: `SentenceTransformer(folder).encode(texts)` is then `model(...).embeddings`.

    from sentence_transformers import SentenceTransformer
    encoder = SentenceTransformer("runs/similarity", trust_remote_code=True)
    encoder.encode(["今天天气很好", "天气不错"])

`trust_remote_code=True` is sentence-transformers' rule (since 6.0) for every module class outside its own package,
local folders included; without it, loading stops with an error that says so (it never falls back to mean pooling).
The class comes from the installed sora_hf, not from code in the folder. `encoder.save(path)` writes a folder that is
still a plain Sora checkpoint (it loads with `SoraForSentenceEmbedding.from_pretrained`), and modules added after
this one (e.g. `Normalize`) are kept in its `modules.json`.

This module needs sentence-transformers (`pip install "sora-hf[sentence-transformers]"`); nothing else in sora_hf
imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoTokenizer

try:
    from sentence_transformers.base.modules import InputModule  # sentence-transformers >= 6
except ImportError:
    try:
        from sentence_transformers.models import InputModule  # sentence-transformers 5.x
    except ImportError as error:
        raise ImportError(
            "sora_hf.sentence_transformers_module needs sentence-transformers: "
            'pip install "sora-hf[sentence-transformers]"'
        ) from error

from .modeling_sora import SoraForSentenceEmbedding

__all__ = ["SoraSentenceEmbeddingModule", "MODULE_TYPE"]

MODULE_TYPE = f"{__name__}.SoraSentenceEmbeddingModule"
# keyword arguments that sentence-transformers passes to `load` and `from_pretrained` understands
_HUB_KEYS = ("subfolder", "token", "revision", "local_files_only")


class SoraSentenceEmbeddingModule(InputModule):
    """Tokenizer + `SoraForSentenceEmbedding` as one sentence-transformers input module.

    Outputs `sentence_embedding` (the head's `embeddings`) and `token_embeddings` (the encoder's last hidden state),
    so later modules (`Normalize`, `Dense`, ...) work as on any sentence-transformers model.
    """

    config_file_name = "sentence_bert_config.json"
    config_keys = ["max_seq_length"]
    save_in_root = True

    def __init__(
        self,
        model_name_or_path: str,
        max_seq_length: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        model_kwargs = {k: v for k, v in (model_kwargs or {}).items() if k != "trust_remote_code"}
        processor_kwargs = {k: v for k, v in (processor_kwargs or {}).items() if k != "trust_remote_code"}
        # The installed class, not the folder's copy of modeling_sora.py: sora_hf is here, the code is trusted.
        self.model = SoraForSentenceEmbedding.from_pretrained(model_name_or_path, **model_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **processor_kwargs)
        if max_seq_length is None:
            limits = [self.model.config.max_position_embeddings]
            if isinstance(self.tokenizer.model_max_length, int):
                limits.append(self.tokenizer.model_max_length)
            max_seq_length = min(limits)
        self.max_seq_length = int(max_seq_length)

    @property
    def processor(self) -> Any:
        """sentence-transformers 6 reads the input module's `processor`; for text, the tokenizer."""
        return self.tokenizer

    def _tokenize(self, inputs: Sequence[Any], prompt: str | None = None) -> dict[str, torch.Tensor]:
        inputs = list(inputs)
        if inputs and isinstance(inputs[0], (tuple, list)):  # sentence pairs
            first = [(prompt or "") + pair[0] for pair in inputs]
            second = [pair[1] for pair in inputs]
            return dict(self._call_tokenizer(first, second))
        return dict(self._call_tokenizer([(prompt or "") + text for text in inputs]))

    def _call_tokenizer(self, texts: list[str], pairs: list[str] | None = None) -> Any:
        return self.tokenizer(
            texts, pairs, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Tokenize a batch of texts (or text pairs) as the model was trained: padded, truncated to
        `max_seq_length` (sentence-transformers >= 6)."""
        return self._tokenize(inputs, prompt)

    def tokenize(self, texts: Sequence[Any], **kwargs: Any) -> dict[str, torch.Tensor]:
        """`preprocess` under its sentence-transformers 5 name."""
        return self._tokenize(texts)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        inputs = {
            name: features[name]
            for name in ("input_ids", "attention_mask", "token_type_ids")
            if features.get(name) is not None
        }
        output = self.model(**inputs)
        features["token_embeddings"] = output.last_hidden_state
        features["sentence_embedding"] = output.embeddings
        return features

    def get_embedding_dimension(self) -> int:
        return self.model.config.hidden_size

    def get_sentence_embedding_dimension(self) -> int:
        """`get_embedding_dimension` under its sentence-transformers 5 name."""
        return self.get_embedding_dimension()

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """A plain Sora checkpoint (weights, config with `auto_map`, modelling code, tokenizer) plus this module's
        `sentence_bert_config.json`."""
        self.model.save_pretrained(output_path)
        self.tokenizer.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        backend: str = "torch",
        **kwargs: Any,
    ) -> SoraSentenceEmbeddingModule:
        """Load from a folder or Hub repo, with the keyword arguments sentence-transformers passes."""
        if backend != "torch":
            raise ValueError(
                f"SoraSentenceEmbeddingModule runs on the torch backend only, not {backend!r}; "
                "for ONNX, export the model with `sora-hf export onnx`"
            )
        config = cls.load_config(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        values = {"subfolder": subfolder, "token": token, "revision": revision, "local_files_only": local_files_only}
        hub = {key: values[key] for key in _HUB_KEYS if values[key]}
        if cache_folder is not None:
            hub["cache_dir"] = cache_folder
        return cls(
            model_name_or_path,
            max_seq_length=config.get("max_seq_length"),
            model_kwargs={**hub, **(model_kwargs or {})},
            processor_kwargs={**hub, **(processor_kwargs or tokenizer_kwargs or {})},
        )

    def __repr__(self) -> str:
        config = {"max_seq_length": self.max_seq_length, "architecture": type(self.model).__name__}
        return f"SoraSentenceEmbeddingModule({config})"
