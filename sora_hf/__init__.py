"""Sora-HF: the Sora Transformer family for Chinese and English, native to the Hugging Face stack.

`import sora_hf` registers the Sora classes with transformers' Auto factories, peft's LoRA defaults and the
pipelines that transformers 5.23 removed (question answering, summarization, translation, text2text) plus
sentence similarity.
"""

from .configuration_sora import SoraConfig
from .modeling_sora import (
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForMultipleChoice,
    SoraForMultiTask,
    SoraForPreTraining,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
    SoraPreTrainedModel,
)
from .registration import AutoModelForMultiTask, register

__version__ = "0.1.0"

register()

__all__ = [
    "SoraConfig",
    "SoraPreTrainedModel",
    "SoraModel",
    "SoraForMaskedLM",
    "SoraForPreTraining",
    "SoraForCausalLM",
    "SoraForSeq2SeqLM",
    "SoraForSequenceClassification",
    "SoraForTokenClassification",
    "SoraForQuestionAnswering",
    "SoraForMultipleChoice",
    "SoraForSentenceEmbedding",
    "SoraForMultiTask",
    "AutoModelForMultiTask",
    "register",
]
