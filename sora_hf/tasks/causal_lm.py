"""Causal language modelling on the user's text: packed blocks, scored by held-out perplexity and accuracy."""

from __future__ import annotations

from typing import Any

from ..validation.errors import RecipeError
from .base import Features, Task


class CausalLMTask(Task):
    name = "causal_lm"
    auto_class_name = "AutoModelForCausalLM"
    pipeline_tag = "text-generation"
    perturbed_columns = ()  # perplexity on packed text: robustness evaluation does not apply
    distillable = True

    def check_config(self, config, checkpoint) -> None:
        if not config.is_decoder:
            raise RecipeError(
                f"checkpoint {checkpoint} ({config.architectures}) is not a causal decoder; causal_lm fine-tuning "
                "needs one (pre-trained with the clm objective)"
            )

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        from ..pretraining.data import pack_for_causal_lm

        return Features(pack_for_causal_lm(dataset, tokenizer, recipe.max_length))

    def collator(self, tokenizer, model):
        from ..pretraining.collators import causal_lm_collator

        return causal_lm_collator(tokenizer)

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        """The held-out metrics of the packed test blocks (not per-example predictions)."""
        from ..pretraining.evaluation import evaluate_pretraining

        return evaluate_pretraining(model, "clm", features.dataset, collator, batch_size)

    def score(self, info, test, predictions) -> dict[str, Any]:
        # `predictions` are already the held-out metrics of the packed test blocks
        return {
            "test_perplexity": predictions["eval_perplexity"],
            "test_next_token_accuracy": predictions["eval_next_token_accuracy"],
            "test_loss": predictions["eval_loss"],
        }

    def prediction_rows(self, info, test, predictions) -> list[dict[str, Any]]:
        return [{"split": "test", "texts": len(test), **predictions}]


TASK = CausalLMTask()
