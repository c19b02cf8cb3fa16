"""The Sora tokenizer: a plain fast tokenizer for mixed Chinese + English text.

The tokenizer is a `tokenizers.Tokenizer` wrapped in transformers' `PreTrainedTokenizerFast` (in transformers v5 an
alias of `TokenizersBackend`). It is saved as `tokenizer.json` + `tokenizer_config.json` only, so that
`AutoTokenizer.from_pretrained(folder)` loads it without `sora_hf` installed and without `trust_remote_code`.

Design:

* normaliser: NFKC (full-width letters, digits and punctuation become half-width), case kept;
* pre-tokenisers, in order: every Han character is isolated (so it can never merge with a neighbour), spaces become
  the SentencePiece marker `▁` that starts the following piece (`Metaspace`, never prepended, so Chinese text gets no
  phantom spaces), punctuation is isolated, digits are split one by one;
* model: character-level BPE with `[UNK]` (no byte fallback, so an unseen character is one `[UNK]` and offsets stay
  one character wide); every character seen in training is kept in the alphabet;
* decoder: `Metaspace` (turns `▁` back into a space), so `decode(encode(text))` gives back the NFKC-normalised text;
* post-processor: BERT-style `[CLS] A [SEP] B [SEP]` for encoders, `[BOS] A` for decoders.
"""

from __future__ import annotations

import logging
import os
import string
from collections.abc import Iterable
from typing import Any

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

__all__ = [
    "SPECIAL_TOKENS",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "CLS_TOKEN",
    "SEP_TOKEN",
    "MASK_TOKEN",
    "BOS_TOKEN",
    "EOS_TOKEN",
    "TEMPLATES",
    "HAN_PATTERN",
    "train_tokenizer",
    "check_tokenizer_fits",
    "load_tokenizer",
]

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
BOS_TOKEN = "[BOS]"
EOS_TOKEN = "[EOS]"

# The order fixes the ids ([PAD]=0 ... [EOS]=6): configs and checkpoints rely on them, so never reorder.
SPECIAL_TOKENS: list[str] = [PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN, BOS_TOKEN, EOS_TOKEN]

TEMPLATES = ("encoder", "decoder")

# CJK unified ideographs: extension A, the basic block, compatibility ideographs, and planes 2-3 (extensions B-H
# and the compatibility supplement). NFKC runs first, so Kangxi radicals and most compatibility ideographs have
# already become basic-block characters by the time this pattern sees them.
HAN_PATTERN = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]"

# The SentencePiece word-start marker that replaces a space.
_SPACE_MARKER = "\u2581"

# Always in the alphabet, even if the training text lacks them, so English text and line breaks never become [UNK].
_BASE_ALPHABET: list[str] = sorted(
    {_SPACE_MARKER, "\n", "\t", *string.ascii_letters, *string.digits, *string.punctuation}
)

_ENCODER_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
_DECODER_INPUT_NAMES = ["input_ids", "attention_mask"]


def _special_added_tokens() -> list[AddedToken]:
    """Special tokens in id order. `[MASK]` strips the space before it, like RoBERTa's `<mask>`, so that
    "the [MASK] of" tokenises as `▁the [MASK] ▁of` -- the shape masked-LM pretraining produces -- rather than
    leaving a lone `▁` token in front of the mask."""
    return [AddedToken(tok, special=True, normalized=False, lstrip=(tok == MASK_TOKEN)) for tok in SPECIAL_TOKENS]


def _build_backend() -> Tokenizer:
    """An untrained BPE tokenizer with Sora's normaliser, pre-tokeniser and decoder."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN, fuse_unk=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(HAN_PATTERN), behavior="isolated"),
            pre_tokenizers.Metaspace(replacement=_SPACE_MARKER, prepend_scheme="never", split=True),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE_MARKER, prepend_scheme="never", split=True)
    return tokenizer


def _post_processor(template: str, tokenizer: Tokenizer) -> processors.TemplateProcessing:
    """`[CLS] $A [SEP] ($B [SEP])` with segment ids 0/1 for encoders; `[BOS] $A ($B)` for decoders -- no `[EOS]`, so
    that a prompt is continued by generation rather than closed."""

    def ids(*tokens: str) -> list[tuple[str, int]]:
        return [(tok, tokenizer.token_to_id(tok)) for tok in tokens]

    if template == "encoder":
        return processors.TemplateProcessing(
            single=f"{CLS_TOKEN}:0 $A:0 {SEP_TOKEN}:0",
            pair=f"{CLS_TOKEN}:0 $A:0 {SEP_TOKEN}:0 $B:1 {SEP_TOKEN}:1",
            special_tokens=ids(CLS_TOKEN, SEP_TOKEN),
        )
    return processors.TemplateProcessing(
        single=f"{BOS_TOKEN}:0 $A:0",
        pair=f"{BOS_TOKEN}:0 $A:0 $B:1",
        special_tokens=ids(BOS_TOKEN),
    )


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    min_frequency: int = 2,
    model_max_length: int = 512,
    template: str = "encoder",
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a Sora tokenizer on `texts` (any iterable of strings, consumed lazily, so a generator over a large
    corpus is fine) and return it ready for `save_pretrained`.

    `vocab_size` counts the 7 special tokens. Every character seen in training stays in the vocabulary, so a corpus
    with more distinct characters than `vocab_size` gives a larger vocabulary (a warning says so): size the model
    with `len(tokenizer)` and check with `check_tokenizer_fits`. `template` is "encoder" (BERT-style
    `[CLS] A [SEP] B [SEP]` with token_type_ids) or "decoder" (`[BOS] A`, no token_type_ids).
    """
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {TEMPLATES}, got {template!r}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be larger than the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    if model_max_length < 1:
        raise ValueError(f"model_max_length must be positive, got {model_max_length}")

    backend = _build_backend()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=_special_added_tokens(),
        initial_alphabet=_BASE_ALPHABET,
        # limit_alphabet is left unset: the trainer then keeps every character seen, however rare.
        show_progress=show_progress,
    )
    backend.train_from_iterator(_only_strings(texts), trainer=trainer)

    for expected_id, tok in enumerate(SPECIAL_TOKENS):
        if backend.token_to_id(tok) != expected_id:  # pragma: no cover - guards a change in tokenizers' trainer
            raise RuntimeError(f"special token {tok} got id {backend.token_to_id(tok)}, expected {expected_id}")
    if backend.get_vocab_size() > vocab_size:
        logger.warning(
            "The training text has more distinct characters than vocab_size allows: the tokenizer has %d tokens "
            "(vocab_size=%d). Build the model with vocab_size=len(tokenizer).",
            backend.get_vocab_size(),
            vocab_size,
        )
    backend.post_processor = _post_processor(template, backend)
    return _wrap(backend, template=template, model_max_length=model_max_length)


