"""Registers Sora with the Auto factories, the Hub custom-code machinery, peft and the pipelines.

`import sora_hf` runs `register()` once transformers is imported (see `sora_hf/__init__.py`), so that `AutoModelForX.from_pretrained(<sora checkpoint>)`,
`LoraConfig()` without `target_modules` and `pipeline("question-answering", ...)` work as they do for BERT or Llama.
"""

import transformers

from .. import modeling_sora, modeling_sora_multitask
from ..configuration_sora import SoraConfig
from .heads import HEADS

_CODE_MODULES = {"modeling_sora": modeling_sora, "modeling_sora_multitask": modeling_sora_multitask}


def _auto_class(row):
    """transformers' Auto class of a head in `modeling_sora`; sora_hf's own (`AutoModelForMultiTask`) from the head's
    model file otherwise."""
    module = transformers if row.code_module == "modeling_sora" else _CODE_MODULES[row.code_module]
    return getattr(module, row.auto_class)


def _model_class(row):
    return getattr(_CODE_MODULES[row.code_module], row.name)


# transformers' Auto class -> the Sora class it loads (derived from `heads.HEADS`)
AUTO_CLASSES = {_auto_class(row): _model_class(row) for row in HEADS if row.code_module == "modeling_sora"}
# sora_hf's own Auto classes -> their Sora class (`AutoModelForMultiTask`)
SORA_AUTO_CLASSES = {_auto_class(row): _model_class(row) for row in HEADS if row.code_module != "modeling_sora"}

# LoRA on every projection of attention and MLP: what works best for small encoders, and what "all-linear" would
# pick minus the task heads (those are trained whole through `modules_to_save`).
LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Sora's blocks name their modules as Llama's do (plus the cross-attention of the encoder-decoder): a peft method
# whose defaults pick other modules than LoRA's for Llama (IA3: keys, values and the MLP output; LN tuning: norms...)
# gets the same pick for Sora when every name in it is one of these.
PEFT_MODULE_NAMES = {
    *LORA_TARGET_MODULES,
    "input_layernorm",
    "cross_attn_layernorm",
    "post_attention_layernorm",
    "norm",
}
# LN tuning also tunes the norm before the decoder's cross-attention, which Llama lacks
PEFT_EXTRA_MODULES = {"LNTUNING": ["cross_attn_layernorm"]}

_registered = False


