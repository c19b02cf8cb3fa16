"""Fine-tuning a pre-trained Sora on a task, with LoRA (peft) or full fine-tuning, from one recipe format.

`run_finetuning(recipe)` loads the task (an embedded real task or the user's files), checks that checkpoint,
tokenizer and labels fit, trains with `transformers.Trainer`, scores the test split with sora_hf's offline
`evaluate` metrics, and writes: the model (for LoRA: the adapter in `adapter/` and the merged plain Sora checkpoint
at the top), the tokenizer, `metrics.json`, `predictions.jsonl`, a loss curve, a confusion matrix (classification)
or a per-entity report (token classification), and a model card.
"""

from __future__ import annotations

import logging
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTextEncoding,
    AutoModelForTokenClassification,
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from . import task_metrics
from .checkpoints import CheckpointError, check_checkpoint_folder, load_checked, resolve_checkpoint
from .lora import LoraOptions, apply_lora, count_parameters
from .outputs import OutputFolder, check_output_folder
from .pretraining import for_this_machine, save_recipe
from .recipes import FinetuneRecipe, RecipeError
from .reporting import plot_loss_curve, write_metrics, write_model_card
from .task_processing import (
    Features,
    PairCollator,
    decode_question_answering,
    decode_token_classification,
    encode_classification,
    encode_question_answering,
    encode_seq2seq,
    encode_similarity,
    encode_token_classification,
)
from .tokenizer import check_tokenizer_fits, load_tokenizer

logger = logging.getLogger(__name__)

AUTO_CLASSES = {
    "classification": AutoModelForSequenceClassification,
    "token_classification": AutoModelForTokenClassification,
    "question_answering": AutoModelForQuestionAnswering,
    "seq2seq": AutoModelForSeq2SeqLM,
    "similarity": AutoModelForTextEncoding,
    "causal_lm": AutoModelForCausalLM,
}
PIPELINE_TAGS = {
    "classification": "text-classification",
    "token_classification": "token-classification",
    "question_answering": "question-answering",
    "seq2seq": "text2text-generation",
    "similarity": "sentence-similarity",
    "causal_lm": "text-generation",
}

DEFAULT_TRAINING = dict(
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    learning_rate=5e-4,
    weight_decay=0.01,
    warmup_steps=0.06,
    num_train_epochs=3,
    logging_steps=25,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=1,
    report_to="none",
    dataloader_num_workers=0,
)


def finetuning_inputs(recipe: FinetuneRecipe) -> list[str | None]:
    """The local files and folders a fine-tuning run reads (which its output folder must not touch)."""
    data = recipe.data
    teacher = (recipe.distillation or {}).get("teacher")
    return [recipe.checkpoint, data.train_file, data.test_file, data.validation_file, teacher, recipe.source_path]


def load_task(recipe: FinetuneRecipe):
    """The task's DatasetDict and TaskInfo, from the embedded tasks or the user's files."""
    from .data import tasks

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
            seed=recipe.seed,
        )
    for split, limit in (("train", data.max_train_examples), ("test", data.max_eval_examples)):
        if limit is not None and len(dataset[split]) > limit:
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
    from .configuration_sora import SoraConfig

    checkpoint = resolve_checkpoint(recipe.checkpoint)
    if Path(checkpoint).is_dir():
        check_sora_checkpoint(checkpoint)
    config = SoraConfig.from_pretrained(checkpoint)
    task_type = info.task_type
    if task_type == "causal_lm" and not config.is_decoder:
        raise RecipeError(
            f"checkpoint {checkpoint} ({config.architectures}) is not a causal decoder; causal_lm fine-tuning needs "
            "one (pre-trained with the clm objective)"
        )
    if task_type not in ("seq2seq", "causal_lm") and (config.is_decoder or config.is_encoder_decoder):
        kind = "an encoder-decoder" if config.is_encoder_decoder else "a causal decoder"
        raise RecipeError(
            f"checkpoint {checkpoint} is {kind} ({config.architectures}); {task_type} needs a Sora encoder "
            "(pre-trained with the mlm or rtd objective)"
        )
    kwargs: dict[str, Any] = dict(recipe.model)
    if task_type in ("classification", "token_classification") and info.label_names:
        kwargs["id2label"] = dict(enumerate(info.label_names))
        kwargs["label2id"] = {name: i for i, name in enumerate(info.label_names)}
    if task_type == "classification":
        kwargs["problem_type"] = info.problem_type
        if info.problem_type == "regression":
            kwargs.update(num_labels=1, id2label={0: "score"}, label2id={"score": 0})
    try:
        model = load_checked(AUTO_CLASSES[task_type], checkpoint, heads="new_head", **kwargs)
    except CheckpointError as error:
        raise RecipeError(f"{error}; it does not fit the {task_type} task") from None
    check_tokenizer_fits(tokenizer, model.config)
    return model


