"""The task types, one module each, and their registry: the one place that switches on a task type.

Each module holds everything that differs by task type (its Auto class, encoding, collator, prediction, metrics,
reports, pipeline tag, robustness columns, headline metric, whether it distils, whether `SoraForMultiTask` has a
head for it) in one `Task` instance; the runners, robustness evaluation, distillation and multi-task training look
the type up here::

    task = get_task(info.task_type)
    features = task.encode(recipe, info, dataset["test"], tokenizer)
    predictions = task.predict(model, features, task.collator(tokenizer, model), tokenizer, dataset["test"], 64, recipe)
    metrics = task.score(info, dataset["test"], predictions)

Adding a task type is one new module here plus its entry in `TASKS` (and its data schema in `sora_hf.data.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..validation.errors import RecipeError
from .base import Features, Task
from .causal_lm import TASK as CAUSAL_LM
from .classification import TASK as CLASSIFICATION
from .question_answering import TASK as QUESTION_ANSWERING
from .seq2seq import TASK as SEQ2SEQ
from .similarity import TASK as SIMILARITY
from .token_classification import TASK as TOKEN_CLASSIFICATION

TASKS: dict[str, Task] = {
    task.name: task
    for task in (CLASSIFICATION, TOKEN_CLASSIFICATION, QUESTION_ANSWERING, SEQ2SEQ, SIMILARITY, CAUSAL_LM)
}


def get_task(task_type: str) -> Task:
    """The task type's `Task`; a RecipeError (a ValueError) naming the valid types for any other name."""
    task = TASKS.get(task_type) if isinstance(task_type, str) else None
    if task is None:
        raise RecipeError(f"unknown task type {task_type!r}; valid task types: {', '.join(TASKS)}")
    return task


def task_types(where: Callable[[Task], bool] | None = None) -> tuple[str, ...]:
    """The names of the task types (those for which `where(task)` holds), in registry order."""
    return tuple(name for name, task in TASKS.items() if where is None or where(task))


__all__ = ["TASKS", "Features", "Task", "get_task", "task_types"]
