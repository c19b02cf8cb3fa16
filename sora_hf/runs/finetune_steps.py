"""The steps of fine-tuning a pre-trained Sora on a task, with LoRA (peft) or full fine-tuning, from one recipe
format (`sora_hf.runs.run_finetuning` runs them; the multi-task run shares them): the task's data, the checked checkpoint under the task's head,
the features, the Trainer arguments, the Trainer (plain, adversarial or distilling) and the saved model (for LoRA:
the adapter in `adapter/` and the merged plain Sora checkpoint at the top)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments

from ..folders.checkpoints import CheckpointError, check_checkpoint_folder, load_checked, resolve_checkpoint
from ..recipes import FINETUNE_LEARNING_RATE, FINETUNE_TRAINING, FinetuneRecipe, RecipeError
from ..tasks import Features, get_task
from ..tokenizer import check_tokenizer_fits
from ..training.distributed import for_this_machine

logger = logging.getLogger(__name__)


def load_task(recipe: FinetuneRecipe):
    """The task's DatasetDict and TaskInfo, from the embedded tasks or the user's files."""
    from ..data import tasks

    data = recipe.data
    if data.embedded is not None:
        dataset, info = tasks.load_embedded_task(data.embedded, seed=recipe.seed)
    else:
        dataset, info = tasks.load_task_files(
            data.task_type,
            data.train_file,
            data.test_file,
            data.validation_file,
            text_column=data.text_column,
            text_pair_column=data.text_pair_column,
            label_column=data.label_column,
            tokens_column=data.tokens_column,
            tags_column=data.tags_column,
            source_column=data.source_column,
            target_column=data.target_column,
            multi_label=data.multi_label,
            regression=data.regression,
            tag_scheme=data.tag_scheme,
            labels=data.labels,
            on_malformed=data.on_malformed,
            seed=recipe.seed,
        )
    if evaluates_during_training(recipe) and "validation" not in dataset:
        # the model is chosen (per-epoch evaluation, load_best_model_at_end, early stopping) on data carved from the
        # training split; the test split is scored once, after training
        if not data.validation_split:
            raise RecipeError(
                f"training.eval_strategy={training_kwargs(recipe)['eval_strategy']!r} evaluates during training, "
                "which needs validation data: give data.validation_file, set data.validation_split (a fraction of "
                "the training rows), or set training.eval_strategy: no"
            )
        dataset = tasks.carve_validation(dataset, info.task_type, data.validation_split, recipe.seed)
    limits = {"train": data.max_train_examples, "validation": data.max_eval_examples, "test": data.max_eval_examples}
    for split, limit in limits.items():
        if split in dataset and limit is not None and len(dataset[split]) > limit:
            dataset[split] = dataset[split].shuffle(seed=recipe.seed).select(range(limit))
    return dataset, info


def check_sora_checkpoint(folder: str) -> None:
    """A local checkpoint folder whose config.json is readable and says Sora, with whole weights (SoraConfig would
    read another model's config.json as a Sora one, and the model would start from random weights)."""
    model_type = check_checkpoint_folder(folder)["model_type"]
    if model_type != "sora":
        raise RecipeError(
            f"checkpoint {folder} is a {model_type!r} model, not a Sora one (config.json says model_type "
            f"{model_type!r}); fine-tuning starts from a Sora checkpoint"
        )


def load_model(recipe: FinetuneRecipe, info, tokenizer):
    """The pre-trained checkpoint under the task's head; refuses a checkpoint that cannot serve the task."""
    from ..configuration_sora import SoraConfig

    checkpoint = resolve_checkpoint(recipe.checkpoint)
    if Path(checkpoint).is_dir():
        check_sora_checkpoint(checkpoint)
    config = SoraConfig.from_pretrained(checkpoint)
    task = get_task(info.task_type)
    task.check_config(config, checkpoint)
    kwargs: dict[str, Any] = {**recipe.model, **task.model_kwargs(info)}
    with _new_head_report() as report:
        try:
            model = load_checked(task.auto_class, checkpoint, heads="new_head", **kwargs)
        except CheckpointError as error:
            report.show()  # the table of what the encoder lacks, with the error
            raise RecipeError(f"{error}; it does not fit the {task.name} task") from None
        report.explain(model)
    check_tokenizer_fits(tokenizer, model.config)
    return model


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REPORT_ROW = re.compile(r"^(\S+)\s*\|\s*([A-Z]+)\b", re.MULTILINE)


class _LoadReport(logging.Filter):
    """Holds back transformers' load report (the table of MISSING / UNEXPECTED weights it logs as a warning on every
    load into a new head), so that a fine-tuning load that is as expected says so in one INFO line instead."""

    def __init__(self, source: logging.Logger):
        super().__init__()
        self.source = source
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in str(record.msg):
            self.records.append(record)
            return False
        return True

    def show(self) -> None:
        """Let the held-back report through, as transformers logged it."""
        records, self.records = self.records, []
        for record in records:
            self.source.handle(record)

    def explain(self, model) -> None:
        """One INFO line where the report lists only a new head (weights missing outside the encoder) and the
        pre-training head's weights the task does not use; the report itself for anything else (an encoder weight
        the model does not have, weights of other shapes, a table this cannot read)."""
        if not self.records:
            return
        rows = [row for record in self.records for row in _REPORT_ROW.findall(_ANSI.sub("", record.getMessage()))]
        rows = [(key, status) for key, status in rows if key != "Key"]
        body = f"{model.base_model_prefix}."
        expected = rows and all(
            status in ("MISSING", "UNEXPECTED") and not key.startswith(body) for key, status in rows
        )
        if not expected:
            self.show()
            return
        self.records = []
        new = _groups(key for key, status in rows if status == "MISSING")
        unused = _groups(key for key, status in rows if status == "UNEXPECTED")
        logger.info(
            "new head %s initialised (expected when fine-tuning a pre-trained encoder)%s",
            ", ".join(new) or "(none)",
            f"; the pre-training head's {', '.join(unused)} left unused" if unused else "",
        )


def _groups(keys) -> list[str]:
    """`classifier.weight`, `classifier.bias` -> `classifier.*`, sorted (the report's order varies from run to run)."""
    return sorted({f"{key.split('.')[0]}.*" if "." in key else key for key in keys})


@contextlib.contextmanager
def _new_head_report() -> Iterator[_LoadReport]:
    source = logging.getLogger("transformers.modeling_utils")
    report = _LoadReport(source)
    source.addFilter(report)
    try:
        yield report
    finally:
        source.removeFilter(report)
        report.show()  # anything not explained (an exception on the way) is shown as transformers logged it


def build_features(recipe: FinetuneRecipe, info, dataset, tokenizer) -> tuple[Features, Features]:
    """The train and test splits' model features."""
    task = get_task(info.task_type)
    train = task.encode(recipe, info, dataset["train"], tokenizer, "train")
    return train, task.encode(recipe, info, dataset["test"], tokenizer, "test")


def training_kwargs(recipe: FinetuneRecipe, task_type: str | None = None) -> dict[str, Any]:
    """The run's Trainer arguments: fine-tuning's defaults (the learning rate by method), the task's, then the
    recipe's `training:` section."""
    task_defaults = get_task(task_type).training_defaults() if task_type else {}
    method_defaults = {"learning_rate": FINETUNE_LEARNING_RATE[recipe.method]}
    kwargs = {**FINETUNE_TRAINING, **method_defaults, **task_defaults, **recipe.training}
    kwargs.setdefault("seed", recipe.seed)
    if recipe.early_stopping_patience is not None:
        kwargs.setdefault("load_best_model_at_end", True)
        kwargs.setdefault("metric_for_best_model", "loss")
        if kwargs.get("max_steps", -1) > 0:  # evaluate and save every eval_steps (the schema made sure they are given)
            kwargs.setdefault("eval_strategy", "steps")
            kwargs.setdefault("save_strategy", kwargs["eval_strategy"])
    elif kwargs.get("eval_strategy") != "no" and kwargs.get("save_strategy") == "epoch" and "max_steps" in kwargs:
        kwargs.update(eval_strategy="no", save_strategy="no")
    return kwargs


def training_callbacks(recipe: FinetuneRecipe) -> list:
    """The callbacks the recipe asks for (early stopping on the validation loss)."""
    if recipe.early_stopping_patience is None:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience)]


