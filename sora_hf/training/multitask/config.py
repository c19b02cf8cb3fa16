"""The multi-task recipe's choices of task sampling and loss weighting (imports no torch): the recipe parser
(`sora_hf.recipes.multitask`) checks them, the sampler and the model use them."""

from __future__ import annotations

SAMPLING = ("proportional", "temperature", "uniform")
LOSS_WEIGHTING = ("fixed", "uncertainty")

__all__ = ["LOSS_WEIGHTING", "SAMPLING"]
