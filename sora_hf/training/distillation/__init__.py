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

from .._lazy import lazy_exports

# name -> the module that defines it; imported on first use, so that `config` (the recipe's options) loads without
# torch when the recipe is validated
_EXPORTS = {
    "DISTILLATION_KEYS": "config",
    "DistillationOptions": "config",
    "DistillationTrainer": "trainer",
    "LABEL_KEYS": "config",
    "binary_soft_target_loss": "losses",
    "check_same_tokenizer": "teacher",
    "hidden_state_loss": "losses",
    "keep_layers": "student",
    "load_teacher": "teacher",
    "logit_distillation_loss": "losses",
    "parse_distillation_options": "config",
    "prepare_student": "student",
    "soft_target_loss": "losses",
    "uniform_layer_map": "losses",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
