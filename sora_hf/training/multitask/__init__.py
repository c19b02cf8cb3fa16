"""Multi-task learning: one shared Sora encoder, one head per task, trained from one recipe.

`sora_hf.runs.run_multitask(recipe)` loads every task with the fine-tuning loaders (`finetuning.load_task`, the task
types' encoders in `sora_hf.tasks`), builds a `SoraForMultiTask` over the pre-trained encoder, and trains it with
`MultiTaskTrainer`: each batch holds the examples of one task, the task drawn per batch with probabilities
proportional to the tasks' sizes, temperature-scaled (`p_i ∝ n_i^(1/T)`) or uniform. Each batch's loss is weighted by
the task's fixed `loss_weight` or by learned uncertainty (`SoraTaskUncertainty`, in the model so that it is saved with
it). Every task is then scored on its own test split with its task type's `score`, and the run folder gets the model,
the tokenizer, `metrics.json` with one block per task, per-task predictions and reports under `tasks/<name>/`, a loss
curve and a model card.

The recipe (`MultiTaskRecipe`, `parse_multitask_recipe`, `load_multitask_recipe`) is in `sora_hf.recipes.multitask`.

Layout: `config.py` (the sampling and weighting choices, no torch), `sampler.py` (one-task batches), `model.py` (the
multi-task config, model and LoRA), `trainer.py` (the Trainer).
"""

from ..._lazy import lazy_exports

# the public names of each module, imported on first use (so that `config` loads without torch)
__getattr__, __all__ = lazy_exports(
    __name__,
    config=("LOSS_WEIGHTING", "SAMPLING"),
    sampler=("MultiTaskCollator", "MultiTaskDataset", "TaskBatchSampler", "task_probabilities"),
    trainer=("MultiTaskTrainer",),
    model=(
        "TaskView",
        "apply_multitask_lora",
        "build_config",
        "check_tasks_match",
        "load_multitask_model",
        "uncertainty_log_variances",
        "unwrap",
    ),
)
