"""Adversarial training on the embedding output: FGM, PGD and FreeLB as a `Trainer` extension.

Switched on by a recipe section::

    adversarial:
      method: pgd        # fgm | pgd | freelb
      epsilon: 0.1       # radius of the perturbation ball, L2 over one example's (tokens x hidden) embeddings
      alpha: 0.05        # pgd / freelb: size of each ascent step
      steps: 3           # pgd / freelb: number of ascent steps K

Why the embedding *output* and not the embedding weight: the implementation common in Chinese competitions adds
`epsilon * grad / |grad|` to `word_embeddings.weight`. Under LoRA that weight is frozen and has no gradient, so the
attack silently does nothing. Here a forward hook on `model.get_input_embeddings()` adds a perturbation `delta` to
what the embedding returns; `delta` gets its gradient from the loss whether or not the embedding trains, so the
same code serves full fine-tuning and LoRA, and every head that takes `input_ids` (classification, token
classification, QA, similarity pairs, multiple choice, seq2seq encoders).

`delta` is normalised and projected per example (L2 over the sequence x hidden, padding masked out), as in FreeLB
(Zhu et al., 2020), so the attack on one example does not depend on the rest of its batch: gradient accumulation
over half batches gives the gradient of the whole batch.

Gradients each method leaves for the optimizer step (all losses scaled for gradient accumulation as `Trainer`
scales them, and backpropagated with `accelerator.backward`, so mixed precision and DDP keep working):

* FGM (Miyato et al., 2017): grad L(x) + grad L(x + delta), delta = epsilon * g / |g|, g = dL/d(embeddings).
* PGD (Madry et al., 2018): grad L(x) + grad L(x + delta_K), where delta_t = proj_epsilon(delta_{t-1} + alpha *
  g_{t-1} / |g_{t-1}|); the K-1 intermediate gradients are taken with respect to delta only.
* FreeLB: (1/K) * sum_t grad L(x + delta_{t-1}), delta_0 random in the ball, delta_t = proj_epsilon(delta_{t-1} +
  alpha * g / |g|); every ascent step's parameter gradient is kept ("free" large-batch training).

The loss `training_step` returns (and Trainer logs as `loss`) is the clean loss for FGM and PGD and the mean
perturbed loss for FreeLB; the mean loss under attack is logged beside it as `adversarial_loss`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from .recipes import RecipeError, check_keys

METHODS = ("fgm", "pgd", "freelb")
ADVERSARIAL_KEYS = {"method", "epsilon", "alpha", "steps", "init_magnitude"}
_TINY = 1e-12
# Per example, over all its tokens. The tiny encoder's token embeddings have norm ~0.6 and the attack puts about half
# of its budget on one token, so 0.1 raises a trained sentiment model's loss from 0.47 to 0.69 and 0.5 to 1.39
# (fine-tuning with 0.5 stopped learning); scale it with your model's embedding norms.
DEFAULT_EPSILON = 0.1


@dataclass(frozen=True)
class AdversarialOptions:
    """A parsed `adversarial:` recipe section (see the module docstring for what each method does)."""

    method: str
    epsilon: float
    alpha: float
    steps: int
    init_magnitude: float


def parse_adversarial_options(raw: dict[str, Any]) -> AdversarialOptions:
    """Validate an `adversarial:` section; raises RecipeError naming the key, its value and what is allowed."""
    check_keys("adversarial", raw, ADVERSARIAL_KEYS)
    method = raw.get("method")
    if method not in METHODS:
        raise RecipeError(f"adversarial.method={method!r} must be one of {', '.join(METHODS)}")
    epsilon = _number(raw, "epsilon", DEFAULT_EPSILON)
    if epsilon < 0:
        raise RecipeError(f"adversarial.epsilon={epsilon} must be >= 0 (the L2 radius of one example's perturbation)")
    if method == "fgm":
        for key in ("alpha", "steps", "init_magnitude"):
            if key in raw:
                raise RecipeError(
                    f"adversarial.{key} does not apply to fgm (one step of size epsilon); use pgd or freelb"
                )
        return AdversarialOptions("fgm", epsilon, alpha=epsilon, steps=1, init_magnitude=0.0)
    steps = raw.get("steps", 3)
    if isinstance(steps, bool) or not isinstance(steps, int | float) or steps != int(steps) or not 1 <= steps <= 20:
        raise RecipeError(f"adversarial.steps={steps!r} must be a whole number of ascent steps from 1 to 20")
    steps = int(steps)
    alpha = _number(raw, "alpha", epsilon / steps if method == "freelb" else 1.5 * epsilon / steps)
    if alpha <= 0:
        raise RecipeError(f"adversarial.alpha={alpha} must be > 0 (the size of one ascent step)")
    if method == "pgd" and "init_magnitude" in raw:
        raise RecipeError("adversarial.init_magnitude applies to freelb only (pgd starts from the clean gradient)")
    init = _number(raw, "init_magnitude", min(alpha, epsilon)) if method == "freelb" else 0.0
    if not 0 <= init <= epsilon:
        raise RecipeError(
            f"adversarial.init_magnitude={init} must be in [0, epsilon={epsilon}] (the norm of FreeLB's random start)"
        )
    return AdversarialOptions(method, epsilon, alpha, steps, init)


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise RecipeError(f"adversarial.{key}={value!r} must be a number")
    return float(value)


# ---------------------------------------------------------------------------------------------------------------
# per-example geometry


def _per_example_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example (dim 0) over all other dims, shaped to broadcast against `x`."""
    norm = x.float().flatten(1).norm(dim=1)
    return norm.view(-1, *([1] * (x.dim() - 1)))


