"""`run_finetuning(recipe)`: fine-tune a pre-trained Sora on a task (LoRA or full), end to end.

Loads the task (an embedded real task or the user's files), checks that checkpoint, tokenizer and labels fit, trains
with `transformers.Trainer` (or the adversarial / distillation extension the recipe switches on), scores the test
split with the task type's metrics, and writes the model (for LoRA: the adapter in `adapter/` and the merged plain
Sora checkpoint at the top), the tokenizer, `metrics.json`, `predictions.jsonl`, a loss curve, the task's reports and
a model card. The steps live in `finetune_steps.py` and `sora_hf.tasks`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..folders.checkpoints import resolve_checkpoint
from ..folders.outputs import OutputFolder, check_output_folder, disk_space_errors
from ..recipes import FinetuneRecipe
from ..tasks import Task, get_task
from ..tokenizer import load_tokenizer
from ..training.lora import apply_lora, count_parameters
from .common import check_class_count, train_and_measure, write_run
from .finetune_steps import (
    build_features,
    evaluates_during_training,
    load_model,
    load_task,
    make_trainer,
    save_finetuned,
    training_arguments,
    training_callbacks,
)

logger = logging.getLogger(__name__)


def finetuning_inputs(recipe: FinetuneRecipe) -> list[str | None]:
    """The local files and folders a fine-tuning run reads (which its output folder must not touch)."""
    data = recipe.data
    teacher = recipe.distillation.teacher if recipe.distillation else None
    return [recipe.checkpoint, data.train_file, data.test_file, data.validation_file, teacher, recipe.source_path]


def run_finetuning(
    recipe: FinetuneRecipe, *, overwrite: bool = False, callbacks: list | None = None
) -> dict[str, Any]:
    """Fine-tune, evaluate and save; returns the metrics written to `<output_dir>/metrics.json`.

    A full disk is one line, `no space left on <output_dir>`; the run is written beside the target and swapped in
    at the end, so a failed one leaves the target as it was (or absent)."""
    target = check_output_folder(recipe.output_dir, inputs=finetuning_inputs(recipe), overwrite=overwrite)
    resolve_checkpoint(recipe.checkpoint)  # a mistyped folder stops here, before the data is read
    with disk_space_errors(target):
        return _finetune(recipe, target, overwrite, callbacks)


@dataclass
class FinetuneInputs:
    """What the training step starts from: the task (its type's object, not its name), the data and the model."""

    info: Any
    task: Task
    dataset: Any
    tokenizer: Any
    model: Any
    train_features: Any
    test_features: Any
    validation_features: Any  # None unless the Trainer evaluates during training; the test split waits for the end
    parameters: dict[str, int]


def _finetune(recipe: FinetuneRecipe, target: Path, overwrite: bool, callbacks: list | None) -> dict[str, Any]:
    inputs = _prepare(recipe)
    with OutputFolder(target, overwrite=overwrite) as out:
        output_dir = out.path
        args = training_arguments(recipe, output_dir, inputs.info.task_type)
        collator = inputs.task.collator(inputs.tokenizer, inputs.model)
        trainer = _trainer(recipe, inputs, args, collator, callbacks)
        training = _train(trainer, recipe, inputs, args, collator)
        test = inputs.dataset["test"]
        predictions = inputs.task.predict(
            trainer.model,
            inputs.test_features,
            collator,
            inputs.tokenizer,
            test,
            args.per_device_eval_batch_size,
            recipe,
        )
        metrics = _test_metrics(recipe, inputs, trainer, predictions, args, collator, output_dir)
        metrics.update(
            recipe=recipe.name,
            task=inputs.info.name,
            task_type=inputs.info.task_type,
            method=recipe.method,
            checkpoint=str(recipe.checkpoint),
            train_examples=len(inputs.dataset["train"]),
            validation_examples=len(inputs.dataset["validation"]) if inputs.validation_features is not None else 0,
            test_examples=len(test),
            **training,
            **inputs.parameters,
        )
        save_finetuned(trainer.model, inputs.tokenizer, output_dir, recipe.method)
        inputs.task.write_reports(output_dir, inputs.info, test, predictions, metrics)
        # the folder this run pointed Trainer at, inside `out.path`: a fresh staging folder, or a target that was
        # empty or absent (check_output_folder refuses a non-empty one without --overwrite, which stages)
        shutil.rmtree(args.output_dir, ignore_errors=True)
        write_run(
            output_dir,
            recipe,
            metrics,
            trainer.state.log_history,
            summary=f"Sora fine-tuned ({recipe.method}) for {inputs.info.name} ({inputs.info.task_type}).",
            pipeline_tag=inputs.task.pipeline_tag,
            tags=[inputs.info.task_type, recipe.method],
            dataset_name=inputs.info.description or inputs.info.name,
            recipe_command="sora-hf finetune recipe.yaml",
        )
        out.commit()
    return metrics


def _prepare(recipe: FinetuneRecipe) -> FinetuneInputs:
    """The task and its data checked, the tokenizer and model loaded (a student, LoRA-wrapped), the splits encoded."""
    set_seed(recipe.seed)
    dataset, info = load_task(recipe)
    check_class_count(info, dataset, recipe.data.train_file)
    task = get_task(info.task_type)
    if recipe.robustness:
        from ..training.robustness import check_robustness_task

        check_robustness_task(info.task_type)
    tokenizer = load_tokenizer(recipe.checkpoint)
    model = load_model(recipe, info, tokenizer)
    if recipe.distillation:
        from ..training.distillation import prepare_student

        model = prepare_student(model, recipe.distillation)
    train_features, test_features = build_features(recipe, info, dataset, tokenizer)
    validation_features = None
    if evaluates_during_training(recipe):
        validation_features = task.encode(recipe, info, dataset["validation"], tokenizer, "validation")
    if recipe.method == "lora":
        model = apply_lora(model, recipe.lora)
    parameters = count_parameters(model)
    logger.info("%s: %s, %d of %d parameters trainable", recipe.name, recipe.method, *parameters.values())
    return FinetuneInputs(
        info, task, dataset, tokenizer, model, train_features, test_features, validation_features, parameters
    )


def _trainer(recipe: FinetuneRecipe, inputs: FinetuneInputs, args, collator, callbacks: list | None):
    """The Trainer (or the extension the recipe switches on) over the encoded splits."""
    validation_features = inputs.validation_features
    return make_trainer(
        recipe,
        inputs.info,
        model=inputs.model,
        args=args,
        train_dataset=inputs.train_features.dataset,
        eval_dataset=validation_features.dataset if validation_features is not None else None,
        validation=(inputs.dataset["validation"], validation_features) if validation_features is not None else None,
        data_collator=collator,
        processing_class=inputs.tokenizer,
        callbacks=[*training_callbacks(recipe), *(callbacks or [])],
    )


def _train(trainer, recipe: FinetuneRecipe, inputs: FinetuneInputs, args, collator) -> dict[str, Any]:
    """Train; the figures of training, and the kept model's validation loss and task scores."""
    training = train_and_measure(trainer, recipe.name)
    training["epochs_trained"] = round(trainer.state.epoch or 0.0, 3)
    if getattr(trainer.state, "best_global_step", None) is not None:  # load_best_model_at_end kept this one
        training["best_step"] = trainer.state.best_global_step
    if inputs.validation_features is not None:  # the model kept (the last, or the best with load_best_model_at_end)
        training["validation_loss"] = trainer.evaluate()["eval_loss"]
        validation = inputs.dataset["validation"]
        scores = inputs.task.score(
            inputs.info,
            validation,
            inputs.task.predict(
                trainer.model, inputs.validation_features, collator, inputs.tokenizer, validation,
                args.per_device_eval_batch_size, recipe,
            ),
        )  # fmt: skip
        # the task's own scores on the validation split, what a choice between runs is made on
        training.update({f"validation_{k[5:]}": v for k, v in scores.items() if not isinstance(v, dict | list)})
    return training


def _test_metrics(recipe, inputs: FinetuneInputs, trainer, predictions, args, collator, output_dir) -> dict[str, Any]:
    """The test split scored once, at the end, with the distillation and robustness figures when switched on."""
    test = inputs.dataset["test"]
    metrics = inputs.task.score(inputs.info, test, predictions)
    if recipe.distillation:
        metrics["distillation"] = trainer.summary()
    if recipe.robustness:
        from ..training.robustness import evaluate_robustness

        metrics["robustness"] = evaluate_robustness(
            recipe,
            inputs.info,
            trainer.model,
            inputs.tokenizer,
            test,
            collator,
            args.per_device_eval_batch_size,
            metrics,
            output_dir=output_dir,
        )
    return metrics
