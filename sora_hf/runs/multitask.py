"""`run_multitask(recipe)`: train one shared Sora encoder on several tasks (one head each), end to end.

Loads every task with the fine-tuning loaders, builds a `SoraForMultiTask` over the pre-trained encoder, trains it
with `MultiTaskTrainer`, scores each task on its own test split and writes the run folder (see `sora_hf.recipes.multitask`
for the recipe and `sora_hf.training.multitask` for the sampling, the model and the trainer).
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainingArguments, set_seed

from ..recipes import MULTITASK_TRAINING, MultiTaskRecipe, RecipeError
from ..tasks import Task, get_task
from ..training.distributed import for_this_machine
from ..training.multitask import (
    MultiTaskDataset,
    MultiTaskTrainer,
    TaskView,
    apply_multitask_lora,
    build_config,
    load_multitask_model,
    task_probabilities,
    uncertainty_log_variances,
    unwrap,
)
from .common import check_class_count, train_and_measure, write_run
from .finetune_steps import check_sora_checkpoint, save_finetuned

logger = logging.getLogger(__name__)


def run_multitask(
    recipe: MultiTaskRecipe, *, overwrite: bool = False, callbacks: list | None = None
) -> dict[str, Any]:
    """Train one shared encoder on every task of the recipe, score each task, save; returns `metrics.json`."""
    from ..folders.checkpoints import resolve_checkpoint
    from ..folders.outputs import check_output_folder, disk_space_errors
    from .finetune import finetuning_inputs

    inputs = [recipe.checkpoint, recipe.source_path]
    for task in recipe.tasks:
        inputs += finetuning_inputs(recipe.task_recipe(task))
    target = check_output_folder(recipe.output_dir, inputs=inputs, overwrite=overwrite)
    checkpoint = resolve_checkpoint(recipe.checkpoint)  # a mistyped folder stops here, before the data is read
    with disk_space_errors(target):  # a full disk: `no space left on <output_dir>`, the target as it was
        return _multitask(recipe, target, checkpoint, overwrite, callbacks)


@dataclass
class MultiTaskInputs:
    """Per task: its data, its type's object (not its name), its encoded splits and collator; and the model."""

    datasets: dict[str, Any]
    infos: dict[str, Any]
    kinds: dict[str, Task]
    tokenizer: Any
    model: Any
    train_features: dict[str, Any]
    test_features: dict[str, Any]
    collators: dict[str, Any]
    parameters: dict[str, int]


def _multitask(
    recipe: MultiTaskRecipe, target: Path, checkpoint: str, overwrite: bool, callbacks: list | None
) -> dict[str, Any]:
    from ..folders.outputs import OutputFolder

    inputs = _prepare(recipe, checkpoint)
    train_dataset = MultiTaskDataset({task: f.dataset for task, f in inputs.train_features.items()})
    probabilities = task_probabilities(train_dataset.sizes(), recipe.sampling, recipe.temperature)
    logger.info("%s: task probabilities %s", recipe.name, probabilities)
    with OutputFolder(target, overwrite=overwrite) as out:
        output_dir = out.path
        kwargs = {**MULTITASK_TRAINING, **recipe.training, "output_dir": str(output_dir / "checkpoints")}
        kwargs.setdefault("seed", recipe.seed)
        args = TrainingArguments(**for_this_machine(kwargs))
        trainer = MultiTaskTrainer(
            model=inputs.model,
            args=args,
            train_dataset=train_dataset,
            processing_class=inputs.tokenizer,
            callbacks=callbacks,
            task_collators=inputs.collators,
            probabilities=probabilities,
        )
        training = train_and_measure(trainer, recipe.name)
        per_task = _score_tasks(recipe, inputs, trainer, args, probabilities, output_dir)
        metrics: dict[str, Any] = {
            "recipe": recipe.name,
            "tasks": per_task,
            "method": recipe.method,
            "sampling": recipe.sampling,
            "temperature": recipe.temperature if recipe.sampling == "temperature" else None,
            "loss_weighting": recipe.loss_weighting,
            "checkpoint": str(recipe.checkpoint),
            **training,
            **inputs.parameters,
        }
        base = unwrap(trainer.model)
        if base.task_uncertainty is not None:
            learned = uncertainty_log_variances(base.task_uncertainty)
            metrics["learned_log_variances"] = learned
            metrics["learned_loss_weights"] = {t: math.exp(-s) for t, s in learned.items()}
        save_finetuned(trainer.model, inputs.tokenizer, output_dir, recipe.method)  # the adapter keeps the heads
        # the folder this run pointed Trainer at, inside `out.path`: a fresh staging folder, or a target that was
        # empty or absent (check_output_folder refuses a non-empty one without --overwrite, which stages)
        shutil.rmtree(args.output_dir, ignore_errors=True)
        _write(recipe, inputs, trainer, metrics, output_dir)
        out.commit()
    return metrics


