"""The student: a copy of the teacher's encoder with chosen layers kept (DistilBERT's initialisation)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from ...validation import RecipeError
from .config import DistillationOptions

# ---- the student ------------------------------------------------------------------------------------------------


def keep_layers(model: nn.Module, layers: Sequence[int]) -> nn.Module:
    """A copy of a Sora model with only `layers` (0-based, in order) of its stack; every other tensor is copied.

    This is DistilBERT's initialisation (every other layer of the teacher's pre-trained encoder): the student starts
    from representations that already work instead of from random weights.
    """
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, model)
    if not isinstance(getattr(base, "layers", None), nn.ModuleList):
        raise RecipeError(
            f"distillation.student_layers needs a Sora encoder or decoder with a `layers` stack; "
            f"{type(model).__name__} has none"
        )
    depth = len(base.layers)
    bad = [i for i in layers if i >= depth]
    if bad:
        raise RecipeError(
            f"distillation.student_layers={list(layers)} names layer(s) {bad}, but the checkpoint has {depth} layers "
            f"(indices 0..{depth - 1})"
        )
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(layers)
    config.layer_types = [config.layer_types[i] for i in layers]  # a kept layer keeps its attention type
    if getattr(config, "num_decoder_layers", None) == depth:  # defaulted from the depth; no decoder to keep
        config.num_decoder_layers = len(layers)
    student = type(model)(config).to(dtype=next(model.parameters()).dtype)
    stack = f"{prefix}.layers." if base is not model else "layers."
    position = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith(stack):
            index, rest = key[len(stack) :].split(".", 1)
            if int(index) in position:
                state[f"{stack}{position[int(index)]}.{rest}"] = value
        else:
            state[key] = value
    student.load_state_dict(state, strict=True)
    student.train(model.training)
    return student


def prepare_student(model: nn.Module, options: DistillationOptions) -> nn.Module:
    """The recipe's checkpoint as the student: shrunk to `student_layers` when the recipe asks for it."""
    if options.student_layers is None:
        return model
    return keep_layers(model, options.student_layers)
