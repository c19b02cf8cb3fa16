"""Registers Sora with the Auto factories, the Hub custom-code machinery, peft and the pipelines.

Importing `sora_hf` runs `register()` once, so that `AutoModelForX.from_pretrained(<sora checkpoint>)`,
`LoraConfig()` without `target_modules` and `pipeline("question-answering", ...)` work as they do for BERT or Llama.
"""

from collections import OrderedDict

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTextEncoding,
    AutoModelForTokenClassification,
)
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping

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
)


class AutoModelForMultiTask(_BaseAutoModelClass):
    """The Auto class of multi-task models (one shared encoder, one head per task), which transformers lacks.

    Works like `AutoModelForSequenceClassification`: `AutoModelForMultiTask.from_pretrained(path)` or
    `.from_config(config)`, and `AutoModelForMultiTask.register(MyConfig, MyMultiTaskModel)` for other families.
    A saved `SoraForMultiTask` names this class in its `auto_map`; without sora_hf, load one with
    `get_class_from_dynamic_module("modeling_sora.SoraForMultiTask", path).from_pretrained(path)`.
    """

    _model_mapping = _LazyAutoMapping(OrderedDict(), OrderedDict())


AUTO_CLASSES = {
    AutoModel: SoraModel,
    AutoModelForMaskedLM: SoraForMaskedLM,
    AutoModelForPreTraining: SoraForPreTraining,
    AutoModelForCausalLM: SoraForCausalLM,
    AutoModelForSeq2SeqLM: SoraForSeq2SeqLM,
    AutoModelForSequenceClassification: SoraForSequenceClassification,
    AutoModelForTokenClassification: SoraForTokenClassification,
    AutoModelForQuestionAnswering: SoraForQuestionAnswering,
    AutoModelForMultipleChoice: SoraForMultipleChoice,
    AutoModelForTextEncoding: SoraForSentenceEmbedding,
}

# LoRA on every projection of attention and MLP: what works best for small encoders, and what "all-linear" would
# pick minus the task heads (those are trained whole through `modules_to_save`).
LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

_registered = False


def register() -> None:
    """Idempotent: safe to call from several imports."""
    global _registered
    if _registered:
        return
    AutoConfig.register(SoraConfig.model_type, SoraConfig, exist_ok=True)
    SoraConfig.register_for_auto_class()
    for auto_class, model_class in AUTO_CLASSES.items():
        auto_class.register(SoraConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    AutoModelForMultiTask.register(SoraConfig, SoraForMultiTask, exist_ok=True)
    _register_peft()
    _register_pipelines()
    _registered = True


def _register_peft() -> None:
    try:
        from peft.utils import constants
    except ImportError:  # peft is a dependency, but the model itself does not need it
        return
    constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.setdefault(
        SoraConfig.model_type, list(LORA_TARGET_MODULES)
    )


def _register_pipelines() -> None:
    from .pipelines import register_pipelines

    register_pipelines()
