"""Pre-training objectives: dataset preparation, batch collators and a registry for the training runner.

Four objectives, each a `(model class, data, collator)` triple that plugs into `transformers.Trainer`:

* ``"mlm"``  masked LM (`SoraForMaskedLM`), token-level masking by transformers' `DataCollatorForLanguageModeling`
  or Chinese whole-word masking driven by gold word boundaries (`MaskedLMCollator`);
* ``"rtd"``  ELECTRA replaced-token detection (`SoraForPreTraining`): the same masked batches as ``"mlm"``, the
  model's small generator fills the masks and the discriminator spots the replacements;
* ``"denoising"``  BART text infilling (`SoraForSeq2SeqLM`, `DenoisingCollator`);
* ``"clm"``  causal LM on packed blocks (`SoraForCausalLM`, transformers' collator with ``mlm=False``).

Training batches are corrupted afresh each time (dynamic masking). Evaluation sets are corrupted once, up front, by
`freeze_corruption`, each row with a generator seeded from the seed and the row's own token ids: held-out metrics
then see the same masks in every evaluation pass and every run, whatever the eval batch size or row order, and it
works with a plain `Trainer`, which uses one `data_collator` for training and evaluation alike (the collators pass
already-corrupted rows, recognised by their ``labels``, through with padding only).

Note for `Trainer`: keep ``remove_unused_columns=False`` for whole-word masking. The encoder datasets carry
``word_ids`` and ``special_tokens_mask``, which the collators need and the model's ``forward`` does not take, so
`Trainer`'s default would drop them before the collator sees them. The prepared datasets hold no other columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..modeling_sora import SoraForCausalLM, SoraForMaskedLM, SoraForPreTraining, SoraForSeq2SeqLM
from ..validation.choices import OBJECTIVES
from .collators import DenoisingCollator, MaskedLMCollator, causal_lm_collator, freeze_corruption
from .data import pack_for_causal_lm, tokenize_for_denoising, tokenize_for_encoder

logger = logging.getLogger(__name__)

_MODEL_CLASSES: dict[str, type] = {
    "mlm": SoraForMaskedLM,
    "rtd": SoraForPreTraining,
    "denoising": SoraForSeq2SeqLM,
    "clm": SoraForCausalLM,
}
# Shorter sequences leave almost nothing to mask once [CLS]/[SEP] are in; longer ones than this are a typo.
MIN_LENGTH = 8
MAX_SENSIBLE_LENGTH = 65536


@dataclass
class PreparedObjective:
    """Everything `Trainer` needs for one objective (train with ``remove_unused_columns=False``)."""

    model_class: type
    train_dataset: Dataset
    eval_dataset: Dataset | None
    collator: Callable
    tokenizer_template: str


def _check_objective(name: str) -> None:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown pre-training objective {name!r}; valid objectives: {', '.join(OBJECTIVES)}")


def tokenizer_template_for(name: str) -> str:
    """The tokenizer template an objective expects: "decoder" ([BOS] ...) for clm, "encoder" ([CLS] ... [SEP])
    otherwise."""
    _check_objective(name)
    return "decoder" if name == "clm" else "encoder"


def _tokenizer_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Which template the tokenizer's post-processor applies, judged from the first id of an encoded text."""
    first = tokenizer("a")["input_ids"][:1]
    if first == [tokenizer.cls_token_id]:
        return "encoder"
    if first == [tokenizer.bos_token_id]:
        return "decoder"
    return None


def prepare_objective(
    name: str,
    train_texts: Dataset,
    eval_texts: Dataset | None,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    mlm_probability: float = 0.15,
    whole_word_mask: bool = False,
    noise_density: float = 0.3,
    mean_span_length: float = 3.0,
    seed: int = 42,
) -> PreparedObjective:
    """Tokenise/pack the text datasets (column ``text``, optional ``words``) for objective `name` and build its
    collator. For clm `max_length` is the block size. The eval set, if given, is corrupted once with a fixed seed
    (`freeze_corruption`) so its metrics compare across evaluations and runs; the training collator is seeded with
    `seed`."""
    _check_objective(name)
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ValueError(f"max_length must be an integer, got {max_length!r}")
    limit = min(
        MAX_SENSIBLE_LENGTH, getattr(tokenizer, "model_max_length", MAX_SENSIBLE_LENGTH) or MAX_SENSIBLE_LENGTH
    )
    if not MIN_LENGTH <= max_length <= limit:
        raise ValueError(
            f"max_length must be between {MIN_LENGTH} and {limit} (the tokenizer's model_max_length, at most "
            f"{MAX_SENSIBLE_LENGTH}), got {max_length}"
        )
    template = tokenizer_template_for(name)
    actual = _tokenizer_template(tokenizer)
    if actual is not None and actual != template:
        logger.warning(
            "objective %r expects a tokenizer with the %r template but this one applies %r; train one with "
            "train_tokenizer(..., template=%r)",
            name,
            template,
            actual,
            template,
        )

    model_class = _MODEL_CLASSES[name]
    if name in ("mlm", "rtd"):
        collator: Callable = MaskedLMCollator(
            tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word_mask, seed=seed
        )
        tokenize: Callable = tokenize_for_encoder
    elif name == "denoising":
        collator = DenoisingCollator(
            tokenizer, noise_density=noise_density, mean_span_length=mean_span_length, seed=seed
        )
        tokenize = tokenize_for_denoising
    else:
        collator, tokenize = causal_lm_collator(tokenizer), pack_for_causal_lm
    train = tokenize(train_texts, tokenizer, max_length)
    evaluation = None if eval_texts is None else tokenize(eval_texts, tokenizer, max_length)
    if evaluation is not None and name != "clm":  # the held-out split is corrupted once, the same every evaluation
        evaluation = freeze_corruption(evaluation, collator, seed)
    return PreparedObjective(
        model_class=model_class,
        train_dataset=train,
        eval_dataset=evaluation,
        collator=collator,
        tokenizer_template=template,
    )
