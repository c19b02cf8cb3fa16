"""Every task of a multi-task model for one text: `pipeline("multi-task", model=...)`.

A `SoraForMultiTask` (one shared encoder, one head per task) answers all its tasks from one encoder pass. The output
is a dict task name -> that task's output, each shaped as transformers' own pipeline for the task type returns it:

- classification: `[{"label": ..., "score": ...}]` like `text-classification` (`top_k` labels, softmax; sigmoid
  scores of every label for multi-label tasks; the raw value for regression),
- token classification: entity groups `{"entity_group", "score", "word", "start", "end"}` like
  `token-classification` with `aggregation_strategy="simple"` (or one row per tagged token with `"none"`),
- question answering: `{"score", "start", "end", "answer"}` for `question=` over the text (QA tasks run only when a
  question is given).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.pipelines.base import Pipeline

from ._utils import TextPipelineMixin, default_max_length

AGGREGATIONS = ("simple", "none")
# the multi-task head types that read a question with the text as its context
QUESTION_TYPES = ("question_answering",)


class SoraMultiTaskPipeline(TextPipelineMixin, Pipeline):
    """All (or the selected) tasks of a multi-task model for each input text.

    Example:

    ```python
    >>> import sora_hf  # registers the pipeline
    >>> from transformers import pipeline
    >>> mt = pipeline("multi-task", model="runs/zh-sentiment-ner")
    >>> mt("江泽民在北京说质量不错")
    {'ner': [{'entity_group': 'PER', 'score': 0.97, 'word': '江泽民', 'start': 0, 'end': 3}, ...],
     'sentiment': [{'label': 'positive', 'score': 0.91}]}
    >>> mt("质量不错", tasks=["sentiment"])
    {'sentiment': [{'label': 'positive', 'score': 0.91}]}
    ```

    An unknown task name raises a ValueError that lists the model's tasks.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._require_tokenizer()
        tasks = getattr(self.model.config, "tasks", None)
        if not tasks or not hasattr(self.model, "run_heads"):
            raise ValueError(
                f"{type(self).__name__} needs a multi-task model (config.tasks and `run_heads`, e.g. "
                f"SoraForMultiTask), got {type(self.model).__name__}"
            )
        self.task_specs: dict[str, dict[str, Any]] = dict(tasks)

    def _check_tasks(self, tasks: list[str] | str | None) -> list[str] | None:
        if tasks is None:
            return None
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        for task in tasks:
            if task not in self.task_specs:
                raise ValueError(f"unknown task {task!r}; this model's tasks are {sorted(self.task_specs)}")
        return tasks

    def _sanitize_parameters(
        self,
        tasks: list[str] | str | None = None,
        question: str | None = None,
        aggregation_strategy: str | None = None,
        top_k: int | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        preprocess: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if tasks is not None:
            preprocess["tasks"] = self._check_tasks(tasks)
        if question is not None:
            preprocess["question"] = question
        if max_length is not None:
            preprocess["max_length"] = max_length
        if aggregation_strategy is not None:
            if aggregation_strategy not in AGGREGATIONS:
                raise ValueError(f"aggregation_strategy={aggregation_strategy!r} must be one of {AGGREGATIONS}")
            postprocess["aggregation_strategy"] = aggregation_strategy
        if top_k is not None:
            postprocess["top_k"] = top_k
        return preprocess, {}, postprocess

    def preprocess(
        self,
        text: str,
        tasks: list[str] | None = None,
        question: str | None = None,
        max_length: int | None = None,
    ) -> dict[str, Any]:
        if not isinstance(text, str):
            raise ValueError(f"{type(self).__name__} takes a text (or a list of texts), got {type(text).__name__}")
        if max_length is None:
            max_length = default_max_length(self.model, self.tokenizer, 512)
        selected = tasks or [t for t in sorted(self.task_specs) if not self._reads_question(t) or question]
        qa_tasks = [t for t in selected if self._reads_question(t)]
        text_tasks = [t for t in selected if t not in qa_tasks]
        if qa_tasks and not question:
            raise ValueError(f"question-answering tasks {qa_tasks} need `question=` (the text is the context)")
        inputs: dict[str, Any] = {"text": text, "text_tasks": text_tasks, "qa_tasks": qa_tasks}
        if text_tasks:
            encoded = self.tokenizer(
                text, truncation=True, max_length=max_length, return_offsets_mapping=True, return_tensors="pt"
            )
            inputs["text_offsets"] = encoded.pop("offset_mapping")[0].tolist()
            inputs["text_special"] = list(encoded.encodings[0].special_tokens_mask)
            inputs["text_inputs"] = dict(encoded)
        if qa_tasks:
            encoded = self.tokenizer(
                question,
                text,
                truncation="only_second",
                max_length=max_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            # context tokens only: the answer must lie in the text, never in the question or a special token
            inputs["qa_context"] = torch.tensor([s == 1 for s in encoded.sequence_ids(0)])
            inputs["qa_offsets"] = encoded.pop("offset_mapping")[0].tolist()
            inputs["qa_inputs"] = dict(encoded)
        return inputs

    def _reads_question(self, task: str) -> bool:
        """The task's head reads a question and the text as its context (run on the pair, not the text alone)."""
        return self.task_specs[task]["type"] in QUESTION_TYPES

    @staticmethod
    def _model_inputs(encoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = ("input_ids", "attention_mask", "token_type_ids")
        return {name: encoded[name] for name in names if name in encoded}

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        if inputs["text_tasks"]:
            heads = self.model.run_heads(inputs["text_tasks"], **self._model_inputs(inputs["text_inputs"]))
            outputs.update(heads)
        if inputs["qa_tasks"]:
            outputs.update(self.model.run_heads(inputs["qa_tasks"], **self._model_inputs(inputs["qa_inputs"])))
        return {"heads": outputs, **inputs}

    def postprocess(
        self, outputs: dict[str, Any], aggregation_strategy: str = "simple", top_k: int = 1
    ) -> dict[str, Any]:
        answers = {
            "classification": lambda spec, logits: self._classification(spec, logits["logits"][0].float(), top_k),
            "token_classification": lambda spec, logits: self._token_classification(
                spec,
                logits["logits"][0].float(),
                outputs["text_offsets"],
                outputs["text_special"],
                outputs["text"],
                aggregation_strategy,
            ),
            "question_answering": lambda spec, logits: self._question_answering(
                logits["start_logits"][0].float(),
                logits["end_logits"][0].float(),
                outputs["qa_offsets"],
                outputs["qa_context"],
                outputs["text"],
            ),
        }  # one per multi-task head type (modeling_sora_multitask.MULTITASK_HEAD_TYPES)
        return {
            task: answers[self.task_specs[task]["type"]](self.task_specs[task], logits)
            for task, logits in outputs["heads"].items()
        }

    @staticmethod
    def _classification(spec: dict[str, Any], logits: torch.Tensor, top_k: int) -> list[dict[str, Any]]:
        labels = spec["labels"]
        problem_type = spec.get("problem_type") or "single_label_classification"
        if problem_type == "regression":
            return [{"label": labels[0], "score": float(logits[0])}]
        if problem_type == "multi_label_classification":
            scores = torch.sigmoid(logits)
            order = scores.argsort(descending=True).tolist()
            return [{"label": labels[i], "score": float(scores[i])} for i in order]
        scores = torch.softmax(logits, dim=-1)
        order = scores.argsort(descending=True).tolist()[: max(1, top_k)]
        return [{"label": labels[i], "score": float(scores[i])} for i in order]

    @staticmethod
    def _token_classification(
        spec: dict[str, Any],
        logits: torch.Tensor,
        offsets: list[list[int]],
        special: list[int],
        text: str,
        aggregation: str,
    ) -> list[dict[str, Any]]:
        labels = spec["labels"]
        probabilities = torch.softmax(logits, dim=-1)
        tokens = []
        for index, (start, end) in enumerate(offsets):
            if special[index] or start == end:
                continue
            while start < end and text[start].isspace():  # a Metaspace token may cover the leading space
                start += 1
            label_id = int(probabilities[index].argmax())
            tokens.append(
                {
                    "entity": labels[label_id],
                    "score": float(probabilities[index, label_id]),
                    "index": index,
                    "word": text[start:end],
                    "start": start,
                    "end": end,
                }
            )
        if aggregation == "none":
            return [t for t in tokens if t["entity"] != "O"]
        return group_entities(tokens, text, spec.get("tag_scheme") or "BIO")

    @staticmethod
    def _question_answering(
        start_logits: torch.Tensor,
        end_logits: torch.Tensor,
        offsets: list[list[int]],
        context_mask: torch.Tensor,
        text: str,
        max_answer_tokens: int = 30,
    ) -> dict[str, Any]:
        """The context span with the highest start + end score, scored as p(start) * p(end)."""
        mask = context_mask.to(start_logits.device)
        start_p = torch.softmax(start_logits.masked_fill(~mask, float("-inf")), dim=-1)
        end_p = torch.softmax(end_logits.masked_fill(~mask, float("-inf")), dim=-1)
        scores = start_p[:, None] * end_p[None, :]
        length = scores.shape[0]
        valid = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu()
        valid &= ~torch.ones_like(valid).triu(max_answer_tokens)
        scores = scores.masked_fill(~valid, 0.0)
        flat = int(scores.argmax())
        s, e = divmod(flat, length)
        start, end = offsets[s][0], offsets[e][1]
        return {"score": float(scores[s, e]), "start": start, "end": end, "answer": text[start:end].strip()}


def _split_tag(tag: str) -> tuple[str, str]:
    """`B-PER` -> ("B", "PER"); `O` -> ("O", ""); a bare BMES tag `S` -> ("S", "")."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def group_entities(tokens: list[dict[str, Any]], text: str, scheme: str = "BIO") -> list[dict[str, Any]]:
    """Adjacent tagged tokens into entity groups, as transformers' `aggregation_strategy="simple"` does.

    A group starts at `B` (and `S` in BMES), or where the entity type changes; `I`/`M`/`E` continue it; `O` ends it.
    The group's score is the mean of its tokens' scores, its word the text it covers.
    """
    groups: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    starts = ("B", "S") if scheme == "BMES" else ("B",)
    for token in tokens:
        prefix, kind = _split_tag(token["entity"])
        if prefix == "O":
            current = None
            continue
        if current is None or prefix in starts or kind != current["entity_group"] or current["closed"]:
            current = {"entity_group": kind, "scores": [], "start": token["start"], "end": token["end"]}
            current["closed"] = False
            groups.append(current)
        current["scores"].append(token["score"])
        current["end"] = token["end"]
        if scheme == "BMES" and prefix in ("E", "S"):
            current["closed"] = True
    return [
        {
            "entity_group": g["entity_group"],
            "score": sum(g["scores"]) / len(g["scores"]),
            "word": text[g["start"] : g["end"]],
            "start": g["start"],
            "end": g["end"],
        }
        for g in groups
    ]
