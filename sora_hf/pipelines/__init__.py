"""Pipelines that transformers 5.x no longer ships, plus sentence similarity, for Sora and any other model.

`register_pipelines()` (called by `import sora_hf`) makes `transformers.pipeline("question-answering" |
"summarization" | "translation" | "text2text-generation" | "sentence-similarity", model=..., tokenizer=...)` return
the classes below. The classes also work without registration: `SoraQuestionAnsweringPipeline(model=m,
tokenizer=t)`.

This module imports nothing from sora_hf's model code, so the model package can call it while it is being imported.

Why registration alone is not enough on transformers 5.22+: `pipeline()` passes the task through
`_resolve_deprecated_task` before it looks at `PIPELINE_REGISTRY`, and that function raises `KeyError` for every
name in `transformers.pipelines.REMOVED_TASKS`, registered or not. `register_pipelines()` therefore also removes the
names it registers from that dict (a module-level dict read at call time; nothing else in transformers uses it).
On versions without `REMOVED_TASKS` (5.17-5.21) there is nothing to remove. `translation_xx_to_yy` task names stay
refused: transformers maps them to "translation" only to reject them; pass `src_lang=`/`tgt_lang=` instead.

Embedding tasks load a folder with the class it was saved from (see `_loading.py`): sentence-similarity loads the
text-encoding head of any family whose folder was saved from one, and transformers' own feature-extraction task gets
the same treatment for Sora folders only (its `AutoModel` is swapped for a subclass that differs from it only for
`SoraForSentenceEmbedding` folders), so `pipeline(task, model=<folder>)` equals `pipeline(task, model=<object>)`.
token-classification gets `SoraTokenClassificationPipeline`, which groups BMES and BIOES spans with
`aggregation_strategy` and is transformers' class for BIO labels.
"""

from __future__ import annotations

from ..heads import HEADS
from ._loading import AutoModelOrTextEncoder, SoraAutoModelForFeatureExtraction
from .multitask import SoraMultiTaskPipeline
from .question_answering import SoraQuestionAnsweringPipeline
from .sentence_similarity import SoraSentenceSimilarityPipeline
from .text2text import SoraSummarizationPipeline, SoraText2TextGenerationPipeline, SoraTranslationPipeline
from .token_classification import SoraTokenClassificationPipeline

__all__ = [
    "AutoModelOrTextEncoder",
    "SoraAutoModelForFeatureExtraction",
    "SoraMultiTaskPipeline",
    "SoraQuestionAnsweringPipeline",
    "SoraSentenceSimilarityPipeline",
    "SoraSummarizationPipeline",
    "SoraText2TextGenerationPipeline",
    "SoraTokenClassificationPipeline",
    "SoraTranslationPipeline",
    "register_pipelines",
]

_PIPELINE_CLASSES = {
    cls.__name__: cls
    for cls in (
        SoraQuestionAnsweringPipeline,
        SoraSummarizationPipeline,
        SoraTranslationPipeline,
        SoraText2TextGenerationPipeline,
        SoraSentenceSimilarityPipeline,
    )
}
# a local registration serves any family: the embedding tasks load a folder with the head it was saved from
_LOCAL_AUTO_CLASSES = {"AutoModelForTextEncoding": AutoModelOrTextEncoder}


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

    tasks = [
        (
            p.task,
            _PIPELINE_CLASSES[p.class_name],
            _LOCAL_AUTO_CLASSES.get(p.auto_class) or getattr(transformers, p.auto_class),
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
    entry = registry.supported_tasks.get("token-classification")
    if entry is not None:
        entry["impl"] = SoraTokenClassificationPipeline


def _load_sora_embedding_folders_with_their_head(registry) -> None:
    """feature-extraction: `AutoModel` -> `SoraAutoModelForFeatureExtraction` in the task's model classes.

    The entry is edited in place, not re-registered: registering would make transformers' built-in
    `FeatureExtractionPipeline` a "custom" pipeline whose `save_pretrained` writes `custom_pipelines`.
    """
    from transformers import AutoModel

    entry = registry.supported_tasks.get("feature-extraction")
    if entry is None:
        return
    classes = tuple(entry.get("pt", ()))
    entry["pt"] = tuple(SoraAutoModelForFeatureExtraction if c is AutoModel else c for c in classes)


def _register_multitask(registry) -> None:
    """`pipeline("multi-task", model=...)`: every head of a `SoraForMultiTask` for one text."""
    from ..modeling_sora_multitask import AutoModelForMultiTask  # imported late: the package loads no model code

    current = registry.supported_tasks.get("multi-task")
    if current is None or current.get("impl") is not SoraMultiTaskPipeline:
        registry.register_pipeline(
            "multi-task", pipeline_class=SoraMultiTaskPipeline, pt_model=AutoModelForMultiTask, type="text"
        )
