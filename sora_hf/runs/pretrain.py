"""`run_pretraining(recipe)`: pre-train a Sora model from scratch, end to end.

Checks everything it can before the first step (recipe, corpus, output folder, tokenizer vs model, a resumed
checkpoint's shapes), trains with `transformers.Trainer`, evaluates on the held-out split, and leaves a folder that
`AutoModel.from_pretrained` loads, with `metrics.json`, `loss_curve.png`, the recipe and a model card. The steps
live in `sora_hf.pretraining`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import Trainer, set_seed

from ..configuration_sora import SoraConfig
from ..distributed import is_main_process
from ..objectives import evaluate_pretraining
from ..outputs import OutputFolder, check_output_folder, last_complete_checkpoint
from ..pretraining import (
    _count_tokens,
    build_config,
    load_corpus,
    prepare_tokenizer,
    training_arguments,
)
from ..recipes import PretrainRecipe, RecipeError
from ..reporting import plot_loss_curve, write_metrics, write_model_card
from .common import save_recipe, train_and_measure

logger = logging.getLogger(__name__)


def pretraining_inputs(recipe: PretrainRecipe) -> list[str]:
    """The local files and folders a pre-training run reads (which its output folder must not touch)."""
    inputs = list(recipe.data.files) if recipe.data.source == "files" else []
    if not recipe.tokenizer.train and recipe.tokenizer.path:
        inputs.append(recipe.tokenizer.path)
    if recipe.source_path:
        inputs.append(recipe.source_path)
    return inputs


def run_pretraining(
    recipe: PretrainRecipe, *, overwrite: bool = False, resume: bool = False, callbacks: list | None = None
) -> dict[str, Any]:
    """Train `recipe` end to end; returns the metrics written to `<output_dir>/metrics.json`."""
    from ..objectives import prepare_objective, tokenizer_template_for

    target = check_output_folder(
        recipe.output_dir, inputs=pretraining_inputs(recipe), overwrite=overwrite, resume=resume, can_resume=True
    )
    resume_from = _last_checkpoint(target) if resume else None
    set_seed(recipe.seed)
    train_texts, eval_texts = load_corpus(recipe)
    tokenizer = prepare_tokenizer(recipe, train_texts, tokenizer_template_for(recipe.objective))
    config = build_config(recipe, tokenizer)
    if resume_from is not None:
        check_resumable(config, resume_from)
    prepared = prepare_objective(
        recipe.objective,
        train_texts,
        eval_texts,
        tokenizer,
        recipe.max_length,
        seed=recipe.seed,
        **recipe.objective_options,
    )
    model = prepared.model_class(config)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("%s: %s with %.2fM parameters", recipe.name, type(model).__name__, n_params / 1e6)

    with OutputFolder(
        target, overwrite=overwrite, resume=resume, in_place=True, main_process=is_main_process()
    ) as out:
        output_dir = out.path
        args = training_arguments(recipe, output_dir)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=prepared.train_dataset,
            eval_dataset=prepared.eval_dataset,
            data_collator=prepared.collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        training = train_and_measure(trainer, recipe.name, resume_from_checkpoint=resume_from)
        trainer.save_model(str(output_dir))  # rank-aware: only the main process writes
        main_process = trainer.is_world_process_zero()
        if main_process:
            tokenizer.save_pretrained(str(output_dir))

        # every process evaluates (FSDP / ZeRO-3 forwards are collective); only the main one writes
        eval_collator = getattr(prepared, "eval_collator", None) or prepared.collator
        metrics = evaluate_pretraining(
            trainer.model, recipe.objective, prepared.eval_dataset, eval_collator, args.per_device_eval_batch_size
        )
        train_tokens = _count_tokens(prepared.train_dataset, args, trainer.state.global_step)
        metrics.update(
            recipe=recipe.name,
            objective=recipe.objective,
            model_class=type(model).__name__,
            parameters=n_params,
            **training,
            train_tokens=train_tokens,
            train_tokens_per_second=round(train_tokens / max(training["train_seconds"], 1e-9), 1),
            world_size=args.world_size,
        )
        if not main_process:
            return metrics
        write_metrics(output_dir, metrics)
        plot_loss_curve(
            trainer.state.log_history, output_dir / "loss_curve.png", title=f"{recipe.name} ({recipe.objective})"
        )
        recipe_text = save_recipe(recipe, output_dir, fallback={"name": recipe.name, "objective": recipe.objective})
        write_model_card(
            output_dir,
            title=f"Sora {recipe.name}",
            summary=recipe.description
            or f"A Sora model pre-trained from scratch with the {recipe.objective} objective.",
            metrics=metrics,
            recipe_text=recipe_text,
            pipeline_tag={"clm": "text-generation", "denoising": "text2text-generation"}.get(
                recipe.objective, "fill-mask"
            ),
            tags=[recipe.objective],
        )
        out.commit()
    return metrics


def _last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint to resume from (half-written ones are skipped, with a warning); None when
    the run has not started yet (no output folder)."""
    if not output_dir.is_dir():
        return None
    last = last_complete_checkpoint(output_dir)
    if last is None:
        raise RecipeError(f"--resume: {output_dir} holds no complete checkpoint-* folder to resume from")
    return str(last)


ARCHITECTURE_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "is_decoder",
    "is_encoder_decoder",
    "num_decoder_layers",
)


def check_resumable(config: SoraConfig, checkpoint: str) -> None:
    """`--resume` continues the same model: refuse a checkpoint whose shapes differ from the recipe's."""
    from ..checkpoints import read_config_file

    saved = read_config_file(checkpoint)
    ours = config.to_dict()
    changed = [k for k in ARCHITECTURE_KEYS if k in saved and k in ours and saved[k] != ours[k]]
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved[k]!r}, recipe {ours[k]!r}" for k in changed)
        raise RecipeError(
            f"--resume: {checkpoint} was trained with another model ({details}); resume with the recipe that "
            "started the run, or pass --overwrite to start a new one"
        )