def normalise(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`grad / |grad|` per example over its real tokens; 0 where the gradient is 0 (or not finite, as under an
    overflowing fp16 loss scale, whose step the scaler skips anyway)."""
    grad = torch.nan_to_num(grad.float() * mask, nan=0.0, posinf=0.0, neginf=0.0)
    return grad / (_per_example_norm(grad) + _TINY)


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Shrink each example's delta onto the L2 ball of radius epsilon (unchanged when already inside)."""
    norm = _per_example_norm(delta)
    return delta * torch.clamp(epsilon / (norm + _TINY), max=1.0)


def random_start(like: torch.Tensor, mask: torch.Tensor, magnitude: float) -> torch.Tensor:
    """A uniformly random direction over the real tokens, with L2 norm `magnitude` per example."""
    noise = (torch.rand(like.shape, device=like.device) * 2 - 1) * mask
    return noise / (_per_example_norm(noise) + _TINY) * magnitude


def _grad_of(delta: torch.Tensor) -> torch.Tensor:
    """The gradient a backward pass left on a perturbation; zeros where the loss did not depend on it."""
    return delta.grad if delta.grad is not None else torch.zeros_like(delta)


# ---------------------------------------------------------------------------------------------------------------
# the hook


class EmbeddingPerturbation:
    """Adds a perturbation to the output of an embedding module, one per call within a forward pass.

    A forward may call the embedding more than once (sentence pairs embed both sentences), so perturbations are
    kept per call, in call order. `start(deltas)` arms the hook for one forward: with `deltas=None` it adds zeros,
    which only serve to capture the gradient with respect to the embedding output. After the forward,
    `self.added[i]` are the leaf tensors that were added (their `.grad` is filled by a backward pass) and
    `self.masks[i]` the real-token masks (shape (..., seq, 1)).
    """

    def __init__(self, embedding: nn.Module, pad_token_id: int | None):
        self.pad_token_id = pad_token_id
        self.deltas: list[torch.Tensor] | None = None
        self.random_magnitude = 0.0
        self.added: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.active = False
        self._handle = embedding.register_forward_hook(self._hook)

    def start(self, deltas: list[torch.Tensor] | None = None, random_magnitude: float = 0.0) -> None:
        """Arm for one forward: add `deltas`, or (None) a random start of norm `random_magnitude` (0: zeros)."""
        self.deltas, self.random_magnitude = deltas, random_magnitude
        self.added, self.masks, self.active = [], [], True

    def stop(self) -> None:
        self.active = False

    def remove(self) -> None:
        self._handle.remove()

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not self.active or not torch.is_grad_enabled():
            return None
        call = len(self.added)
        ids = args[0] if args else None
        if ids is not None and self.pad_token_id is not None and ids.shape == output.shape[:-1]:
            mask = (ids != self.pad_token_id).unsqueeze(-1).to(output.dtype)
        else:
            mask = torch.ones(*output.shape[:-1], 1, dtype=output.dtype, device=output.device)
        if self.deltas is None:
            if self.random_magnitude > 0:
                delta = random_start(output, mask, self.random_magnitude).to(output.dtype)
            else:
                delta = torch.zeros_like(output)
        else:
            if call >= len(self.deltas) or self.deltas[call].shape != output.shape:
                raise RuntimeError(
                    "the embedding was called with other shapes than in the clean pass; adversarial training needs "
                    "the same inputs in every pass of one step"
                )
            delta = self.deltas[call].detach().to(output.dtype)
        delta.requires_grad_(True)
        self.added.append(delta)
        self.masks.append(mask)
        return output + delta * mask


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
        """`compute_loss`, scaled for gradient accumulation exactly as `Trainer.training_step` scales it."""
        with self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
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
