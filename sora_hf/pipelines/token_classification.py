"""Token classification whose `aggregation_strategy` groups BMES and BIOES spans, not only BIO ones.

transformers' `TokenClassificationPipeline` reads every tag as `B-`, `I-` or a bare type, so a BMES-tagged
organisation (`B-ORG M-ORG ... E-ORG`) comes back in pieces and a bare `B M E S` segmentation not at all. This
subclass groups a span from its `B`/`S` to its `E`/`S` (BMES and BIOES, typed or bare, where a bare span is a
word, `entity_group` "WORD"), and is transformers' own class for every model whose labels are BIO: `import sora_hf`
installs it as the token-classification pipeline for any family (see `register_pipelines`).
"""

from __future__ import annotations

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
