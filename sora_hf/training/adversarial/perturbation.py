"""The mechanism: per-example geometry of embedding perturbations and the hook that adds them."""

from __future__ import annotations

import torch
from torch import nn

from .config import _TINY

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
