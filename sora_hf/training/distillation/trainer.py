"""`DistillationTrainer`: the Trainer extension that mixes the hard loss with the teacher's signals."""

from __future__ import annotations

import inspect
from dataclasses import asdict
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from ...validation import RecipeError
from .config import LABEL_KEYS, DistillationOptions
from .losses import hidden_state_loss, logit_distillation_loss, uniform_layer_map

# ---- the Trainer ------------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class DistillationTrainer(Trainer):
    """A `Trainer` whose training loss mixes the hard-label loss with the teacher's soft targets and hidden states.

    Evaluation (`eval_loss`) stays the plain task loss, so it compares with a run without a teacher. Each loss is a
    mean over its micro-batch and `loss_is_scaled_for_ga = False`, so with gradient accumulation the Trainer averages
    the micro-batches: k accumulated batches of n give the gradient of one batch of k * n.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, teacher: nn.Module, distillation: DistillationOptions, **kwargs):
        super().__init__(*args, **kwargs)
        self.distillation = distillation
        self.teacher = teacher.to(self.args.device).eval()
        self.teacher.requires_grad_(False)
        student_config = _unwrap(self.model).config
        teacher_config = teacher.config
        self.layer_pairs: tuple[tuple[int, int], ...] = ()
        self.projections = nn.ModuleList()
        if distillation.hidden_weight > 0:
            self.layer_pairs = self._resolve_layer_map(student_config, teacher_config)
            width, teacher_width = student_config.hidden_size, teacher_config.hidden_size
            self.projections = nn.ModuleList(
                nn.Identity() if width == teacher_width else nn.Linear(width, teacher_width) for _ in self.layer_pairs
            ).to(self.args.device)
        self._teacher_parameters = inspect.signature(teacher.forward).parameters
        self._component_sums: dict[str, float] = {}
        self._component_count = 0

    def _resolve_layer_map(self, student_config, teacher_config) -> tuple[tuple[int, int], ...]:
        student_depth, teacher_depth = student_config.num_hidden_layers, teacher_config.num_hidden_layers
        if self.distillation.layer_map == "uniform":
            return uniform_layer_map(student_depth, teacher_depth)
        for s, t in self.distillation.layer_map:
            if s > student_depth or t > teacher_depth:
                raise RecipeError(
                    f"distillation.layer_map pair [{s}, {t}] is out of range: the student has hidden states 0..."
                    f"{student_depth}, the teacher 0..{teacher_depth} (0 = embeddings, k = output of layer k)"
                )
        return self.distillation.layer_map

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, plus the width projections (trained with it, never saved with the student)."""
        optimizer = super().create_optimizer(model)
        extra = [p for p in self.projections.parameters() if p.requires_grad]
        if extra and not any(p is extra[0] for group in optimizer.param_groups for p in group["params"]):
            optimizer.add_param_group({"params": extra, "weight_decay": 0.0})
        return optimizer

    def teacher_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The batch without targets, restricted to what the teacher's forward accepts."""
        takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in self._teacher_parameters.values())
        return {
            k: v for k, v in inputs.items() if k not in LABEL_KEYS and (takes_any or k in self._teacher_parameters)
        }

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        options = self.distillation
        use_hidden = options.hidden_weight > 0
        student_inputs = {**inputs, "output_hidden_states": True} if use_hidden else inputs
        outputs = model(**student_inputs)
        hard = outputs.get("loss") if isinstance(outputs, dict) else outputs[0]
        if hard is None:
            raise ValueError(f"the student returned no loss: its batch needs targets ({', '.join(LABEL_KEYS)})")
        loss = hard
        components = {"hard_loss": hard.detach()}
        if options.alpha > 0 or use_hidden:
            teacher_inputs = self.teacher_inputs(inputs)
            if use_hidden:
                teacher_inputs["output_hidden_states"] = True
            with torch.no_grad():
                teacher_outputs = self.teacher(**teacher_inputs)
            loss = (1.0 - options.alpha) * hard
            if options.alpha > 0:
                problem_type = getattr(_unwrap(model).config, "problem_type", None)
                soft = logit_distillation_loss(outputs, teacher_outputs, inputs, options.temperature, problem_type)
                loss = loss + options.alpha * soft
                components["kd_loss"] = soft.detach()
            if use_hidden:
                if getattr(teacher_outputs, "hidden_states", None) is None:
                    raise ValueError(
                        f"the teacher ({type(self.teacher).__name__}) returned no hidden states; set "
                        "distillation.hidden_weight to 0 to distil its logits only"
                    )
                hidden = hidden_state_loss(
                    outputs.hidden_states,
                    teacher_outputs.hidden_states,
                    self.layer_pairs,
                    self.projections,
                    inputs.get("attention_mask"),
                )
                loss = loss + options.hidden_weight * hidden
                components["hidden_loss"] = hidden.detach()
        for key, value in components.items():
            self._component_sums[key] = self._component_sums.get(key, 0.0) + float(value)
        self._component_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training logs also carry the mean of each loss term since the last log (`distill_hard_loss`, ...)."""
        if "loss" in logs and self._component_count:
            for key, total in self._component_sums.items():
                logs[f"distill_{key}"] = round(total / self._component_count, 4)
            self._component_sums, self._component_count = {}, 0
        super().log(logs, start_time)

    def summary(self) -> dict[str, Any]:
        """What was distilled from what, for `metrics.json`."""
        options = asdict(self.distillation)
        options["layer_map"] = [list(p) for p in self.layer_pairs] if self.layer_pairs else options["layer_map"]
        if options["student_layers"] is not None:
            options["student_layers"] = list(options["student_layers"])
        options["teacher_parameters"] = sum(p.numel() for p in self.teacher.parameters())
        options["projection_parameters"] = sum(p.numel() for p in self.projections.parameters())
        return options
