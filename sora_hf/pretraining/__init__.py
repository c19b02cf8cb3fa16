"""Pre-training Sora from scratch, split by job: `data` (each objective's tokenisation), `collators` (masking,
infilling, causal LM; corruption frozen for held-out sets), `objectives` (the registry: an objective's model class,
data and collator for `transformers.Trainer`) and `evaluation` (held-out metrics). `sora_hf.runs.run_pretraining`
runs them, with the steps around them (corpus, tokenizer, config, Trainer arguments)."""

from .collators import DenoisingCollator, MaskedLMCollator, causal_lm_collator, freeze_corruption
from .data import pack_for_causal_lm, tokenize_for_denoising, tokenize_for_encoder
from .evaluation import evaluate_pretraining
from .objectives import (
    MAX_SENSIBLE_LENGTH,
    MIN_LENGTH,
    OBJECTIVES,
    PreparedObjective,
    prepare_objective,
    tokenizer_template_for,
)

__all__ = [
    "MAX_SENSIBLE_LENGTH",
    "MIN_LENGTH",
    "OBJECTIVES",
    "DenoisingCollator",
    "MaskedLMCollator",
    "PreparedObjective",
    "causal_lm_collator",
    "evaluate_pretraining",
    "freeze_corruption",
    "pack_for_causal_lm",
    "prepare_objective",
    "tokenize_for_denoising",
    "tokenize_for_encoder",
    "tokenizer_template_for",
]