def build_features(recipe: FinetuneRecipe, info, dataset, tokenizer, num_labels: int) -> tuple[Features, Features]:
    train = encode_split(recipe, info, dataset["train"], tokenizer, num_labels, "train")
    return train, encode_split(recipe, info, dataset["test"], tokenizer, num_labels, "test")


def encode_split(recipe: FinetuneRecipe, info, ds, tokenizer, num_labels: int, name: str = "data") -> Features:
    """One split's model features (also used to score perturbed copies of the test split)."""
    task_type = info.task_type
    if task_type == "classification":
        return encode_classification(ds, tokenizer, recipe.max_length, info.problem_type, num_labels, name)
    if task_type == "token_classification":
        return encode_token_classification(ds, tokenizer, recipe.max_length, recipe.doc_stride)
    if task_type == "question_answering":
        return encode_question_answering(ds, tokenizer, recipe.max_length, recipe.doc_stride)
    if task_type == "seq2seq":
        return encode_seq2seq(ds, tokenizer, recipe.max_length, recipe.max_target_length)
    if task_type == "similarity":
        return encode_similarity(ds, tokenizer, recipe.max_length)
    if task_type == "causal_lm":
        from .objectives import pack_for_causal_lm

        return Features(pack_for_causal_lm(ds, tokenizer, recipe.max_length))
    raise RecipeError(f"unknown task type {task_type!r}")


def collator_for(task_type: str, tokenizer, model):
    if task_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer)
    if task_type == "seq2seq":
        return DataCollatorForSeq2Seq(tokenizer, model=None, label_pad_token_id=-100)
    if task_type == "similarity":
        return PairCollator(tokenizer.pad_token_id)
    if task_type == "causal_lm":
        from .objectives import causal_lm_collator

        return causal_lm_collator(tokenizer)
    return DataCollatorWithPadding(tokenizer)


def training_arguments(recipe: FinetuneRecipe, output_dir: Path) -> TrainingArguments:
    kwargs = {**DEFAULT_TRAINING, **recipe.training, "output_dir": str(output_dir / "checkpoints")}
    kwargs.setdefault("seed", recipe.seed)
    if kwargs.get("eval_strategy") != "no" and kwargs.get("save_strategy") == "epoch" and "max_steps" in kwargs:
        kwargs.update(eval_strategy="no", save_strategy="no")
    return TrainingArguments(**for_this_machine(kwargs))


def make_trainer(recipe: FinetuneRecipe, info, **trainer_kwargs) -> Trainer:
    """A plain `Trainer`, or the adversarial / distillation extension the recipe switches on."""
    if recipe.adversarial:
        from .adversarial import AdversarialTrainer, parse_adversarial_options

        return AdversarialTrainer(adversarial=parse_adversarial_options(recipe.adversarial), **trainer_kwargs)
    if recipe.distillation:
        from .distillation import DistillationTrainer, load_teacher, parse_distillation_options

        options = parse_distillation_options(recipe.distillation)
        teacher = load_teacher(options, info, trainer_kwargs["model"], trainer_kwargs["processing_class"])
        return DistillationTrainer(teacher=teacher, distillation=options, **trainer_kwargs)
    return Trainer(**trainer_kwargs)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@torch.no_grad()
def predict(model, task_type: str, features: Features, collator, tokenizer, dataset, batch_size: int, recipe):
    """Raw predictions for the test split, mapped back to examples (labels, tags, answer texts, generated texts)."""
    model.eval()
    device = next(model.parameters()).device
    if task_type == "causal_lm":
        from .pretraining import evaluate_pretraining

        return evaluate_pretraining(model, "clm", features.dataset, collator, batch_size)
    if task_type == "seq2seq":
        texts = []
        for start in range(0, len(features.dataset), batch_size):
            rows = [features.dataset[i] for i in range(start, min(start + batch_size, len(features.dataset)))]
            batch = tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt").to(device)
            generated = model.generate(**batch, max_new_tokens=recipe.max_target_length, do_sample=False, num_beams=1)
            texts.extend(tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated)
        return texts
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(features.dataset), batch_size):
        rows = [features.dataset[i] for i in range(start, min(start + batch_size, len(features.dataset)))]
        batch = {
            k: v.to(device)
            for k, v in collator(rows).items()
            if k not in ("labels", "start_positions", "end_positions")
        }
        out = model(**batch)
        for key in ("logits", "start_logits", "end_logits", "embeddings"):
            value = out.get(key) if hasattr(out, "get") else None
            if value is None:
                continue
            if task_type == "similarity" and key == "embeddings":
                other = model(input_ids=batch["input_ids_b"], attention_mask=batch["attention_mask_b"]).embeddings
                value = torch.nn.functional.cosine_similarity(value.float(), other.float(), dim=-1)
            arrays = value.float().cpu().numpy()
            outputs.setdefault(key, []).extend(list(arrays))
    if task_type == "classification":
        return np.stack(outputs["logits"])
    if task_type == "token_classification":
        return decode_token_classification(outputs["logits"], features, len(dataset))
    if task_type == "question_answering":
        return decode_question_answering(
            outputs["start_logits"], outputs["end_logits"], features, list(dataset["context"])
        )
    return np.array(outputs["embeddings"])