def evaluates_during_training(recipe: FinetuneRecipe) -> bool:
    return training_kwargs(recipe).get("eval_strategy", "no") != "no"


def training_arguments(recipe: FinetuneRecipe, output_dir: Path, task_type: str | None = None) -> TrainingArguments:
    kwargs = {**training_kwargs(recipe, task_type), "output_dir": str(output_dir / "checkpoints")}
    return TrainingArguments(**for_this_machine(kwargs))


def make_trainer(
    recipe: FinetuneRecipe, info, validation: tuple[Any, Features] | None = None, **trainer_kwargs
) -> Trainer:
    """A plain `Trainer`, or the adversarial / distillation extension the recipe switches on; with the task's loss
    where the head has none (sentence pairs). `validation` (the evaluated split's rows and features) gives every
    evaluation the task's own metrics (`eval_accuracy`, `eval_overall_f1` ...), not the loss alone."""
    task = get_task(info.task_type)
    trainer_kwargs.setdefault("compute_loss_func", task.loss_function())
    if validation is not None and trainer_kwargs.get("eval_dataset") is not None:
        hooks = task.eval_metrics(info, *validation, trainer_kwargs["model"])
        if hooks is not None and "compute_metrics" not in trainer_kwargs:
            trainer_kwargs["compute_metrics"], trainer_kwargs["preprocess_logits_for_metrics"] = hooks
    if recipe.adversarial:
        from ..training.adversarial import AdversarialTrainer

        trainer = AdversarialTrainer(adversarial=recipe.adversarial, **trainer_kwargs)
    elif recipe.distillation:
        from ..training.distillation import DistillationTrainer, load_teacher

        options = recipe.distillation
        teacher = load_teacher(options, info, trainer_kwargs["model"], trainer_kwargs["processing_class"])
        trainer = DistillationTrainer(teacher=teacher, distillation=options, **trainer_kwargs)
    else:
        trainer = Trainer(**trainer_kwargs)
    if recipe.head_learning_rate is not None:
        with_head_learning_rate(trainer, recipe.head_learning_rate)
    if "compute_metrics" in trainer_kwargs:
        in_dataset_order(trainer)
    return trainer


