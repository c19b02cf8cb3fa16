"""The one table of Sora's model classes (`HEADS`): what every other table about the heads is derived from.

Each row names one class and says, as strings, how the rest of the stack meets it: the Auto class that loads it
(registration, and the `auto_map` written for remote code), the peft task type and the modules trained whole with a
LoRA adapter (`training/lora/`), the Hub pipeline tag of its model card (`hub.py`), the pipeline task the server infers
for it (`serving/tasks.py`), and the pipelines pushed as remote code for the tasks transformers 5.x does not serve
itself (`hub.py`, `pipelines/__init__.py`), how `sora-hf export onnx` exports it (`deploy/onnx_export.py`), and what
vLLM serves it as (`serving/vllm_engine.py`). A new head is one row here.

This module imports neither torch, transformers nor the model code, so any part of sora_hf can read it. The model
files themselves (remote code on the Hub, which may import nothing from sora_hf) keep their own copy of the
`auto_map`, `modeling_sora.SORA_AUTO_MAP`; `tests/test_heads.py` checks that it agrees with `auto_map_entries()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["HEADS", "CustomPipeline", "Head", "auto_map_entries", "convert_heads", "head", "head_names"]


@dataclass(frozen=True)
class CustomPipeline:
    """A pipeline sora_hf ships for a task transformers 5.x has no pipeline of its own for.

    `module` is the file in `sora_hf/pipelines` (without `.py`), `class_name` the pipeline class in it, and
    `auto_class` the transformers Auto class that loads the head for it in remote code (`custom_pipelines`).
    """

    task: str
    module: str
    class_name: str
    auto_class: str


@dataclass(frozen=True)
class Head:
    """One Sora model class.

    name: the class name (`SoraForSequenceClassification`).
    auto_class: the Auto class registered for it; one of transformers' unless `code_module` says otherwise.
    code_module: the model file that defines it (the module named by its `auto_map` entry).
    peft_task_type: peft's `TaskType` for a LoRA adapter on it; None: no LoRA set-up (`lora_config_for` refuses).
    modules_to_save: head modules a LoRA adapter trains whole, besides those peft adds itself for the task type.
    hub_pipeline_tag: the `pipeline_tag` of its model card; None: the Hub has no tag for it.
    pipeline_task: the pipeline task a server infers from a checkpoint of it; None: refused (pass a task).
    custom_pipelines: the pipelines pushed with it as remote code.
    onnx_outputs: the outputs of its ONNX graph (`sora-hf export onnx`); empty: not exportable.
    onnx_graph: "encoder" (one forward) or "decoder_step" (one decoding step with the key/value cache).
    onnx_per_token: the ONNX outputs have a sequence axis (token classification, QA).
    vllm_task: what vLLM's Transformers backend serves it as (`sora-hf serve --engine vllm`); None: vLLM cannot.
    convert_head: its name for `sora-hf convert --head`; None: conversion does not build it.
    """

    name: str
    auto_class: str
    code_module: str = "modeling_sora"
    peft_task_type: str | None = None
    modules_to_save: tuple[str, ...] = ()
    hub_pipeline_tag: str | None = None
    pipeline_task: str | None = None
    custom_pipelines: tuple[CustomPipeline, ...] = ()
    onnx_outputs: tuple[str, ...] = ()
    onnx_graph: Literal["encoder", "decoder_step"] = "encoder"
    onnx_per_token: bool = False
    vllm_task: Literal["generate", "embed", "classify", "token_classify"] | None = None
    convert_head: str | None = None


HEADS: tuple[Head, ...] = (
    Head("SoraModel", "AutoModel", hub_pipeline_tag="feature-extraction", pipeline_task="feature-extraction"),
    Head(
        "SoraForMaskedLM",
        "AutoModelForMaskedLM",
        hub_pipeline_tag="fill-mask",
        pipeline_task="fill-mask",
        convert_head="masked-lm",
    ),
    # the ELECTRA-style pre-training model: its card says fill-mask, but no pipeline serves its discriminator
    Head("SoraForPreTraining", "AutoModelForPreTraining", hub_pipeline_tag="fill-mask"),
    Head(
        "SoraForCausalLM",
        "AutoModelForCausalLM",
        peft_task_type="CAUSAL_LM",
        hub_pipeline_tag="text-generation",
        pipeline_task="text-generation",
        onnx_outputs=("logits",),
        onnx_graph="decoder_step",
        vllm_task="generate",
        convert_head="causal-lm",
    ),
    Head(
        "SoraForSeq2SeqLM",
        "AutoModelForSeq2SeqLM",
        peft_task_type="SEQ_2_SEQ_LM",
        hub_pipeline_tag="text2text-generation",
        pipeline_task="text2text-generation",
        custom_pipelines=(
            CustomPipeline("summarization", "text2text", "SoraSummarizationPipeline", "AutoModelForSeq2SeqLM"),
            CustomPipeline("translation", "text2text", "SoraTranslationPipeline", "AutoModelForSeq2SeqLM"),
            CustomPipeline(
                "text2text-generation", "text2text", "SoraText2TextGenerationPipeline", "AutoModelForSeq2SeqLM"
            ),
        ),
    ),
    Head(
        "SoraForSequenceClassification",
        "AutoModelForSequenceClassification",
        peft_task_type="SEQ_CLS",
        hub_pipeline_tag="text-classification",
        pipeline_task="text-classification",
        onnx_outputs=("logits",),
        vllm_task="classify",
        convert_head="sequence-classification",
    ),
    Head(
        "SoraForTokenClassification",
        "AutoModelForTokenClassification",
        peft_task_type="TOKEN_CLS",
        hub_pipeline_tag="token-classification",
        pipeline_task="token-classification",
        onnx_outputs=("logits",),
        onnx_per_token=True,
        vllm_task="token_classify",
        convert_head="token-classification",
    ),
    Head(
        "SoraForQuestionAnswering",
        "AutoModelForQuestionAnswering",
        peft_task_type="QUESTION_ANS",
        hub_pipeline_tag="question-answering",
        pipeline_task="question-answering",
        onnx_outputs=("start_logits", "end_logits"),
        onnx_per_token=True,
        custom_pipelines=(
            CustomPipeline(
                "question-answering",
                "question_answering",
                "SoraQuestionAnsweringPipeline",
                "AutoModelForQuestionAnswering",
            ),
        ),
    ),
    # peft has no multiple-choice task type: SEQ_CLS, with the classifier named to be saved whole
    Head(
        "SoraForMultipleChoice",
        "AutoModelForMultipleChoice",
        peft_task_type="SEQ_CLS",
        modules_to_save=("classifier",),
    ),
    # AutoModelForTextEncoding maps to SoraForSentenceEmbedding (pooler included); peft does not add the pooler itself
    Head(
        "SoraForSentenceEmbedding",
        "AutoModelForTextEncoding",
        peft_task_type="FEATURE_EXTRACTION",
        modules_to_save=("pooler",),
        hub_pipeline_tag="sentence-similarity",
        pipeline_task="sentence-similarity",
        onnx_outputs=("embeddings",),
        vllm_task="embed",
        convert_head="sentence-embedding",
        custom_pipelines=(
            CustomPipeline(
                "sentence-similarity",
                "sentence_similarity",
                "SoraSentenceSimilarityPipeline",
                "AutoModelForTextEncoding",
            ),
        ),
    ),
    # sora_hf's own Auto class (transformers has none for multi-task models), in its own model file
    Head("SoraForMultiTask", "AutoModelForMultiTask", code_module="modeling_sora_multitask"),
)

_BY_NAME = {row.name: row for row in HEADS}


def head(name: str) -> Head | None:
    """The row of the class named `name`; None for a class that is not a Sora head."""
    return _BY_NAME.get(name)


def head_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def convert_heads() -> dict[str, str]:
    """`sora-hf convert --head` name -> the class it builds, in table order."""
    return {row.convert_head: row.name for row in HEADS if row.convert_head is not None}


def auto_map_entries(code_module: str = "modeling_sora") -> dict[str, str]:
    """The `auto_map` entries of the heads defined in `code_module` (`modeling_sora.SORA_AUTO_MAP` minus AutoConfig)."""
    return {row.auto_class: f"{row.code_module}.{row.name}" for row in HEADS if row.code_module == code_module}
