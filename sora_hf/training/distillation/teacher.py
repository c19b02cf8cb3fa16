"""The teacher: loaded checked, with the same tokenizer and labels as the student."""

from __future__ import annotations

from torch import nn

from ...validation import RecipeError
from .config import DistillationOptions

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

    from ...folders.checkpoints import load_checked
    from ...tasks import get_task, task_types
    from ...tokenizer import check_tokenizer_fits

    task = get_task(info.task_type)
    if not task.distillable:  # seq2seq and sentence embeddings have no logits to distil (no recipe path yet)
        distillable = task_types(lambda t: t.distillable)
        raise RecipeError(
            f"distillation works for {', '.join(distillable)}; the task {info.name!r} is {info.task_type}"
        )
    auto_class = task.auto_class
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
    if task.has_label_names:
        expected = _label_names(student_config)
        found = _label_names(teacher.config)
        if found != expected:
            raise RecipeError(
                f"the teacher {options.teacher} predicts the labels {found}, the task {info.name!r} has {expected}: "
                "distillation needs the same label set in the same order"
            )
        if task.has_problem_type:
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
