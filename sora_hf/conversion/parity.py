"""Parity measured, not assumed: a converted model against its source on the same inputs, before anything is written.

The inputs are the tokenizer's encoding of a few Chinese and English sentences when there is a tokenizer, else
seeded random ids; a batch of two with the second row left-padded, so padding is compared too. The figures: the
largest absolute difference of the logits and of the last hidden states over the real positions, and whether greedy
decoding gives the same tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

SAMPLE_TEXTS = ("今天天气很好，我们去公园散步吧。", "The quick brown fox jumps over the lazy dog.")
NEW_TOKENS = 8


@dataclass
class ParityReport:
    """What `parity.json` records."""

    source: str
    target: str
    max_abs_logit_diff: float | None
    max_abs_hidden_diff: float
    max_abs_logit: float | None
    greedy_tokens_equal: bool | None
    tolerance: float
    inputs: dict[str, Any] = field(default_factory=dict)
    max_abs_embedding_diff: float | None = None  # sentence embeddings, pooled as the source's pooling config says

    @property
    def passed(self) -> bool:
        diffs = (self.max_abs_logit_diff, self.max_abs_hidden_diff, self.max_abs_embedding_diff)
        return max(d for d in diffs if d is not None) <= self.tolerance and self.greedy_tokens_equal is not False

    def figures(self) -> str:
        """The measured differences in words, e.g. "logits 0, hidden states 2.4e-07"."""
        named = (
            ("logits", self.max_abs_logit_diff),
            ("hidden states", self.max_abs_hidden_diff),
            ("sentence embeddings", self.max_abs_embedding_diff),
        )
        text = ", ".join(f"{name} {value:.2g}" for name, value in named if value is not None)
        return text if self.greedy_tokens_equal is None else f"{text}, greedy tokens equal: {self.greedy_tokens_equal}"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed}, indent=2) + "\n"


def sample_inputs(
    tokenizer: Any, vocab_size: int, seed: int = 0, side: str = "left"
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A padded batch of two (ids, mask; left-padded for decoders, right for encoders) and how it was made."""
    rows: list[list[int]]
    if tokenizer is not None:
        rows = [tokenizer(text, add_special_tokens=True)["input_ids"][:32] for text in SAMPLE_TEXTS]
        how = f"the tokenizer's encoding of {list(SAMPLE_TEXTS)}"
    else:
        generator = torch.Generator().manual_seed(seed)
        rows = [torch.randint(0, vocab_size, (n,), generator=generator).tolist() for n in (12, 7)]
        how = f"random token ids (seed {seed})"
    rows = [row if row else [0] for row in rows]
    length = max(map(len, rows))
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        start = length - len(row) if side == "left" else 0
        ids[i, start : start + len(row)] = torch.tensor(row)
        mask[i, start : start + len(row)] = 1
    return ids, mask, how


@torch.no_grad()
def compare_causal_lms(source_model, target_model, tokenizer, tolerance: float) -> ParityReport:
    """Logits, last hidden states and greedy tokens of two causal LMs on the same left-padded batch."""
    ids, mask, how = sample_inputs(tokenizer, source_model.config.vocab_size)
    source_model.eval()
    target_model.eval()
    kwargs = {"input_ids": ids, "attention_mask": mask, "output_hidden_states": True}
    expected, got = source_model(**kwargs), target_model(**kwargs)
    real = mask.bool()
    logit_diff = (expected.logits - got.logits)[real].abs().max().item()
    hidden_diff = (expected.hidden_states[-1] - got.hidden_states[-1])[real].abs().max().item()
    greedy = {"max_new_tokens": NEW_TOKENS, "do_sample": False, "pad_token_id": 0}
    source_tokens = source_model.generate(ids, attention_mask=mask, **greedy)
    target_tokens = target_model.generate(ids, attention_mask=mask, **greedy)
    return ParityReport(
        source=type(source_model).__name__,
        target=type(target_model).__name__,
        max_abs_logit_diff=logit_diff,
        max_abs_hidden_diff=hidden_diff,
        max_abs_logit=expected.logits[real].abs().max().item(),
        greedy_tokens_equal=bool(torch.equal(source_tokens, target_tokens)),
        tolerance=tolerance,
        inputs={"how": how, "shape": list(ids.shape), "padded": "left", "new_tokens": NEW_TOKENS},
    )


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling over the real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@torch.no_grad()
def compare_encoders(source_model, target_model, tokenizer, tolerance: float, head: str) -> ParityReport:
    """Last hidden states of two encoders on one right-padded batch, and the head's output where the source has the
    same head: masked-LM logits, or sentence embeddings pooled as the target pools them."""
    ids, mask, how = sample_inputs(tokenizer, source_model.config.vocab_size, side="right")
    source_model.eval()
    target_model.eval()
    real = mask.bool()
    source_base = getattr(source_model, source_model.base_model_prefix, source_model)
    expected_hidden = source_base(input_ids=ids, attention_mask=mask).last_hidden_state
    got = target_model(input_ids=ids, attention_mask=mask)
    got_hidden = target_model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    report = ParityReport(
        source=type(source_model).__name__,
        target=type(target_model).__name__,
        max_abs_logit_diff=None,
        max_abs_hidden_diff=(expected_hidden - got_hidden)[real].abs().max().item(),
        max_abs_logit=None,
        greedy_tokens_equal=None,
        tolerance=tolerance,
        inputs={"how": how, "shape": list(ids.shape), "padded": "right"},
    )
    if head == "masked-lm":
        expected = source_model(input_ids=ids, attention_mask=mask).logits
        report.max_abs_logit_diff = (expected - got.logits)[real].abs().max().item()
        report.max_abs_logit = expected[real].abs().max().item()
    elif head == "sentence-embedding":
        pooling = target_model.config.classifier_pooling
        expected = expected_hidden[:, 0] if pooling == "cls" else mean_pool(expected_hidden, mask)
        report.max_abs_embedding_diff = (expected - got.embeddings).abs().max().item()
    return report


__all__ = ["ParityReport", "compare_causal_lms", "compare_encoders", "mean_pool", "sample_inputs"]