def run_finetuning(
    recipe: FinetuneRecipe, *, overwrite: bool = False, callbacks: list | None = None
) -> dict[str, Any]:
    """Fine-tune, evaluate and save; returns the metrics written to `<output_dir>/metrics.json`."""
    target = check_output_folder(recipe.output_dir, inputs=finetuning_inputs(recipe), overwrite=overwrite)
    resolve_checkpoint(recipe.checkpoint)  # a mistyped folder stops here, before the data is read
    set_seed(recipe.seed)
    dataset, info = load_task(recipe)
    if recipe.robustness:
        from .robustness import check_robustness_task

        check_robustness_task(info.task_type)
    tokenizer = load_tokenizer(recipe.checkpoint)
    num_labels = len(info.label_names) if info.label_names else 1
    model = load_model(recipe, info, tokenizer)
    if recipe.distillation:
        from .distillation import prepare_student

        model = prepare_student(model, recipe.distillation)
    train_features, test_features = build_features(recipe, info, dataset, tokenizer, num_labels)
    if recipe.method == "lora":
        model = apply_lora(model, LoraOptions(**recipe.lora))
    parameters = count_parameters(model)
    logger.info("%s: %s, %d of %d parameters trainable", recipe.name, recipe.method, *parameters.values())

    with OutputFolder(target, overwrite=overwrite) as out:
        output_dir = out.path
        args = training_arguments(recipe, output_dir)
        collator = collator_for(info.task_type, tokenizer, model)
        trainer = make_trainer(
            recipe,
            info,
            model=model,
            args=args,
            train_dataset=train_features.dataset,
            eval_dataset=test_features.dataset if args.eval_strategy != "no" else None,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        memory_before = _peak_memory_mb(args.device)
        started = time.perf_counter()
        train_output = trainer.train()
        if trainer.state.global_step == 0:
            raise RecipeError(
                f"{recipe.name}: training ran 0 optimizer steps (num_train_epochs / max_steps / train examples); "
                "nothing was saved"
            )
        train_seconds = time.perf_counter() - started
        peak_memory = _peak_memory_mb(args.device)

        test = dataset["test"]
        predictions = predict(
            trainer.model,
            info.task_type,
            test_features,
            collator,
            tokenizer,
            test,
            args.per_device_eval_batch_size,
            recipe,
        )
        metrics = task_metrics.score(info, test, predictions)
        if recipe.distillation:
            metrics["distillation"] = trainer.summary()
        if recipe.robustness:
            from .robustness import evaluate_robustness

            metrics["robustness"] = evaluate_robustness(
                recipe,
                info,
                trainer.model,
                tokenizer,
                test,
                collator,
                args.per_device_eval_batch_size,
                metrics,
                output_dir=output_dir,
            )
        metrics.update(
            recipe=recipe.name,
            task=info.name,
            task_type=info.task_type,
            method=recipe.method,
            checkpoint=str(recipe.checkpoint),
            train_examples=len(dataset["train"]),
            test_examples=len(test),
            train_steps=trainer.state.global_step,
            train_loss=train_output.training_loss,
            train_seconds=round(train_seconds, 2),
            peak_memory_mb=round(peak_memory, 1),
            peak_memory_increase_mb=round(max(peak_memory - memory_before, 0.0), 1),
            device=str(args.device),
            **parameters,
        )
        save_finetuned(trainer.model, tokenizer, output_dir, recipe.method)
        task_metrics.write_reports(output_dir, info, test, predictions, metrics)
        write_metrics(output_dir, metrics)
        plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png", title=f"{recipe.name}")
        shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
        recipe_text = save_recipe(recipe, output_dir)
        write_model_card(
            output_dir,
            title=f"Sora {recipe.name}",
            summary=recipe.description or f"Sora fine-tuned ({recipe.method}) for {info.name} ({info.task_type}).",
            metrics=metrics,
            recipe_text=recipe_text,
            pipeline_tag=PIPELINE_TAGS[info.task_type],
            tags=[info.task_type, recipe.method],
            dataset_name=info.description or info.name,
            recipe_command="sora-hf finetune recipe.yaml",
        )
        out.commit()
    return metrics


def save_finetuned(model, tokenizer, output_dir: Path, method: str) -> None:
    """Full: the model. LoRA: the adapter (with its trained heads) in `adapter/`, and the merged plain model."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if method == "lora":
        model.save_pretrained(output_dir / "adapter")
        tokenizer.save_pretrained(output_dir / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
