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

Layout: `config.py` (options), `student.py`, `teacher.py` and `losses.py` (mechanism), `trainer.py` (the Trainer).
"""

from ..._lazy import lazy_exports

# the public names of each module, imported on first use (so that `config` loads without torch)
__getattr__, __all__ = lazy_exports(
    __name__,
    config=("DISTILLATION_KEYS", "DistillationOptions", "LABEL_KEYS", "parse_distillation_options"),
    trainer=("DistillationTrainer",),
    losses=(
        "binary_soft_target_loss",
        "hidden_state_loss",
        "logit_distillation_loss",
        "soft_target_loss",
        "uniform_layer_map",
    ),
    teacher=("check_same_tokenizer", "load_teacher"),
    student=("keep_layers", "prepare_student"),
)
