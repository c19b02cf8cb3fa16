"""Token classification whose `aggregation_strategy` groups BMES and BIOES spans, not only BIO ones.

transformers' `TokenClassificationPipeline` reads every tag as `B-`, `I-` or a bare type, so a BMES-tagged
organisation (`B-ORG M-ORG ... E-ORG`) comes back in pieces and a bare `B M E S` segmentation not at all. This
subclass groups a span from its `B`/`S` to its `E`/`S` (BMES and BIOES, typed or bare, where a bare span is a
word, `entity_group` "WORD"), and is transformers' own class for every model whose labels are BIO: `import sora_hf`
installs it as the token-classification pipeline for any family (see `register_pipelines`).

A model with a CRF (`SoraForTokenClassification` with `use_crf`) is decoded by its CRF: each token's tag is the
Viterbi path's (over the non-special tokens), and its score the CRF's marginal probability of that tag (where the
Viterbi tag is not the most probable one alone, the others are capped below it and the scores renormalised).
"""

from __future__ import annotations

import torch
from transformers import TokenClassificationPipeline

_POSITIONS = {"B", "I", "M", "E", "S"}
WORD = "WORD"  # the entity_group of a span tagged with bare B/M/E/S (word segmentation)


def span_tag(label: str) -> tuple[str, str]:
    """(position, type) of a tag: `B-ORG` -> (B, ORG), `E-LOC` -> (E, LOC), bare `S` -> (S, WORD), `O` -> (O, O)."""
    position, dash, kind = label.partition("-")
    if dash and position in _POSITIONS:
        return position, kind
    if label in _POSITIONS:
        return label, WORD
    return "O", label


def uses_span_ends(labels: list[str]) -> bool:
    """Whether a label set marks span ends (BMES or BIOES: an `E` or `S` position, or bare `B/M/E/S` tags)."""
    return any(span_tag(label)[0] in ("E", "S", "M") for label in labels) or any(
        label in _POSITIONS for label in labels
    )


class SoraTokenClassificationPipeline(TokenClassificationPipeline):
    """`TokenClassificationPipeline` with BMES / BIOES grouping; BIO models get the parent's behaviour unchanged."""

    def _span_scheme(self) -> bool:
        labels = list(getattr(self.model.config, "id2label", {}).values())
        return uses_span_ends(labels)

    def _forward(self, model_inputs):
        outputs = super()._forward(model_inputs)
        crf = getattr(self.model, "crf", None)
        if crf is not None:
            mask = outputs["attention_mask"].bool() & ~outputs["special_tokens_mask"].bool()
            mask = mask.to(outputs["logits"].device)
            tags = crf.decode(outputs["logits"], mask).clamp(min=0)[..., None]
            marginals = crf.log_marginals(outputs["logits"], mask).exp()
            # the Viterbi tag on top of each tagged token's scores, keeping its marginal probability
            chosen = marginals.gather(-1, tags)
            capped = torch.minimum(marginals, chosen * (1 - 1e-6)).scatter(-1, tags, chosen)
            outputs["logits"] = torch.where(mask[..., None], capped, marginals).clamp(min=1e-12).log()
        return outputs

    def group_entities(self, entities: list[dict]) -> list[dict]:
        if not self._span_scheme():
            return super().group_entities(entities)
        groups: list[dict] = []
        current: list[dict] = []
        current_type: str | None = None

        def close() -> None:
            nonlocal current, current_type
            if current:
                group = self.group_sub_entities(current)
                group["entity_group"] = current_type
                groups.append(group)
            current, current_type = [], None

        for entity in entities:
            position, kind = span_tag(entity["entity"])
            if position == "O":
                close()
                current, current_type = [entity], kind
                close()
                continue
            if position in ("B", "S") or kind != current_type or not current:
                close()
                current_type = kind
            current.append(entity)
            if position in ("E", "S"):
                close()
        close()
        return groups
