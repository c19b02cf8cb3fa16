"""Sora's multi-task model: one shared encoder with a head per task (`SoraForMultiTask`), and its Auto class.

The heads are the single-task heads of `modeling_sora` (`SoraClassificationHead`, the token-classification dropout +
linear, the QA span projection); the task losses are weighted by fixed weights or by learned uncertainty
(`SoraTaskUncertainty`). Transformers has no multi-task Auto class, so `AutoModelForMultiTask` is defined here: a
saved `SoraForMultiTask` names `modeling_sora_multitask.SoraForMultiTask` under it in its `auto_map`.

This file imports only torch, transformers, `configuration_sora` and `modeling_sora`, so that `save_pretrained`
copies it (with those two) beside the weights and the model loads without sora_hf:
`get_class_from_dynamic_module("modeling_sora_multitask.SoraForMultiTask", path).from_pretrained(path)`.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple

from .configuration_sora import MULTITASK_TYPES, SoraConfig
from .modeling_sora import SoraClassificationHead, SoraPreTrainedModel, _needs_all_layers, sora_stack

# The entry `save_pretrained` writes for `SoraForMultiTask` (transformers writes it from `_auto_class`); the Hub push
# writes it too when it uploads this file.
SORA_MULTITASK_AUTO_MAP = {"AutoModelForMultiTask": "modeling_sora_multitask.SoraForMultiTask"}


class AutoModelForMultiTask(_BaseAutoModelClass):
    """The Auto class of multi-task models (one shared encoder, one head per task), which transformers lacks.

    Works like `AutoModelForSequenceClassification`: `AutoModelForMultiTask.from_pretrained(path)` or
    `.from_config(config)`, and `AutoModelForMultiTask.register(MyConfig, MyMultiTaskModel)` for other families
    (`import sora_hf` registers Sora's). A saved `SoraForMultiTask` names this class in its `auto_map`; without
    sora_hf, load one with
    `get_class_from_dynamic_module("modeling_sora_multitask.SoraForMultiTask", path).from_pretrained(path)`.
    """

    _model_mapping = _LazyAutoMapping(OrderedDict(), OrderedDict())


@dataclass
class SoraMultiTaskOutput(ModelOutput):
    """Output of `SoraForMultiTask` for the one task a batch belongs to.

    loss: what training minimises: `task_loss` weighted by the task's fixed `loss_weight`, or with uncertainty
        weighting `exp(-s_task) * task_loss + s_task` (`s_task` the learned log-variance).
    task_loss: the task's own loss, unweighted (cross-entropy, BCE / MSE for multi-label / regression, QA span CE).
    logits: classification `(batch, num_labels)`, token classification `(batch, seq, num_labels)`; None for QA.
    start_logits / end_logits: QA span scores `(batch, seq)`; None for the other task types.
    """

    loss: torch.FloatTensor | None = None
    task_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    start_logits: torch.FloatTensor | None = None
    end_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class SoraTaskUncertainty(nn.Module):
    """One learned log-variance `s_t` per task for uncertainty weighting (Kendall, Gal & Cipolla, 2018).

    The weighted loss of a task is `exp(-s_t) * L_t + s_t`: a task whose loss stays high (noisy) learns a larger
    `s_t` and so a smaller weight, and the `+ s_t` term stops every weight from collapsing to zero. Kendall et al.
    write `1/(2 sigma^2) L + log sigma` for regression and `1/sigma^2 L + log sigma` for classification; dropping the
    constant factors (as most implementations do) gives the same form for every task type and the same optimum
    ordering. `s_t` starts at 0, i.e. at weight 1 for every task. A module (not a bare parameter) so that peft's
    `modules_to_save` can keep it trainable under LoRA; one vector `log_variances`, in the order of `task_names`.
    """

    def __init__(self, task_names: list[str]):
        super().__init__()
        self.task_names = list(task_names)
        self.log_variances = nn.Parameter(torch.zeros(len(self.task_names)))

    def log_variance(self, task: str) -> torch.Tensor:
        return self.log_variances[self.task_names.index(task)]

    def as_dict(self) -> dict[str, float]:
        """Task name -> learned log-variance `s_t` (its loss weight is `exp(-s_t)`)."""
        return dict(zip(self.task_names, self.log_variances.detach().float().tolist(), strict=True))

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        s = self.log_variance(task)
        return torch.exp(-s) * loss + s


class MultiTaskHeadType:
    """What one task type's head is in `SoraForMultiTask`: the module it builds (the single-task model's, so that the
    parameter names and the maths are theirs), its logits from the shared encoder's outputs, and its loss. One
    subclass per type in `MULTITASK_HEAD_TYPES`, whose keys are `configuration_sora.MULTITASK_TYPES`."""

    pooled = False  # reads a pooled sentence (and so every layer's states when the config pools over layers)

    def build(self, config: SoraConfig, spec: dict) -> nn.Module:
        raise NotImplementedError

    def logits(self, module: nn.Module, outputs, attention_mask, dropout: nn.Module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, spec: dict, logits: dict[str, torch.Tensor], labels, start_positions, end_positions):
        raise NotImplementedError


class ClassificationHeadType(MultiTaskHeadType):
    """`SoraForSequenceClassification`'s pooled head: single-label, multi-label or regression (`problem_type`)."""

    pooled = True

    def build(self, config, spec):
        return SoraClassificationHead(config, 1 if spec.get("problem_type") == "regression" else len(spec["labels"]))

    def logits(self, module, outputs, attention_mask, dropout):
        return {"logits": module(outputs.last_hidden_state, attention_mask, outputs.hidden_states)}

    def loss(self, spec, logits, labels, start_positions, end_positions):
        if labels is None:
            return None
        scores = logits["logits"].float()
        labels = labels.to(scores.device)
        problem_type = spec.get("problem_type") or "single_label_classification"
        if problem_type == "regression":
            return F.mse_loss(scores.squeeze(-1), labels.float().view(-1))
        if problem_type == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(scores, labels.float())
        return F.cross_entropy(scores, labels.view(-1))


