"""`AdversarialTrainer`: the Trainer extension that trains on clean and perturbed embeddings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from ...validation import RecipeError
from .config import AdversarialOptions
from .perturbation import EmbeddingPerturbation, _grad_of, normalise, project

# ---------------------------------------------------------------------------------------------------------------
# the trainer


class AdversarialTrainer(Trainer):
    """`Trainer` whose `training_step` trains against FGM, PGD or FreeLB perturbations of the embedding output.

    It keeps `Trainer.training_step`'s contract: inputs prepared and context-parallel buffers set up the same way,
    every loss computed by `compute_loss` under `compute_loss_context_manager()`, scaled for gradient accumulation
    as Trainer scales it, backpropagated with `accelerator.backward` (mixed-precision loss scaling, DDP, DeepSpeed),
    and the detached loss returned. Passes before the last one of a step run under `accelerator.no_sync`, so DDP
    reduces the gradient once per step.
    """

    def __init__(self, *args, adversarial: AdversarialOptions, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.n_gpu > 1:
            raise RecipeError(
                "adversarial training does not run under torch.nn.DataParallel (several GPUs in one process); "
                "launch one process per GPU with `accelerate launch` or `torchrun` (DDP) instead"
            )
        self.adversarial = adversarial
        self._adversarial_loss_sum = 0.0
        self._adversarial_loss_count = 0

    # -- plumbing shared with Trainer.training_step ---------------------------------------------------------------

    def _loss(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch) -> torch.Tensor:
        """`compute_loss`, scaled for gradient accumulation exactly as `Trainer.training_step` scales it.

        Each pass gets its own copy of the batch: with a `compute_loss_func` or label smoothing, `compute_loss` pops
        `labels` from the dict it is given, and the next pass needs them."""
        with self.compute_loss_context_manager():
            loss = self.compute_loss(model, dict(inputs), num_items_in_batch=num_items_in_batch)
        if self.args.n_gpu > 1:
            loss = loss.mean()
        declared = getattr(self, "loss_is_scaled_for_ga", None)  # a class attribute since transformers 5.2x
        if declared is not None:
            scaled = declared
        else:
            scaled = (
                self.model_accepts_loss_kwargs and num_items_in_batch is not None
            ) or self.compute_loss_func is not None
        if not scaled:
            loss = loss / self.current_gradient_accumulation_steps
        return loss

    def _backward(self, loss: torch.Tensor) -> None:
        from accelerate.utils import DistributedType

        kwargs = {}
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            kwargs["scale_wrt_gas"] = False
        self.accelerator.backward(loss, **kwargs)

    def _delta_grads(self, loss: torch.Tensor, hook: EmbeddingPerturbation) -> list[torch.Tensor]:
        """d loss / d delta only (no parameter gradient), scaled like the real backward so fp16 does not flush it."""
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None:
            loss = scaler.scale(loss)
        return list(torch.autograd.grad(loss, hook.added, allow_unused=True, materialize_grads=True))

    @contextlib.contextmanager
    def _perturbation(self, model: nn.Module) -> Iterator[EmbeddingPerturbation]:
        unwrapped = self.accelerator.unwrap_model(model)
        embedding = unwrapped.get_input_embeddings()
        config = getattr(unwrapped, "config", None)
        hook = EmbeddingPerturbation(embedding, getattr(config, "pad_token_id", None))
        try:
            yield hook
        finally:
            hook.remove()

    def _record_adversarial_loss(self, loss: torch.Tensor) -> None:
        self._adversarial_loss_sum += float(loss.detach()) * self.current_gradient_accumulation_steps
        self._adversarial_loss_count += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds `adversarial_loss` (the mean loss under attack since the last log) beside Trainer's `loss`."""
        if "loss" in logs and self._adversarial_loss_count:
            logs["adversarial_loss"] = round(self._adversarial_loss_sum / self._adversarial_loss_count, 4)
            self._adversarial_loss_sum, self._adversarial_loss_count = 0.0, 0
        super().log(logs, start_time)

    # -- the step ---------------------------------------------------------------------------------------------------

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        cp_context: Any = contextlib.nullcontext
        if hasattr(self, "_prepare_context_parallel_inputs"):  # context parallelism, newer transformers
            cp_context, inputs = self._prepare_context_parallel_inputs(model, inputs)
        with cp_context():
            model.train()
            if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
                self.optimizer.train()
            inputs = self._prepare_inputs(inputs)
            with self._perturbation(model) as hook:
                try:
                    if self.adversarial.method == "freelb":
                        return self._freelb_step(model, inputs, num_items_in_batch, hook)
                    return self._fgm_pgd_step(model, inputs, num_items_in_batch, hook)
                finally:
                    hook.stop()

    def _fgm_pgd_step(self, model, inputs, num_items_in_batch, hook: EmbeddingPerturbation) -> torch.Tensor:
        options = self.adversarial
        hook.start(None)
        with self.accelerator.no_sync(model):
            clean = self._loss(model, inputs, num_items_in_batch)
            self._backward(clean)
        grads = [_grad_of(d) for d in hook.added]
        masks = hook.masks
        deltas = [torch.zeros_like(g, dtype=torch.float32) for g in grads]
        if options.method == "fgm":
            deltas = [options.epsilon * normalise(g, m) for g, m in zip(grads, masks, strict=True)]
        else:
            for step in range(options.steps):
                deltas = [
                    project(d + options.alpha * normalise(g, m), options.epsilon)
                    for d, g, m in zip(deltas, grads, masks, strict=True)
                ]
                if step == options.steps - 1:
                    break
                hook.start(deltas)
                with self.accelerator.no_sync(model):
                    grads = self._delta_grads(self._loss(model, inputs, num_items_in_batch), hook)
        hook.start(deltas)
        adversarial = self._loss(model, inputs, num_items_in_batch)
        self._backward(adversarial)
        self._record_adversarial_loss(adversarial)
        return clean.detach()

    def _freelb_step(self, model, inputs, num_items_in_batch, hook: EmbeddingPerturbation) -> torch.Tensor:
        options = self.adversarial
        deltas: list[torch.Tensor] | None = None  # the first pass draws delta_0 at random inside the ball
        total = torch.zeros((), device=self.args.device)
        for step in range(options.steps):
            hook.start(deltas, random_magnitude=options.init_magnitude)
            last = step == options.steps - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                loss = self._loss(model, inputs, num_items_in_batch) / options.steps
                self._backward(loss)
            total = total + loss.detach()
            if last:
                break
            deltas = [
                project(d.detach().float() + options.alpha * normalise(_grad_of(d), m), options.epsilon)
                for d, m in zip(hook.added, hook.masks, strict=True)
            ]
        self._record_adversarial_loss(total)
        return total
