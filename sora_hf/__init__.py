"""Sora-HF: the Sora Transformer family for Chinese and English, native to the Hugging Face stack.

`import sora_hf` registers the Sora classes with transformers' Auto factories, peft's LoRA defaults and the
pipelines that transformers 5.23 removed (question answering, summarization, translation, text2text) plus
sentence similarity. A process started as the command line (`sora-hf ...`, `python -m sora_hf.cli ...`) registers
only when a command runs a model, so that `--help` and a refused recipe answer without importing torch.
"""

import importlib
import sys
from itertools import pairwise
from pathlib import Path

__version__ = "0.1.0"


def _started_as_cli() -> bool:
    """`sora-hf ...` (the console script) or `python [-X ...] -m sora_hf.cli ...` (torchrun, accelerate launch)."""
    script = (getattr(sys, "argv", None) or [""])[0]
    return Path(script).stem == "sora-hf" or ("-m", "sora_hf.cli") in pairwise(getattr(sys, "orig_argv", []))


if not _started_as_cli():
    from .configuration_sora import SoraConfig
    from .modeling_sora import (
        SoraForCausalLM,
        SoraForMaskedLM,
        SoraForMultipleChoice,
        SoraForPreTraining,
        SoraForQuestionAnswering,
        SoraForSentenceEmbedding,
        SoraForSeq2SeqLM,
        SoraForSequenceClassification,
        SoraForTokenClassification,
        SoraModel,
        SoraPreTrainedModel,
    )
    from .modeling_sora_multitask import AutoModelForMultiTask, SoraForMultiTask
    from .registration import register

    register()

_MODULES = {
    "SoraConfig": "configuration_sora",
    "SoraForMultiTask": "modeling_sora_multitask",
    "AutoModelForMultiTask": "modeling_sora_multitask",
    "register": "registration",
}


def __getattr__(name: str):
    """The command line's process imports the classes on first use (PEP 562); `cli._library()` registers them."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULES.get(name, 'modeling_sora')}", __name__), name)
    globals()[name] = value
    return value


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
