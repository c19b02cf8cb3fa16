"""Multi-task learning: one shared Sora encoder, one head per task, trained from one recipe.

`sora_hf.runs.run_multitask(recipe)` loads every task with the fine-tuning loaders (`finetuning.load_task`, the task types'
encoders in `sora_hf.tasks`), builds a `SoraForMultiTask` over the pre-trained encoder, and trains it with `MultiTaskTrainer`: each
batch holds the examples of one task, the task drawn per batch with probabilities proportional to the tasks' sizes,
temperature-scaled (`p_i ∝ n_i^(1/T)`) or uniform. Each batch's loss is weighted by the task's fixed `loss_weight` or
by learned uncertainty (`SoraTaskUncertainty`, in the model so that it is saved with it). Every task is then scored
on its own test split with its task type's `score`, and the run folder gets the model, the tokenizer, `metrics.json`
with one block per task, per-task predictions and reports under `tasks/<name>/`, a loss curve and a model card.

A recipe (`recipes/multitask/zh-sentiment-ner.yaml`):

```yaml
name: zh-sentiment-ner
checkpoint: runs/quickstart/pretrain
output_dir: runs/zh-sentiment-ner
method: full                # or lora
sampling: temperature       # proportional | temperature | uniform
temperature: 2.0
loss_weighting: fixed       # fixed | uncertainty
tasks:
  sentiment: {data: {embedded: sentiment}}
  ner: {data: {embedded: ner}, loss_weight: 1.0}
training: {num_train_epochs: 1}
```
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer

from .data.tasks import EMBEDDED_TASK_TYPES
from .finetuning import DEFAULT_TRAINING as FINETUNE_TRAINING
from .recipes import (
    INTERNAL_FIELDS,
    LORA_KEYS,
    LORA_KINDS,
    FinetuneDataSection,
    FinetuneRecipe,
    RecipeError,
    _suggest,
    check_keys,
    check_model_section,
    check_training_section,
    coerce_numbers,
    parse_finetune_recipe,
    read_recipe,
    typed_mapping,
)
from .tasks import TASKS, get_task, task_types

logger = logging.getLogger(__name__)

SAMPLING = ("proportional", "temperature", "uniform")
TOP_LEVEL_KINDS = {
    "max_length": frozenset({"int"}),
    "doc_stride": frozenset({"int"}),
    "seed": frozenset({"int"}),
    "temperature": frozenset({"float"}),
}
LOSS_WEIGHTING = ("fixed", "uncertainty")
TASK_KEYS = {"data", "loss_weight"}
# fine-tuning's defaults, but no evaluation or checkpoints during training: each task is scored on its own test
# split after training
DEFAULT_TRAINING = {
    **{k: v for k, v in FINETUNE_TRAINING.items() if k != "save_total_limit"},
    "eval_strategy": "no",
    "save_strategy": "no",
}


# ---------------------------------------------------------------------------------------------------------------
# recipe


@dataclass
class TaskSection:
    """One task of a multi-task recipe: its data (the fine-tuning `data:` section) and fixed loss weight."""

    data: FinetuneDataSection
    loss_weight: float = 1.0


@dataclass
class MultiTaskRecipe:
    name: str
    output_dir: str
    checkpoint: str  # a pre-trained Sora encoder folder, or a saved multi-task model to continue
    tasks: dict[str, TaskSection]
    method: str = "full"  # full | lora
    max_length: int = 128
    doc_stride: int = 32
    seed: int = 42
    sampling: str = "proportional"  # proportional | temperature | uniform
    temperature: float = 2.0  # sampling: temperature -> p_i ∝ n_i^(1/T)
    loss_weighting: str = "fixed"  # fixed | uncertainty
    lora: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # SoraConfig overrides (pooling, dropout...)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source_path: str | None = None
    effective: dict[str, Any] = field(default_factory=dict)  # the recipe as it runs (recipe.yaml of the run)
    overrides: dict[str, Any] = field(default_factory=dict)  # `--set` and command-line options, dotted key -> value

    def task_recipe(self, task: str) -> FinetuneRecipe:
        """The fine-tuning recipe of one task, so that the fine-tuning loaders and encoders serve it unchanged."""
        return FinetuneRecipe(
            name=f"{self.name}/{task}",
            output_dir=self.output_dir,
            checkpoint=self.checkpoint,
            method=self.method,
            max_length=self.max_length,
            doc_stride=self.doc_stride,
            seed=self.seed,
            data=self.tasks[task].data,
        )


def parse_multitask_recipe(raw: dict[str, Any], source_path: str | None = None) -> MultiTaskRecipe:
    """Validate a multi-task recipe completely (keys, tasks, sampling, weighting) before any data is loaded."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    check_keys("recipe", raw, {f.name for f in dataclasses.fields(MultiTaskRecipe)} - INTERNAL_FIELDS)
    for required in ("name", "output_dir", "checkpoint", "tasks"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    raw_tasks = raw["tasks"]
    if not isinstance(raw_tasks, dict) or not raw_tasks:
        raise RecipeError("recipe.tasks must map task names to {data: ..., loss_weight: ...}, one entry per task")
    tasks = {}
    for name, spec in raw_tasks.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise RecipeError(f"task name {name!r} must be a Python identifier (it names the task's head)")
        if not isinstance(spec, dict) or "data" not in spec:
            raise RecipeError(f"tasks.{name} must be a mapping with a `data:` section, got {spec!r}")
        check_keys(f"tasks.{name}", spec, TASK_KEYS)
        # the fine-tuning parser validates the data section (exactly one of embedded/train_file, task_type...)
        data = parse_finetune_recipe(
            {"name": name, "output_dir": ".", "checkpoint": ".", "data": spec["data"]}, source_path
        ).data
        # the heads SoraForMultiTask has; embedded tasks of other types (pinyin: seq2seq) are refused here
        task_type = data.task_type or EMBEDDED_TASK_TYPES.get(data.embedded or "")
        if task_type not in TASKS or not TASKS[task_type].multitask_head:
            supported = ", ".join(task_types(lambda task: task.multitask_head))
            raise RecipeError(f"tasks.{name}: task type {task_type!r} has no multi-task head; supported: {supported}")
        weight = coerce_numbers({"w": spec.get("loss_weight", 1.0)})["w"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise RecipeError(f"tasks.{name}.loss_weight={spec.get('loss_weight')!r} must be a positive number")
        tasks[name] = TaskSection(data=data, loss_weight=float(weight))
    lora = raw.get("lora") or {}
    check_keys("lora", lora, LORA_KEYS)
    lora = typed_mapping("lora", lora, LORA_KINDS)
    model = check_model_section(raw.get("model") or {}, exclude={"tasks", "task_loss_weighting"})
    training = check_training_section(raw.get("training") or {})
    numbers = {key: raw[key] for key in TOP_LEVEL_KINDS if key in raw}
    raw = {**raw, **typed_mapping("", numbers, TOP_LEVEL_KINDS)}
    recipe = MultiTaskRecipe(
        **{k: v for k, v in raw.items() if k not in ("tasks", "lora", "model", "training")},
        tasks=tasks,
        lora=lora,
        model=model,
        training=training,
        source_path=source_path,
    )
    recipe.effective = {
        **copy.deepcopy(raw),
        **({"lora": lora} if "lora" in raw else {}),
        **({"model": model} if "model" in raw else {}),
        **({"training": training} if "training" in raw else {}),
    }
    recipe.temperature = float(recipe.temperature)
    if recipe.method not in ("lora", "full"):
        raise RecipeError(f"recipe.method={recipe.method!r} must be 'lora' or 'full'")
    if recipe.sampling not in SAMPLING:
        raise RecipeError(
            f"recipe.sampling={recipe.sampling!r} must be one of {', '.join(SAMPLING)}"
            f"{_suggest(str(recipe.sampling), SAMPLING)}"
        )
    if not recipe.temperature > 0:
        raise RecipeError(f"recipe.temperature={recipe.temperature} must be positive")
    if recipe.loss_weighting not in LOSS_WEIGHTING:
        raise RecipeError(
            f"recipe.loss_weighting={recipe.loss_weighting!r} must be one of {', '.join(LOSS_WEIGHTING)}"
        )
    if recipe.doc_stride >= recipe.max_length // 2:
        raise RecipeError(f"doc_stride={recipe.doc_stride} must be under half of max_length={recipe.max_length}")
    if training.get("eval_strategy", "no") != "no":
        raise RecipeError(
            f"training.eval_strategy={training['eval_strategy']!r}: a multi-task run scores every task on its own "
            "test split after training; leave eval_strategy out (or 'no')"
        )
    return recipe


def load_multitask_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> MultiTaskRecipe:
    recipe = parse_multitask_recipe(read_recipe(path, overrides), source_path=str(path))
    recipe.overrides = dict(overrides or {})
    return recipe


# ---------------------------------------------------------------------------------------------------------------
# task sampling


def task_probabilities(sizes: dict[str, int], sampling: str, temperature: float = 1.0) -> dict[str, float]:
    """Probability of drawing each task for a batch: `p_i ∝ n_i` (proportional), `p_i ∝ n_i^(1/T)` (temperature)
    or `1/K` (uniform). Temperature 1 is proportional; a large T tends to uniform (Arivazhagan et al., 2019)."""
    if sampling not in SAMPLING:
        raise ValueError(f"sampling={sampling!r} must be one of {SAMPLING}")
    if any(n <= 0 for n in sizes.values()):
        raise ValueError(f"every task needs training examples, got sizes {sizes}")
    exponent = {"proportional": 1.0, "temperature": 1.0 / temperature, "uniform": 0.0}[sampling]
    weights = {task: float(n) ** exponent for task, n in sizes.items()}
    total = sum(weights.values())
    return {task: w / total for task, w in weights.items()}


class TaskBatchSampler:
    """Batches of one task each: the task is drawn per batch from `probabilities`, its examples in a seeded shuffled
    order (reshuffled each time the task's data is used up). Yields indices into `MultiTaskDataset`.

    An epoch is as many batches as the tasks' data fill (`sum ceil(n_i / batch_size)`) unless `num_batches` says
    otherwise; with proportional sampling every task is then seen about once per epoch.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        batch_size: int,
        probabilities: dict[str, float],
        seed: int = 42,
        num_batches: int | None = None,
    ):
        self.tasks = list(sizes)
        self.sizes = [sizes[t] for t in self.tasks]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int).tolist()
        self.batch_size = batch_size
        self.probabilities = np.array([probabilities[t] for t in self.tasks], dtype=float)
        self.seed = seed
        self.epoch = 0
        self.num_batches = num_batches or sum(math.ceil(n / batch_size) for n in self.sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def task_sequence(self) -> list[str]:
        """The task of each batch of the current epoch (what `__iter__` will draw)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        return [self.tasks[i] for i in rng.choice(len(self.tasks), size=self.num_batches, p=self.probabilities)]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        orders = [rng.permutation(n) for n in self.sizes]
        cursors = [0] * len(self.tasks)
        index = {t: i for i, t in enumerate(self.tasks)}
        for task in self.task_sequence():
            i = index[task]
            batch = []
            while len(batch) < min(self.batch_size, self.sizes[i]):
                if cursors[i] == self.sizes[i]:
                    # a new pass over the task: examples already in this batch go last, so no batch repeats one
                    order = rng.permutation(self.sizes[i])
                    in_batch = np.isin(order, batch)
                    orders[i], cursors[i] = np.concatenate([order[~in_batch], order[in_batch]]), 0
                take = min(self.batch_size - len(batch), self.sizes[i] - cursors[i])
                batch.extend(orders[i][cursors[i] : cursors[i] + take].tolist())
                cursors[i] += take
            yield [self.offsets[i] + j for j in batch]


class MultiTaskDataset(torch.utils.data.Dataset):
    """The tasks' feature datasets end to end; item `k` is `(task, features row)`."""

    def __init__(self, datasets: dict[str, Any]):
        self.tasks = list(datasets)
        self.datasets = datasets
        self.bounds = np.cumsum([len(d) for d in datasets.values()]).tolist()

    def __len__(self) -> int:
        return self.bounds[-1] if self.bounds else 0

    def sizes(self) -> dict[str, int]:
        return {task: len(self.datasets[task]) for task in self.tasks}

    def __getitem__(self, k: int) -> tuple[str, dict[str, Any]]:
        i = int(np.searchsorted(self.bounds, k, side="right"))
        start = self.bounds[i - 1] if i else 0
        return self.tasks[i], self.datasets[self.tasks[i]][k - start]


class MultiTaskCollator:
    """Pads a one-task batch with that task's collator and names the task in the batch (`batch["task"]`)."""

    def __init__(self, collators: dict[str, Any]):
        self.collators = collators

    def __call__(self, items: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        tasks = {task for task, _ in items}
        if len(tasks) != 1:
            raise ValueError(f"a multi-task batch must hold one task, got {sorted(tasks)}")
        (task,) = tasks
        batch = dict(self.collators[task]([row for _, row in items]))
        batch["task"] = task
        return batch


# ---------------------------------------------------------------------------------------------------------------
# trainer


class MultiTaskTrainer(Trainer):
    """`Trainer` whose training batches each come from one task (`TaskBatchSampler`), and whose logs add each
    task's mean unweighted loss (`loss_<task>`) and, with uncertainty weighting, its current weight
    (`weight_<task>` = exp(-s))."""

    def __init__(
        self,
        *args: Any,
        task_collators: dict[str, Any],
        probabilities: dict[str, float],
        num_batches: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.task_collators = task_collators
        self.probabilities = probabilities
        self.num_batches = num_batches
        self.task_batches: dict[str, int] = defaultdict(int)
        self._task_losses: dict[str, list[torch.Tensor]] = defaultdict(list)

    def get_train_dataloader(self) -> DataLoader:
        dataset: MultiTaskDataset = self.train_dataset
        sampler = TaskBatchSampler(
            dataset.sizes(),
            self._train_batch_size,
            self.probabilities,
            seed=self.args.seed,
            num_batches=self.num_batches,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=MultiTaskCollator(self.task_collators),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        task = inputs["task"]
        outputs = model(**inputs)
        if model.training:
            self.task_batches[task] += 1
            self._task_losses[task].append(outputs["task_loss"].detach())
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._task_losses:
            for task, losses in sorted(self._task_losses.items()):
                logs[f"loss_{task}"] = round(float(torch.stack(losses).mean()), 4)
            self._task_losses.clear()
            uncertainty = getattr(unwrap(self.model), "task_uncertainty", None)
            if uncertainty is not None:
                for task, s in sorted(uncertainty_log_variances(uncertainty).items()):
                    logs[f"weight_{task}"] = round(math.exp(-s), 4)
        super().log(logs, start_time)


def unwrap(model: nn.Module) -> nn.Module:
    """The SoraForMultiTask inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def uncertainty_log_variances(module: nn.Module) -> dict[str, float]:
    """The learned `s_t` of a `SoraTaskUncertainty` (also when peft wraps it in `modules_to_save`)."""
    inner = getattr(module, "modules_to_save", None)
    if inner is not None:  # peft ModulesToSaveWrapper: the trained copy
        module = inner["default"] if "default" in inner else next(iter(inner.values()))
    return module.as_dict()


class TaskView(nn.Module):
    """A multi-task model seen as a single-task one (`view(**batch)` == `model(task=..., **batch)`), so that the
    fine-tuning prediction code scores each task unchanged."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.inner = model
        self.task = task

    def forward(self, **inputs: Any):
        return self.inner(task=self.task, **inputs)


# ---------------------------------------------------------------------------------------------------------------
# the run


def build_config(recipe: MultiTaskRecipe, infos: dict[str, Any]):
    """The multi-task config: the checkpoint's encoder with one head per recipe task. A checkpoint that already is a
    multi-task model must have the same tasks with the same labels (its heads are trained for those labels)."""
    from .checkpoints import resolve_checkpoint
    from .configuration_sora import SoraConfig
    from .finetuning import check_sora_checkpoint

    checkpoint = resolve_checkpoint(recipe.checkpoint)
    if Path(checkpoint).is_dir():
        check_sora_checkpoint(checkpoint)
    base = SoraConfig.from_pretrained(checkpoint)
    if base.is_decoder or base.is_encoder_decoder:
        kind = "an encoder-decoder" if base.is_encoder_decoder else "a causal decoder"
        raise RecipeError(
            f"checkpoint {checkpoint} is {kind} ({base.architectures}); multi-task heads need a Sora encoder "
            "(pre-trained with the mlm or rtd objective)"
        )
    tasks = {}
    for name, info in infos.items():
        tasks[name] = {
            "type": info.task_type,
            "loss_weight": recipe.tasks[name].loss_weight,
            **get_task(info.task_type).multitask_head_spec(info),
        }
    if base.tasks:
        check_tasks_match(tasks, base.tasks, checkpoint)
    return SoraConfig.from_pretrained(
        checkpoint, tasks=tasks, task_loss_weighting=recipe.loss_weighting, **recipe.model
    )


def check_tasks_match(tasks: dict[str, dict], saved: dict[str, dict], checkpoint: Path | str) -> None:
    """Raise RecipeError naming the first task whose name, type or label list differs from a saved model's."""
    for name, spec in tasks.items():
        if name not in saved:
            raise RecipeError(
                f"task {name!r} is not among the tasks of the multi-task checkpoint {checkpoint} "
                f"({sorted(saved)}); a saved multi-task model keeps its heads"
            )
        have = saved[name]
        if have["type"] != spec["type"]:
            raise RecipeError(
                f"task {name!r} is {spec['type']} in the data but {have['type']} in the checkpoint {checkpoint}"
            )
        data_labels, saved_labels = list(spec.get("labels") or []), list(have.get("labels") or [])
        if data_labels != saved_labels:
            unseen = [label for label in data_labels if label not in saved_labels]
            detail = f"labels the checkpoint lacks: {_preview(unseen)}" if unseen else "same labels, another order"
            raise RecipeError(
                f"task {name!r}: the data's labels {_preview(data_labels)} disagree with the labels of the multi-task "
                f"checkpoint {checkpoint} ({_preview(saved_labels)}; {detail}); its head was trained for those, in "
                "that order"
            )


def _preview(labels: list, limit: int = 8) -> str:
    shown = ", ".join(repr(label) for label in labels[:limit])
    return f"[{shown}, ... {len(labels)} in all]" if len(labels) > limit else f"[{shown}]"


def load_multitask_model(recipe: MultiTaskRecipe, config, tokenizer):
    from .checkpoints import CheckpointError, load_checked
    from .modeling_sora_multitask import SoraForMultiTask
    from .tokenizer import check_tokenizer_fits

    try:
        model = load_checked(SoraForMultiTask, recipe.checkpoint, heads="new_head", config=config)
    except CheckpointError as error:
        raise RecipeError(f"{error}: it is not a Sora encoder") from None
    check_tokenizer_fits(tokenizer, model.config)
    return model


def apply_multitask_lora(model: nn.Module, options: dict[str, Any]):
    """LoRA on the shared encoder; every task head (and the uncertainty weights) trained whole and saved."""
    from peft import LoraConfig, get_peft_model

    from .lora import LoraOptions

    opts = LoraOptions(**options)
    heads = [f"heads.{task}" for task in model.task_names]
    if model.task_uncertainty is not None:
        heads.append("task_uncertainty")
    kwargs: dict[str, Any] = dict(
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        modules_to_save=sorted(set(heads) | set(opts.modules_to_save)),
    )
    if opts.target_modules is not None:
        kwargs["target_modules"] = opts.target_modules
    return get_peft_model(model, LoraConfig(**kwargs))


__all__ = [
    "MultiTaskRecipe",
    "TaskSection",
    "parse_multitask_recipe",
    "load_multitask_recipe",
    "task_probabilities",
    "TaskBatchSampler",
    "MultiTaskDataset",
    "MultiTaskCollator",
    "MultiTaskTrainer",
    "TaskView",
    "check_tasks_match",
]