class TokenClassificationHeadType(MultiTaskHeadType):
    """`SoraForTokenClassification`'s head: dropout, then one linear layer over every token."""

    def build(self, config, spec):
        return nn.Linear(config.hidden_size, len(spec["labels"]))

    def logits(self, module, outputs, attention_mask, dropout):
        return {"logits": module(dropout(outputs.last_hidden_state))}

    def loss(self, spec, logits, labels, start_positions, end_positions):
        if labels is None:
            return None
        scores = logits["logits"].float()
        return F.cross_entropy(scores.view(-1, scores.shape[-1]), labels.to(scores.device).view(-1), ignore_index=-100)


class QuestionAnsweringHeadType(MultiTaskHeadType):
    """`SoraForQuestionAnswering`'s span head: start and end logits from one linear layer (`qa_outputs`)."""

    def build(self, config, spec):
        return nn.Linear(config.hidden_size, 2)

    def logits(self, module, outputs, attention_mask, dropout):
        start_logits, end_logits = module(outputs.last_hidden_state).split(1, dim=-1)
        return {
            "start_logits": start_logits.squeeze(-1).contiguous(),
            "end_logits": end_logits.squeeze(-1).contiguous(),
        }

    def loss(self, spec, logits, labels, start_positions, end_positions):
        if start_positions is None or end_positions is None:
            return None
        start_logits, end_logits = logits["start_logits"], logits["end_logits"]
        ignored = start_logits.size(1)
        start = start_positions.view(-1).to(start_logits.device).clamp(0, ignored)
        end = end_positions.view(-1).to(end_logits.device).clamp(0, ignored)
        start_loss = F.cross_entropy(start_logits.float(), start, ignore_index=ignored)
        end_loss = F.cross_entropy(end_logits.float(), end, ignore_index=ignored)
        return (start_loss + end_loss) / 2


# the head of each task type `config.tasks` may name; adding one is a subclass and a row (and its name in
# configuration_sora.MULTITASK_TYPES, which the config checks)
MULTITASK_HEAD_TYPES: dict[str, MultiTaskHeadType] = {
    "classification": ClassificationHeadType(),
    "token_classification": TokenClassificationHeadType(),
    "question_answering": QuestionAnsweringHeadType(),
}
if tuple(MULTITASK_HEAD_TYPES) != tuple(MULTITASK_TYPES):
    raise ImportError(
        f"multi-task head types {tuple(MULTITASK_HEAD_TYPES)} differ from the config's {MULTITASK_TYPES}"
    )


