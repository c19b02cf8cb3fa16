"""Knowledge distillation: a fine-tuned teacher (a larger Sora, or any transformers model with the same tokenizer)
teaches a smaller Sora student, from the recipe's `distillation:` section.

The recipe's `checkpoint` is the student, as in any fine-tuning run (LoRA or full). `student_layers: [0, 2]` keeps
only those layers of it (DistilBERT-style initialisation from a deeper pre-trained encoder), so the student can
start from the very encoder the teacher was fine-tuned from. The loss mixes three terms:

    loss = (1 - alpha) * hard + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + hidden_weight * MSE

`hard` is the student's own task loss on the labels; the KL term is taken per example (sequence classification),
per labelled token (token classification, causal LM) or over start and end positions (extractive QA); the MSE term
compares the hidden states of mapped layers (`layer_map`), through a learned linear projection when the widths
differ. The projections live in the Trainer, not in the student, so the saved student is a plain checkpoint.
Attention maps are not distilled: both models may keep their sdpa/flash attention.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from .recipes import RecipeError, check_keys

DISTILLATION_KEYS = {"teacher", "temperature", "alpha", "hidden_weight", "layer_map", "student_layers"}
# task types whose outputs have logits to distil (seq2seq and sentence embeddings have no recipe path yet)
DISTILLABLE_TASKS = ("classification", "token_classification", "question_answering", "causal_lm")
LABEL_KEYS = ("labels", "start_positions", "end_positions")


@dataclass(frozen=True)
class DistillationOptions:
    """The recipe's `distillation:` section, validated."""

    teacher: str  # a folder (or Hub id) with the fine-tuned teacher and its tokenizer
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft-target term; 1 - alpha weighs the hard-label loss
    hidden_weight: float = 0.0  # weight of the hidden-state MSE; 0 switches it (and output_hidden_states) off
    layer_map: str | tuple[tuple[int, int], ...] = "uniform"  # or ((student_index, teacher_index), ...)
    student_layers: tuple[int, ...] | None = None  # keep only these layers (0-based) of the student checkpoint


_RANGES = {
    "temperature": ("> 0", lambda v: v > 0),
    "alpha": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "hidden_weight": (">= 0", lambda v: v >= 0),
}


def parse_distillation_options(raw: dict[str, Any]) -> DistillationOptions:
    """Validate the recipe's `distillation:` mapping; every error names the key, the value and what is allowed."""
    check_keys("distillation", raw, DISTILLATION_KEYS)
    teacher = raw.get("teacher")
    if not isinstance(teacher, str) or not teacher.strip():
        raise RecipeError(
            f"distillation.teacher={teacher!r} must name the teacher: a folder (or Hub id) with a fine-tuned model "
            "and its tokenizer"
        )
    numbers = {}
    for key, (allowed, within) in _RANGES.items():
        value = raw.get(key, DistillationOptions.__dataclass_fields__[key].default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"distillation.{key}={value!r} must be a number")
        if not math.isfinite(value) or not within(value):
            raise RecipeError(f"distillation.{key}={value!r} must be {allowed}")
        numbers[key] = float(value)
    return DistillationOptions(
        teacher=teacher,
        layer_map=_parse_layer_map(raw.get("layer_map", "uniform")),
        student_layers=_parse_student_layers(raw.get("student_layers")),
        **numbers,
    )


def _parse_layer_map(value: Any) -> str | tuple[tuple[int, int], ...]:
    if value == "uniform":
        return value
    problem = (
        f"distillation.layer_map={value!r} must be 'uniform' or a list of [student_layer, teacher_layer] pairs of "
        "hidden-state indices (0 = embeddings, k = output of layer k), e.g. [[1, 2], [2, 4]]"
    )
    if not isinstance(value, list | tuple) or not value:
        raise RecipeError(problem)
    pairs = []
    for pair in value:
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in pair)
        ):
            raise RecipeError(problem)
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _parse_student_layers(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)
        or list(value) != sorted(set(value))
    ):
        raise RecipeError(
            f"distillation.student_layers={value!r} must be a non-empty, strictly increasing list of 0-based layer "
            "indices of the student checkpoint, e.g. [0, 2]"
        )
    return tuple(value)


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


def prepare_student(model: nn.Module, raw_options: dict[str, Any]) -> nn.Module:
    """The recipe's checkpoint as the student: shrunk to `student_layers` when the recipe asks for it."""
    options = parse_distillation_options(raw_options)
    if options.student_layers is None:
        return model
    return keep_layers(model, options.student_layers)


