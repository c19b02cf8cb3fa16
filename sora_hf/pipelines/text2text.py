"""Seq2seq generation pipelines (text2text-generation, summarization, translation) that transformers 5.x removed.

They wrap `model.generate()` of any encoder-decoder model (`AutoModelForSeq2SeqLM`). Unlike the old transformers
pipelines they add no generation defaults of their own (the old ones forced `num_beams=4, max_new_tokens=256`):
the model's `generation_config` applies, and every generation keyword given at construction or per call
(`max_new_tokens`, `num_beams`, `do_sample`, `num_return_sequences`, `generation_config`, ...) goes to `generate()`
unchanged, so the pipeline's text is exactly `tokenizer.decode(model.generate(**inputs, **kwargs))`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.pipelines.base import Pipeline

from ._utils import TextPipelineMixin, is_blank


class SoraText2TextGenerationPipeline(TextPipelineMixin, Pipeline):
    """Generate text from text with an encoder-decoder model; results under `generated_text`.

    Example:

    ```python
    >>> import sora_hf  # registers the pipeline
    >>> from transformers import pipeline
    >>> gen = pipeline("text2text-generation", model=model, tokenizer=tokenizer)
    >>> gen("question: what is 42? context: 42 is the answer", max_new_tokens=8)
    [{'generated_text': 'the answer'}]
    ```

    Input: a string (returns a list with one dict per returned sequence) or a list of strings (returns one dict per
    input when each input yields one sequence, else one list per input). Pipeline parameters: `truncation`
    (tokenizer truncation, default off), `prefix` (prepended to every input; default `model.config.prefix` if the
    config has one), `return_tensors` (token ids under `<name>_token_ids` instead of text),
    `clean_up_tokenization_spaces`. Everything else is a generation keyword.
    """

    # Output key prefix: "<return_name>_text" / "<return_name>_token_ids"
    return_name = "generated"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.model.can_generate():
            raise ValueError(f"{type(self).__name__} needs a model with generate(), got {type(self.model).__name__}")
        self._require_tokenizer()

    def _sanitize_parameters(
        self,
        return_tensors: bool | None = None,
        return_text: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        truncation: bool | str | None = None,
        prefix: str | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if truncation is not None:
            preprocess["truncation"] = truncation
        if prefix is not None:
            preprocess["prefix"] = prefix
        if return_tensors is not None:
            postprocess["return_tensors"] = return_tensors
        elif return_text is not None:
            postprocess["return_tensors"] = not return_text
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess, generate_kwargs, postprocess

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Generate for one text or a list of texts; keyword arguments as in the class docstring."""
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and all(isinstance(records, list) and len(records) == 1 for records in result):
            return [records[0] for records in result]
        return result

    def _tokenize(self, text: str, truncation: bool | str, prefix: str | None) -> dict[str, torch.Tensor]:
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__} takes strings, got {type(text).__name__}")
        if prefix is None:
            prefix = getattr(self.model.config, "prefix", None) or ""
        encoded = self.tokenizer(prefix + text, truncation=truncation, return_tensors="pt")
        # Encoder inputs only: `token_type_ids` is a BERT-tokenizer extra that generate() rejects.
        return {key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded}

    def preprocess(self, text: str, truncation: bool | str = False, prefix: str | None = None) -> dict[str, Any]:
        if isinstance(text, str) and is_blank(text):  # generation from the special tokens alone: text about nothing
            raise ValueError(
                f"{type(self).__name__} got a text with no visible character (empty, whitespace or zero-width "
                "characters only)"
            )
        return self._tokenize(text, truncation, prefix)

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, torch.Tensor]:
        model_inputs = dict(model_inputs)
        forced_bos = model_inputs.pop("forced_bos_token_id", None)  # from multilingual translation tokenizers
        if forced_bos is not None and "forced_bos_token_id" not in generate_kwargs:
            if isinstance(forced_bos, (list, tuple)):
                forced_bos = forced_bos[0]
            generate_kwargs["forced_bos_token_id"] = int(forced_bos)
        if (
            "pad_token_id" not in generate_kwargs
            and "generation_config" not in generate_kwargs
            and self.model.generation_config.pad_token_id is None
            and self.tokenizer.pad_token_id is not None
        ):
            generate_kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        n_inputs = model_inputs["input_ids"].shape[0]
        output = self.model.generate(**model_inputs, **generate_kwargs)
        if not isinstance(output, torch.Tensor):  # return_dict_in_generate=True
            output = output.sequences
        return {"output_ids": output.reshape(n_inputs, output.shape[0] // n_inputs, *output.shape[1:])}

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        return_tensors: bool = False,
        clean_up_tokenization_spaces: bool = False,
    ) -> list[dict[str, Any]]:
        records = []
        for output_ids in model_outputs["output_ids"][0]:
            if return_tensors:
                records.append({f"{self.return_name}_token_ids": output_ids})
            else:
                text = self.tokenizer.decode(
                    output_ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces
                )
                records.append({f"{self.return_name}_text": text})
        return records


class SoraSummarizationPipeline(SoraText2TextGenerationPipeline):
    """Summarize documents with a seq2seq model; results under `summary_text` (see the parent class)."""

    return_name = "summary"


class SoraTranslationPipeline(SoraText2TextGenerationPipeline):
    """Translate with a seq2seq model; results under `translation_text` (see the parent class).

    `src_lang`/`tgt_lang` reach multilingual tokenizers that define `_build_translation_inputs` (mBART, NLLB, M2M100:
    they set the source language and force the target language's first token); other models ignore them and are
    steered by their training format, e.g. `prefix="translate English to Chinese: "`. A pipeline built directly with
    `task="translation_en_to_zh"` reads the languages from the task name; `pipeline("translation_en_to_zh")` is not
    available on transformers 5.22+ (that form is refused by the factory before the registry is consulted).
    """

    return_name = "translation"

    def _sanitize_parameters(
        self, src_lang: str | None = None, tgt_lang: str | None = None, **kwargs: Any
    ) -> tuple[dict, dict, dict]:
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if src_lang is None and tgt_lang is None:
            parts = (getattr(self, "task", "") or "").split("_")
            if len(parts) == 4 and parts[0] == "translation" and parts[2] == "to":
                src_lang, tgt_lang = parts[1], parts[3]
        if src_lang is not None:
            preprocess["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess["tgt_lang"] = tgt_lang
        return preprocess, forward, postprocess

    def preprocess(
        self,
        text: str,
        truncation: bool | str = False,
        prefix: str | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
    ) -> dict[str, Any]:
        build = getattr(self.tokenizer, "_build_translation_inputs", None)
        if build is not None and (src_lang is not None or tgt_lang is not None):
            return dict(build(text, return_tensors="pt", truncation=truncation, src_lang=src_lang, tgt_lang=tgt_lang))
        return self._tokenize(text, truncation, prefix)