def in_dataset_order(trainer: Trainer) -> None:
    """Evaluate the split in its own order: the task metrics score the predictions against its rows (labels, word
    alignment), and with `train_sampling_strategy="group_by_length"` transformers also groups evaluation batches by
    length, which reorders the predictions (a sentiment run logged 0.50 eval accuracy at 0.31 eval loss)."""
    from torch.utils.data import SequentialSampler

    trainer._get_eval_sampler = lambda dataset: None if dataset is None else SequentialSampler(dataset)


def head_parameters(model) -> list:
    """The trainable weights of the task head: those outside the encoder (`base_model_prefix`), under a peft
    wrapper too (its `modules_to_save` copies; the LoRA matrices sit inside the encoder)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = f"{inner.base_model_prefix}."
    return [p for name, p in inner.named_parameters() if p.requires_grad and not name.startswith(body)]


def with_head_learning_rate(trainer: Trainer, learning_rate: float) -> None:
    """Build the Trainer's optimizer now (it keeps one already set), with the head's weights in groups of their own
    at `learning_rate`; the schedule (warm-up, decay) scales every group alike."""
    model = trainer.model
    head = {id(p) for p in head_parameters(model)}
    if not head:
        raise RecipeError(f"head_learning_rate: {type(model).__name__} has no trainable weights outside its encoder")
    optimizer = trainer.create_optimizer()
    groups = []
    for group in optimizer.param_groups:
        for in_head in (False, True):
            params = [p for p in group["params"] if (id(p) in head) == in_head]
            if params:
                groups.append({**group, "params": params, **({"lr": learning_rate} if in_head else {})})
    optimizer.param_groups.clear()  # nothing has trained yet: no optimizer state refers to the old groups
    for group in groups:
        optimizer.add_param_group(group)


def save_finetuned(model, tokenizer, output_dir: Path, method: str) -> None:
    """Full: the model. LoRA: the adapter (with its trained heads) in `adapter/`, and the merged plain model."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if method == "lora":
        model.save_pretrained(output_dir / "adapter")
        tokenizer.save_pretrained(output_dir / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