# ---- the teacher ------------------------------------------------------------------------------------------------


def check_same_tokenizer(teacher_tokenizer, student_tokenizer, teacher_name: str, student_name: str) -> None:
    """Distillation compares outputs position by position: both models must read the very same ids."""
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        differing = sorted(set(teacher_vocab.items()) ^ set(student_vocab.items()), key=lambda kv: kv[1])[:1]
        example = ""
        if differing:
            token = differing[0][0]
            example = f"; e.g. token {token!r} is id {teacher_vocab.get(token)} vs {student_vocab.get(token)}"
        raise RecipeError(
            f"the teacher {teacher_name} and the student {student_name} have different tokenizers "
            f"({len(teacher_vocab)} vs {len(student_vocab)} tokens{example}); distillation needs the same tokenizer"
        )
    for name in ("pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
        teacher_id, student_id = getattr(teacher_tokenizer, name, None), getattr(student_tokenizer, name, None)
        if teacher_id != student_id:
            raise RecipeError(
                f"the teacher {teacher_name} and the student {student_name} have different tokenizers: "
                f"{name} is {teacher_id} vs {student_id}; distillation needs the same tokenizer"
            )


def _label_names(config) -> list[str]:
    return [config.id2label[i] for i in sorted(config.id2label)]


def load_teacher(options: DistillationOptions, info, student: nn.Module, tokenizer) -> nn.Module:
    """The teacher under the task's Auto class, frozen in eval mode; refuses one that cannot teach this student.

    Checked before anything trains: the task type can be distilled, the teacher loads with every weight of its head
    (a pre-trained but not fine-tuned teacher would teach noise), its tokenizer equals the student's and its label
    set equals the task's.
    """
    from transformers import AutoTokenizer

    from .checkpoints import load_checked
    from .finetuning import AUTO_CLASSES
    from .tokenizer import check_tokenizer_fits

    if info.task_type not in DISTILLABLE_TASKS:
        raise RecipeError(
            f"distillation works for {', '.join(DISTILLABLE_TASKS)}; the task {info.name!r} is {info.task_type}"
        )
    auto_class = AUTO_CLASSES[info.task_type]
    student_name = str(getattr(tokenizer, "name_or_path", "") or "the recipe's checkpoint")
    try:  # a mistyped folder is "no such folder" (never a Hub lookup); a head the teacher lacks is refused
        teacher = load_checked(auto_class, options.teacher, heads="complete", expected_model_type=None)
    except (OSError, ValueError) as error:
        raise RecipeError(
            f"distillation.teacher={options.teacher!r} does not load as a {info.task_type} teacher "
            f"({auto_class.__name__}): {error}; a teacher must be fine-tuned for the {info.task_type} task"
        ) from None
    try:
        teacher_tokenizer = AutoTokenizer.from_pretrained(options.teacher)
    except (OSError, ValueError) as error:
        raise RecipeError(
            f"distillation.teacher={options.teacher!r} holds no loadable tokenizer ({error}); save the teacher's "
            "tokenizer beside it so that it can be checked against the student's"
        ) from error
    check_same_tokenizer(teacher_tokenizer, tokenizer, options.teacher, student_name)
    try:
        check_tokenizer_fits(tokenizer, teacher.config)
    except ValueError as error:
        raise RecipeError(f"distillation.teacher={options.teacher!r}: {error}") from error

    student_config = student.config
    if info.task_type in ("classification", "token_classification"):
        expected = _label_names(student_config)
        found = _label_names(teacher.config)
        if found != expected:
            raise RecipeError(
                f"the teacher {options.teacher} predicts the labels {found}, the task {info.name!r} has {expected}: "
                "distillation needs the same label set in the same order"
            )
        if info.task_type == "classification":
            teacher_problem = teacher.config.problem_type or "single_label_classification"
            student_problem = student_config.problem_type or "single_label_classification"
            if teacher_problem != student_problem:
                raise RecipeError(
                    f"the teacher {options.teacher} is a {teacher_problem} model, the task {info.name!r} is "
                    f"{student_problem}"
                )
    dtype = next(student.parameters()).dtype
    teacher = teacher.to(dtype=dtype).eval()
    teacher.requires_grad_(False)
    return teacher


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