def register() -> None:
    """Idempotent: safe to call from several imports."""
    global _registered
    if _registered:
        return
    transformers.AutoConfig.register(SoraConfig.model_type, SoraConfig, exist_ok=True)
    SoraConfig.register_for_auto_class()
    for auto_class, model_class in AUTO_CLASSES.items():
        auto_class.register(SoraConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    for auto_class, model_class in SORA_AUTO_CLASSES.items():  # its class names its auto_map entry itself
        auto_class.register(SoraConfig, model_class, exist_ok=True)
    _register_peft()
    register_pipelines()
    _registered = True


def _register_peft() -> None:
    """Sora's default modules in every table of peft's defaults, so that any peft method needs no `target_modules`.

    peft keeps one table per method (`TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING`, and IA3's
    `..._FEEDFORWARD_MODULES_MAPPING`); most are copies of LoRA's made when peft is imported, so a LoRA entry alone
    reaches no other method. Which tables exist depends on the peft release: each one found is filled in.
    """
    try:
        from peft.utils import constants
    except ImportError:  # peft is a dependency, but the model itself does not need it
        return
    lora_table = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    lora_llama = lora_table.get("llama")
    for name, table in vars(constants).items():
        method = _peft_table_method(name)
        if method is None or not isinstance(table, dict) or SoraConfig.model_type in table:
            continue
        llama = table.get("llama")
        if table is lora_table or llama == lora_llama or not _is_module_list(llama):
            # LoRA's table or one copied from it (or a pick Sora cannot follow): Sora's LoRA default
            modules = list(LORA_TARGET_MODULES)
        else:
            modules = [*llama, *PEFT_EXTRA_MODULES.get(method, [])]
        table[SoraConfig.model_type] = modules


def _peft_table_method(name: str) -> str | None:
    """`"IA3_FEEDFORWARD"` for `TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING`; None for other names."""
    prefix, suffixes = "TRANSFORMERS_MODELS_TO_", ("_TARGET_MODULES_MAPPING", "_MODULES_MAPPING")
    if not name.startswith(prefix):
        return None
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[len(prefix) : -len(suffix)]
    return None


def _is_module_list(modules) -> bool:
    return isinstance(modules, (list, tuple, set)) and bool(modules) and set(modules) <= PEFT_MODULE_NAMES


# Pipelines. Why registration alone is not enough on transformers 5.22+: `pipeline()` passes the task through
# `_resolve_deprecated_task` before it looks at `PIPELINE_REGISTRY`, and that function raises `KeyError` for every
# name in `transformers.pipelines.REMOVED_TASKS`, registered or not. `register_pipelines()` therefore also removes the
# names it registers from that dict (a module-level dict read at call time; nothing else in transformers uses it).
# On versions without `REMOVED_TASKS` (5.17-5.21) there is nothing to remove. `translation_xx_to_yy` task names stay
# refused: transformers maps them to "translation" only to reject them; pass `src_lang=`/`tgt_lang=` instead.


def custom_pipelines() -> list:
    """The pipelines sora_hf ships (`heads.HEADS`), one per task: the tasks transformers 5.x does not serve itself."""
    by_task = {}
    for row in HEADS:
        for pipeline in row.custom_pipelines:
            by_task.setdefault(pipeline.task, pipeline)
    return list(by_task.values())


def register_pipelines() -> None:
    """Register the Sora pipelines with transformers' pipeline registry. Idempotent.

    A task already registered with the same class is left alone (re-registering would log an "Overwriting"
    warning on every call); a built-in or foreign pipeline under one of these names is replaced.
    """
    import transformers
    from transformers import pipelines as hf_pipelines

    # imported here, not at the top: `sora_hf.pipelines` imports transformers, whose import registers Sora (this
    # module) while the pipelines are still half-imported
    from .. import pipelines

    # a local registration serves any family: the embedding tasks load a folder with the head it was saved from
    local_auto_classes = {"AutoModelForTextEncoding": pipelines.AutoModelOrTextEncoder}
    tasks = [
        (
            p.task,
            getattr(pipelines, p.class_name),
            local_auto_classes.get(p.auto_class) or getattr(transformers, p.auto_class),
        )
        for p in custom_pipelines()
    ]
    registry = hf_pipelines.PIPELINE_REGISTRY
    removed = getattr(hf_pipelines, "REMOVED_TASKS", None)
    for task, pipeline_class, auto_class in tasks:
        if isinstance(removed, dict):
            removed.pop(task, None)
        elif isinstance(removed, set):
            removed.discard(task)
        current = registry.supported_tasks.get(task)
        if current is not None and current.get("impl") is pipeline_class:
            continue
        registry.register_pipeline(task, pipeline_class=pipeline_class, pt_model=auto_class, type="text")
    _register_multitask(registry)
    _load_sora_embedding_folders_with_their_head(registry)
    _group_bmes_and_bioes_spans(registry)


def _group_bmes_and_bioes_spans(registry) -> None:
    """token-classification: transformers' class -> `SoraTokenClassificationPipeline` (the same for BIO labels).

    Edited in place, as feature-extraction is, so that the built-in task does not become a "custom" pipeline."""
    from .. import pipelines

    entry = registry.supported_tasks.get("token-classification")
    if entry is not None:
        entry["impl"] = pipelines.SoraTokenClassificationPipeline


def _load_sora_embedding_folders_with_their_head(registry) -> None:
    """feature-extraction: `AutoModel` -> `SoraAutoModelForFeatureExtraction` in the task's model classes.

    The entry is edited in place, not re-registered: registering would make transformers' built-in
    `FeatureExtractionPipeline` a "custom" pipeline whose `save_pretrained` writes `custom_pipelines`.
    """
    from transformers import AutoModel

    from .. import pipelines

    entry = registry.supported_tasks.get("feature-extraction")
    if entry is None:
        return
    classes = tuple(entry.get("pt", ()))
    entry["pt"] = tuple(pipelines.SoraAutoModelForFeatureExtraction if c is AutoModel else c for c in classes)


def _register_multitask(registry) -> None:
    """`pipeline("multi-task", model=...)`: every head of a `SoraForMultiTask` for one text."""
    from .. import pipelines
    from ..modeling_sora_multitask import AutoModelForMultiTask

    current = registry.supported_tasks.get("multi-task")
    if current is None or current.get("impl") is not pipelines.SoraMultiTaskPipeline:
        registry.register_pipeline(
            "multi-task", pipeline_class=pipelines.SoraMultiTaskPipeline, pt_model=AutoModelForMultiTask, type="text"
        )