def _only_strings(texts: Iterable[str]) -> Iterable[str]:
    """Pass texts through lazily, failing clearly on a non-string (tokenizers' own error names no culprit)."""
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not a single string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        yield text


def _wrap(backend: Tokenizer, template: str, model_max_length: int) -> PreTrainedTokenizerFast:
    """Wrap the trained backend in transformers' generic fast tokenizer (no custom class, so no remote code)."""
    added = {str(tok): tok for tok in _special_added_tokens()}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=added[PAD_TOKEN],
        unk_token=added[UNK_TOKEN],
        cls_token=added[CLS_TOKEN],
        sep_token=added[SEP_TOKEN],
        mask_token=added[MASK_TOKEN],
        bos_token=added[BOS_TOKEN],
        eos_token=added[EOS_TOKEN],
        # v5 defaults model_max_length to 1e30, which makes truncation=True a no-op.
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
        # Decoding must give back the text: the BERT-era clean-up would turn "a , b" into "a, b".
        clean_up_tokenization_spaces=False,
        model_input_names=list(_ENCODER_INPUT_NAMES if template == "encoder" else _DECODER_INPUT_NAMES),
    )


def check_tokenizer_fits(tokenizer: Any, config: Any) -> None:
    """Raise `ValueError` when `tokenizer` cannot drive a model built from `config`.

    Checked: `len(tokenizer) <= config.vocab_size` (larger ids would index past the embedding table), equal pad ids
    (when the config sets one), and `tokenizer.model_max_length <= config.max_position_embeddings` (when the config
    has it). `config` is duck typed: any object with those attributes. All problems are reported at once.
    """
    problems: list[str] = []
    n_tokens = len(tokenizer)
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is None:
        problems.append("the config has no vocab_size")
    elif n_tokens > vocab_size:
        problems.append(
            f"tokenizer has {n_tokens} tokens but the model's vocab_size is {vocab_size}: ids >= {vocab_size} would "
            f"index past the embedding table; train the tokenizer with vocab_size<={vocab_size} or build the model "
            f"with vocab_size={n_tokens} (len(tokenizer))"
        )

    config_pad = getattr(config, "pad_token_id", None)
    if config_pad is not None and tokenizer.pad_token_id != config_pad:
        problems.append(
            f"tokenizer pad_token_id is {tokenizer.pad_token_id} but the config's pad_token_id is {config_pad}: "
            "padding positions would not be recognised as padding; set config.pad_token_id=tokenizer.pad_token_id"
        )

    max_positions = getattr(config, "max_position_embeddings", None)
    max_length = getattr(tokenizer, "model_max_length", None)
    if max_positions is not None and max_length is not None and max_length > max_positions:
        problems.append(
            f"tokenizer model_max_length is {max_length} but the model's max_position_embeddings is "
            f"{max_positions}: sequences truncated to {max_length} would overflow the position table; set "
            f"tokenizer.model_max_length<={max_positions}"
        )

    if problems:
        raise ValueError("Tokenizer does not fit the model config: " + "; ".join(problems))


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_tokenizer(path: str | os.PathLike[str], **kwargs: Any) -> PreTrainedTokenizerFast:
    """Load a saved Sora tokenizer with `AutoTokenizer` (no custom code involved). `path` is a folder written by
    `save_pretrained` or a Hub repo id; a local folder without tokenizer files fails with a message that says so,
    instead of AutoTokenizer's generic error. `kwargs` go to `AutoTokenizer.from_pretrained`."""
    path_str = os.fspath(path)
    if os.path.isdir(path_str):
        if not os.path.isfile(os.path.join(path_str, "tokenizer.json")):
            present = sorted(os.listdir(path_str))
            raise FileNotFoundError(
                f"{path_str!r} holds no tokenizer.json (files there: {present or 'none'}); save one with "
                "tokenizer.save_pretrained(folder) or train one with sora_hf.tokenizer.train_tokenizer"
            )
    elif os.path.exists(path_str):
        raise NotADirectoryError(
            f"{path_str!r} is a file; pass the folder that holds {' and '.join(_TOKENIZER_FILES)}"
        )
    return AutoTokenizer.from_pretrained(path_str, **kwargs)