def _prepare(recipe: MultiTaskRecipe, checkpoint: str) -> MultiTaskInputs:
    """Every task's data and type checked (labels, a multi-task head), then the model built and the splits encoded."""
    from ..tokenizer import load_tokenizer
    from ..training.lora import count_parameters
    from .finetune_steps import build_features, load_task

    set_seed(recipe.seed)
    datasets, infos, kinds = {}, {}, {}
    for task in recipe.tasks:
        datasets[task], infos[task] = load_task(recipe.task_recipe(task))
        check_class_count(infos[task], datasets[task], recipe.task_recipe(task).data.train_file)
        kinds[task] = get_task(infos[task].task_type)
        if not kinds[task].multitask_head:
            raise RecipeError(f"tasks.{task}: {infos[task].task_type} has no multi-task head")
    if Path(checkpoint).is_dir():
        check_sora_checkpoint(checkpoint)
    config = build_config(recipe, infos)  # label / checkpoint checks before anything is tokenised or trained
    tokenizer = load_tokenizer(recipe.checkpoint)
    model = load_multitask_model(recipe, config, tokenizer)
    train_features, test_features, collators = {}, {}, {}
    for task, info in infos.items():
        train_features[task], test_features[task] = build_features(
            recipe.task_recipe(task), info, datasets[task], tokenizer
        )
        collators[task] = kinds[task].collator(tokenizer, model)
    if recipe.method == "lora":
        model = apply_multitask_lora(model, recipe.lora)
    parameters = count_parameters(model)
    return MultiTaskInputs(
        datasets, infos, kinds, tokenizer, model, train_features, test_features, collators, parameters
    )


def _score_tasks(recipe, inputs: MultiTaskInputs, trainer, args, probabilities, output_dir: Path) -> dict[str, Any]:
    """Each task's test split scored once through its head, with its reports in `tasks/<task>/`."""
    per_task = {}
    for task, info in inputs.infos.items():
        kind, test = inputs.kinds[task], inputs.datasets[task]["test"]
        view = TaskView(trainer.model, task)
        predictions = kind.predict(
            view, inputs.test_features[task], inputs.collators[task], inputs.tokenizer, test,
            args.per_device_eval_batch_size, recipe.task_recipe(task),
        )  # fmt: skip
        scores = kind.score(info, test, predictions)
        scores.update(
            task_type=info.task_type,
            train_examples=len(inputs.datasets[task]["train"]),
            test_examples=len(test),
            train_batches=trainer.task_batches.get(task, 0),
            sampling_probability=round(probabilities[task], 4),
        )
        report_dir = output_dir / "tasks" / task
        report_dir.mkdir(parents=True, exist_ok=True)
        kind.write_reports(report_dir, info, test, predictions, scores)
        per_task[task] = scores
    return per_task


def _write(recipe: MultiTaskRecipe, inputs: MultiTaskInputs, trainer, metrics: dict, output_dir: Path) -> None:
    """metrics.json, the loss curve, the recipe and a card whose headline is each task's test scores."""
    per_task = metrics["tasks"]
    headline = {
        f"test_{task}_{key[5:]}": value
        for task, scores in per_task.items()
        for key, value in scores.items()
        if key.startswith("test_") and isinstance(value, (int, float))
    }
    write_run(
        output_dir,
        recipe,
        metrics,
        trainer.state.log_history,
        summary=f"Sora multi-task model ({recipe.method}): one shared encoder, heads for {', '.join(per_task)}.",
        card_metrics={**headline, "train_steps": metrics["train_steps"], **inputs.parameters},
        pipeline_tag="multi-task",
        tags=["multi-task", recipe.method, *sorted({i.task_type for i in inputs.infos.values()})],
        dataset_name=", ".join(i.description or i.name for i in inputs.infos.values()),
        recipe_command="sora-hf multitask recipe.yaml",
    )
