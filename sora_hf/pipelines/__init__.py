"""Pipelines that transformers 5.x no longer ships, plus sentence similarity and multi-task, for Sora and any other
model. `sora_hf.auto.registration` registers them with `transformers.pipeline`; the classes also work without
registration: `SoraQuestionAnsweringPipeline(model=m, tokenizer=t)`.

Embedding tasks load a folder with the class it was saved from (see `_loading.py`): sentence-similarity loads the
text-encoding head of any family whose folder was saved from one, and transformers' own feature-extraction task gets
the same treatment for Sora folders only (its `AutoModel` is swapped for a subclass that differs from it only for
`SoraForSentenceEmbedding` folders), so `pipeline(task, model=<folder>)` equals `pipeline(task, model=<object>)`.
token-classification gets `SoraTokenClassificationPipeline`, which groups BMES and BIOES spans with
`aggregation_strategy` and is transformers' class for BIO labels.
"""

from __future__ import annotations

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
]
