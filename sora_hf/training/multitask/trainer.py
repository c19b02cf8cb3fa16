"""`MultiTaskTrainer`: a `Trainer` whose training batches each come from one task."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from .model import uncertainty_log_variances, unwrap
from .sampler import MultiTaskCollator, MultiTaskDataset, TaskBatchSampler


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


__all__ = ["MultiTaskTrainer"]
