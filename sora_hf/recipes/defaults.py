"""The Trainer arguments each kind of run starts from; a recipe's `training:` section overrides any of them."""

from __future__ import annotations

from typing import Any

_SHARED: dict[str, Any] = dict(
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    learning_rate=5e-4,
    weight_decay=0.01,
    warmup_steps=0.06,
    logging_steps=25,
    report_to="none",
    dataloader_num_workers=0,
)

PRETRAIN_TRAINING: dict[str, Any] = {
    **_SHARED,
    "lr_scheduler_type": "linear",
    "max_steps": 1000,
    "eval_strategy": "steps",
    "eval_steps": 250,
    "save_strategy": "steps",
    "save_steps": 250,
    "save_total_limit": 2,
    "disable_tqdm": False,
    "remove_unused_columns": False,  # the collators need word_ids and special_tokens_mask
}

FINETUNE_TRAINING: dict[str, Any] = {
    **_SHARED,
    "num_train_epochs": 3,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 1,
}

# fine-tuning's, but no evaluation or checkpoints during training: each task is scored on its own test split after
MULTITASK_TRAINING: dict[str, Any] = {**_SHARED, "num_train_epochs": 3, "eval_strategy": "no", "save_strategy": "no"}

# fine-tuning's learning rate when the recipe gives none: LoRA trains a few small matrices from zero and wants a
# larger step than full fine-tuning (chosen on validation accuracy / F1, benchmarks/results/finetuning_defaults.json)
FINETUNE_LEARNING_RATE: dict[str, float] = {"full": 5e-4, "lora": 2e-3}

__all__ = ["PRETRAIN_TRAINING", "FINETUNE_TRAINING", "FINETUNE_LEARNING_RATE", "MULTITASK_TRAINING"]