class SoraForMultiTask(SoraPreTrainedModel):
    """One shared Sora encoder with one head per task (`config.tasks`): classification, token classification, QA.

    Each call runs one task: `model(input_ids, attention_mask, task="ner", labels=...)`. The heads are the modules
    of the single-task models (`SoraClassificationHead`, the token-classification dropout + linear, the QA span
    projection), so a task head means exactly what the single-task head means. With labels (`labels`, or
    `start_positions`/`end_positions` for QA) the output carries the task's loss, weighted per
    `config.task_loss_weighting` (see `SoraMultiTaskOutput`); `run_heads` scores every task from one encoder pass.

    Example:

    ```python
    >>> import sora_hf
    >>> from sora_hf import SoraConfig, SoraForMultiTask
    >>> config = SoraConfig(vocab_size=8000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, tasks={
    ...     "sentiment": {"type": "classification", "labels": ["negative", "positive"]},
    ...     "ner": {"type": "token_classification", "labels": ["O", "B-PER", "I-PER"]}})
    >>> model = SoraForMultiTask(config)
    >>> model(input_ids, attention_mask, task="sentiment").logits.shape  # (batch, 2)
    ```
    """

    _auto_class = "AutoModelForMultiTask"  # sora_hf's auto class: `save_pretrained` writes its auto_map entry

    def __init__(self, config: SoraConfig):
        super().__init__(config)
        if not config.tasks:
            raise ValueError(
                "SoraForMultiTask needs config.tasks, e.g. {'sentiment': {'type': 'classification', 'labels': "
                "['negative', 'positive']}}"
            )
        self.task_names = sorted(config.tasks)  # config.json stores the mapping with sorted keys
        self.model = sora_stack(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.heads = nn.ModuleDict(
            {name: self.head_type(name).build(config, config.tasks[name]) for name in self.task_names}
        )
        self.task_uncertainty = (
            SoraTaskUncertainty(self.task_names) if config.task_loss_weighting == "uncertainty" else None
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SoraTaskUncertainty):
            init.zeros_(module.log_variances)

    def task_type(self, task: str) -> str:
        return self.config.tasks[self.check_task(task)]["type"]

    def head_type(self, task: str) -> MultiTaskHeadType:
        return MULTITASK_HEAD_TYPES[self.config.tasks[task]["type"]]

    def check_task(self, task: str | None) -> str:
        """The task to run: `task`, or the only task; a clear error for a missing or unknown name."""
        if task is None:
            if len(self.task_names) == 1:
                return self.task_names[0]
            raise ValueError(f"SoraForMultiTask needs `task=`, one of {self.task_names}")
        if task not in self.config.tasks:
            raise ValueError(f"unknown task {task!r}; this model's tasks are {self.task_names}")
        return task

    def encode(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        tasks: list[str] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[BaseModelOutputWithPast, bool]:
        """The shared encoder's outputs (with every layer's states when a pooled head of `tasks` needs them)."""
        pooled = any(self.head_type(t).pooled for t in (tasks or self.task_names))
        return_hidden = bool(kwargs.get("output_hidden_states", self.config.output_hidden_states))
        if pooled:
            kwargs, return_hidden = _needs_all_layers(self.config, kwargs)
        outputs = self.model(
            return_dict=True,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return outputs, return_hidden

    def head(self, task: str, outputs, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Task `task`'s logits from the shared encoder's outputs: {"logits"} or {"start_logits", "end_logits"}."""
        return self.head_type(self.check_task(task)).logits(self.heads[task], outputs, attention_mask, self.dropout)

    def run_heads(self, tasks: list[str] | None = None, **inputs) -> dict[str, dict[str, torch.Tensor]]:
        """Every task's logits (or those of `tasks`) from one pass of the shared encoder: what a pipeline needs."""
        tasks = [self.check_task(t) for t in (tasks or self.task_names)]
        outputs, _ = self.encode(tasks=tasks, **inputs)
        return {task: self.head(task, outputs, inputs.get("attention_mask")) for task in tasks}

    def task_loss(
        self, task: str, logits: dict[str, torch.Tensor], labels=None, start_positions=None, end_positions=None
    ) -> torch.Tensor | None:
        """The unweighted loss of `task`, as its single-task head computes it."""
        return self.head_type(task).loss(self.config.tasks[task], logits, labels, start_positions, end_positions)

    def weighted_loss(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        """The training objective of one task's batch: fixed `loss_weight`, or uncertainty weighting."""
        if self.task_uncertainty is not None:
            return self.task_uncertainty(task, loss)
        return loss * float(self.config.tasks[task].get("loss_weight", 1.0))

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        task: str | None = None,
        labels: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SoraMultiTaskOutput:
        r"""task: the name of the task this batch belongs to (a key of `config.tasks`); optional with one task.
        labels: class ids (classification), per-token tag ids with -100 to ignore (token classification).
        start_positions / end_positions: answer span token indices (question answering)."""
        task = self.check_task(task)
        outputs, return_hidden = self.encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, tasks=[task], **kwargs
        )
        logits = self.head(task, outputs, attention_mask)
        task_loss = self.task_loss(task, logits, labels, start_positions, end_positions)
        return SoraMultiTaskOutput(
            loss=None if task_loss is None else self.weighted_loss(task, task_loss),
            task_loss=task_loss,
            hidden_states=outputs.hidden_states if return_hidden else None,
            attentions=outputs.attentions,
            **logits,
        )


__all__ = [
    "MULTITASK_HEAD_TYPES",
    "AutoModelForMultiTask",
    "MultiTaskHeadType",
    "SoraForMultiTask",
    "SoraMultiTaskOutput",
    "SoraTaskUncertainty",
]
