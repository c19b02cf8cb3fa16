"""Task sampling: each training batch holds the examples of one task, the task drawn per batch with probabilities
proportional to the tasks' sizes, temperature-scaled (`p_i ∝ n_i^(1/T)`) or uniform."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .config import SAMPLING


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


__all__ = ["MultiTaskCollator", "MultiTaskDataset", "TaskBatchSampler", "task_probabilities"]
