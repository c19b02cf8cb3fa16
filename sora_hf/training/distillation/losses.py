"""The distillation losses: soft targets at a temperature, and hidden-state matching over a layer map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# ---- the losses -------------------------------------------------------------------------------------------------


def soft_target_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`T^2 * KL(softmax(teacher / T) || softmax(student / T))` over the last dimension, averaged over the rows
    (every leading position, or those where `mask` is true). `T^2` keeps the gradient scale independent of T
    (Hinton et al., 2015)."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_row = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)
    if mask is not None:
        per_row = per_row[mask.bool()]
    if per_row.numel() == 0:
        return student_logits.sum() * 0.0
    return per_row.mean() * temperature**2


def binary_soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Multi-label counterpart: the Bernoulli KL per label, `T^2`-scaled, averaged over examples and labels."""
    teacher_prob = torch.sigmoid(teacher_logits.float() / temperature)
    student_scaled = student_logits.float() / temperature
    # KL(p || q) = BCE(q; p) - H(p) with q = sigmoid(student): the entropy term keeps a perfect match at zero
    cross = F.binary_cross_entropy_with_logits(student_scaled, teacher_prob, reduction="mean")
    entropy = F.binary_cross_entropy_with_logits(teacher_logits.float() / temperature, teacher_prob, reduction="mean")
    return (cross - entropy) * temperature**2


def logit_distillation_loss(
    student_outputs, teacher_outputs, inputs: dict[str, torch.Tensor], temperature: float, problem_type: str | None
) -> torch.Tensor:
    """The soft-target term for the task these outputs belong to, read from their shape.

    Extractive QA: start and end distributions over the real tokens, averaged. Logits of shape (batch, seq, classes)
    (token classification, causal LM): per token where `labels != -100` (else where the attention mask is set).
    (batch, classes): per example; multi-label uses the Bernoulli KL, regression the MSE between the predictions.
    """
    if getattr(student_outputs, "start_logits", None) is not None:
        mask = inputs.get("attention_mask")
        losses = []
        for key in ("start_logits", "end_logits"):
            student, teacher = student_outputs[key], teacher_outputs[key].to(student_outputs[key].dtype)
            if mask is not None:
                # padding positions are no answer for either model: give them no probability at all
                floor = torch.finfo(torch.float32).min
                student = student.float().masked_fill(mask == 0, floor)
                teacher = teacher.float().masked_fill(mask == 0, floor)
            losses.append(soft_target_loss(student, teacher, temperature))
        return (losses[0] + losses[1]) / 2
    student_logits, teacher_logits = student_outputs.logits, teacher_outputs.logits
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"the student's logits have shape {tuple(student_logits.shape)}, the teacher's "
            f"{tuple(teacher_logits.shape)}: distillation needs the same outputs"
        )
    if student_logits.dim() == 3:
        labels = inputs.get("labels")
        if labels is not None and labels.shape == student_logits.shape[:2]:
            mask = labels != -100
        else:
            mask = inputs.get("attention_mask", torch.ones(student_logits.shape[:2], device=student_logits.device))
        return soft_target_loss(student_logits, teacher_logits, temperature, mask)
    if problem_type == "regression":
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    if problem_type == "multi_label_classification":
        return binary_soft_target_loss(student_logits, teacher_logits, temperature)
    return soft_target_loss(student_logits, teacher_logits, temperature)


def uniform_layer_map(student_depth: int, teacher_depth: int) -> tuple[tuple[int, int], ...]:
    """Student layer k (1-based hidden-state index) learns from teacher layer `k * teacher_depth // student_depth`:
    2 of 4 layers -> ((1, 2), (2, 4)); the last layers always meet. Embeddings (index 0) are not paired."""
    return tuple((k, k * teacher_depth // student_depth) for k in range(1, student_depth + 1))


def hidden_state_loss(
    student_states: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    pairs: Sequence[tuple[int, int]],
    projections: nn.ModuleList,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over `pairs` of the MSE between projected student states and teacher states, over real tokens only."""
    losses = []
    for (s, t), projection in zip(pairs, projections, strict=True):
        student = projection(student_states[s].float())
        teacher = teacher_states[t].float()
        squared = (student - teacher).pow(2).mean(-1)
        if attention_mask is not None:
            keep = attention_mask.bool()
            squared = squared[keep]
        losses.append(squared.mean())
    return torch.stack(losses).mean()
