"""Sentence similarity in the Hugging Face inference API format, which transformers has no pipeline for.

Input `{"source_sentence": str, "sentences": [str, ...]}`, output one cosine similarity per sentence. Each sentence
is embedded on its own (a chunk of a `ChunkPipeline`), so `batch_size=` batches sentences, within and across inputs.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterator
from typing import Any

import torch
from transformers.pipelines.base import ChunkPipeline

from ._utils import (
    TextPipelineMixin,
    auto_class_for,
    default_max_length,
    is_blank,
    model_input_names,
    output_field,
)


class SoraSentenceSimilarityPipeline(TextPipelineMixin, ChunkPipeline):
    """Cosine similarity of a source sentence with each of a list of sentences.

    Example:

    ```python
    >>> import sora_hf  # registers the pipeline
    >>> from transformers import pipeline
    >>> sim = pipeline("sentence-similarity", model=model, tokenizer=tokenizer)
    >>> sim({"source_sentence": "今天天气很好", "sentences": ["今天天气不错", "我在学习"]})
    [0.93, 0.12]
    >>> sim(source_sentence="a cat", sentences=["a dog", "a car"])  # keyword form, same result format
    ```

    A list of such dicts returns a list of lists (for pairwise scores of two lists, pass one dict per pair).

    The embedding of a sentence is the model output's `embeddings` (batch, hidden) when the model returns one
    (e.g. `SoraForSentenceEmbedding`, which pools and may project as it was trained to), else the mean of
    `last_hidden_state` over the attention mask (any `AutoModel` encoder). A folder loads with the class it was saved
    from, so `model=<folder>` gives what `model=<the model object>` gives (a folder saved from a text-encoding head
    loads that head, pooler included). Inputs longer than the model's limit are truncated (`max_length=` to choose
    the limit).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._require_tokenizer()
        self._input_names = model_input_names(self.model, self.tokenizer)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`Pipeline.save_pretrained`, with `custom_pipelines` naming the transformers Auto class that loads this
        model back (`AutoModelForTextEncoding` for an embedding head): sora_hf's own loader is not there for remote
        code, and `AutoModel` would drop the head."""
        registered = getattr(self, "_registered_impl", None)
        if registered:
            self._registered_impl = {
                task: {**info, "pt": (auto_class_for(self.model),)} if info.get("impl") is type(self) else info
                for task, info in registered.items()
            }
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__dict__.pop("_registered_impl", None)

    def _sanitize_parameters(self, max_length: int | None = None, **kwargs: Any) -> tuple[dict, dict, dict]:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        return ({"max_length": max_length} if max_length is not None else {}), {}, {}

    @staticmethod
    def _check_input(item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or "source_sentence" not in item or "sentences" not in item:
            raise ValueError(f"Expected {{'source_sentence': str, 'sentences': [str, ...]}}, got {item!r}")
        source, sentences = item["source_sentence"], item["sentences"]
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(source, str) or not all(isinstance(s, str) for s in sentences):
            raise ValueError("`source_sentence` must be a string and `sentences` a list of strings")
        blank = [
            name
            for name, text in [("source_sentence", source)] + [(f"sentences[{i}]", s) for i, s in enumerate(sentences)]
            if is_blank(text)
        ]
        if blank:  # an embedding of the special tokens alone: a similarity about nothing
            raise ValueError(f"{blank[0]} has no visible character (empty, whitespace or zero-width characters only)")
        return {"source_sentence": source, "sentences": list(sentences)}

    def __call__(self, inputs: Any = None, **kwargs: Any) -> Any:
        """Similarities for one input dict (list of floats), a list of dicts (list of lists), or the keywords
        `source_sentence=`/`sentences=`."""
        source = kwargs.pop("source_sentence", None)
        sentences = kwargs.pop("sentences", None)
        if inputs is None:
            inputs = {"source_sentence": source, "sentences": sentences}
        elif source is not None or sentences is not None:
            raise ValueError("Pass either an input dict or source_sentence=/sentences=, not both.")
        if isinstance(inputs, dict):
            inputs = self._check_input(inputs)
        elif isinstance(inputs, (list, tuple)):
            inputs = [self._check_input(item) for item in inputs]
        elif isinstance(inputs, types.GeneratorType):
            inputs = (self._check_input(item) for item in inputs)
        return super().__call__(inputs, **kwargs)

    def preprocess(self, item: dict[str, Any], max_length: int | None = None) -> Iterator[dict[str, Any]]:
        """One chunk per sentence, the source sentence first."""
        item = self._check_input(item)
        if max_length is None:
            max_length = default_max_length(self.model, self.tokenizer, 512)
        texts = [item["source_sentence"], *item["sentences"]]
        for i, text in enumerate(texts):
            encoded = self.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            yield {
                **{name: encoded[name] for name in self._input_names if name in encoded},
                "is_last": i == len(texts) - 1,
            }

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        model_inputs = {name: inputs[name] for name in self._input_names if name in inputs}
        output = self.model(**model_inputs)
        embedding = output_field(output, "embeddings")
        if embedding is None:
            hidden = output_field(output, "last_hidden_state", 0)
            if hidden is None:
                raise ValueError(f"{type(self.model).__name__} returns neither `embeddings` nor `last_hidden_state`")
            mask = model_inputs.get("attention_mask")
            if mask is None:
                mask = torch.ones(hidden.shape[:2], device=hidden.device)
            mask = mask.to(hidden.dtype).unsqueeze(-1)
            embedding = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        # A tensor first: the chunk iterator reads the batch size from the first value.
        return {"embedding": embedding, "is_last": inputs["is_last"]}

    def postprocess(self, model_outputs: list[dict[str, Any]]) -> list[float]:
        embeddings = torch.cat([output["embedding"].float() for output in model_outputs], dim=0)
        source, others = embeddings[:1], embeddings[1:]
        if others.shape[0] == 0:
            return []
        return torch.nn.functional.cosine_similarity(source, others, dim=-1).tolist()
