"""The mechanism: character-level perturbations of Chinese text that keep BIO / BMES tags valid."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path

from .config import DEFAULT_KINDS, KINDS

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# tags <-> spans, so that edits of token sequences keep BIO / BMES tags valid


def tags_to_segments(tags: Sequence[str], scheme: str = "BIO") -> list[tuple[int, str] | None]:
    """Per token, (span id, span type) or None outside any span; lenient about a span that starts with I-/M-/E-."""
    segments: list[tuple[int, str] | None] = []
    span, open_type = -1, None
    for tag in tags:
        prefix, _, kind = tag.partition("-")
        if tag == "O":
            segments.append(None)
            open_type = None
            continue
        starts = prefix in ("B", "S") or open_type != kind
        if starts:
            span += 1
        segments.append((span, kind))
        open_type = None if prefix in ("S", "E") and scheme == "BMES" else kind
    return segments


def segments_to_tags(segments: Sequence[tuple[int, str] | None], scheme: str = "BIO") -> list[str]:
    tags = []
    for i, segment in enumerate(segments):
        if segment is None:
            tags.append("O")
            continue
        first = i == 0 or segments[i - 1] != segment
        last = i == len(segments) - 1 or segments[i + 1] != segment
        suffix = f"-{segment[1]}" if segment[1] else ""
        if scheme == "BMES":
            prefix = "S" if first and last else "B" if first else "E" if last else "M"
        else:
            prefix = "B" if first else "I"
        tags.append(prefix + suffix)
    return tags


# ---------------------------------------------------------------------------------------------------------------
# the perturber


class CharPerturber:
    """Seeded character-level edits of Chinese text and of tagged token sequences.

    `perturb_text(text, rng)` and `perturb_tokens(tokens, tags, rng)` return the edited copy and the number of
    edits. Every call takes its own `random.Random`, so results do not depend on the order examples are visited.
    """

    def __init__(self, rate: float, kinds: Sequence[str] = DEFAULT_KINDS, visual_table: str | Path | None = None):
        from ...data.char_tables import common_characters, homophone_table, load_visual_table

        if not 0 <= rate <= 1:
            raise ValueError(f"rate={rate} must be in [0, 1]")
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds={list(kinds)} must be a non-empty list of {', '.join(KINDS)}")
        self.rate, self.kinds = rate, tuple(kinds)
        self.substitutes: dict[str, dict[str, tuple[str, ...]]] = {}
        if "homophone" in kinds:
            self.substitutes["homophone"] = homophone_table()
        if "visual" in kinds:
            if visual_table is None:
                raise ValueError("the visual kind needs a visual_table (no look-alike table ships offline)")
            self.substitutes["visual"] = load_visual_table(visual_table)
        self.insertable = common_characters()

    def _edit_count(self, length: int, rng: random.Random) -> int:
        return math.floor(self.rate * length + rng.random()) if self.rate > 0 else 0

    def perturb_text(self, text: str, rng: random.Random) -> tuple[str, int]:
        units = list(text)
        units, _, edits = self._perturb(units, None, rng, outside_allowed=True)
        return "".join(units), edits

    def perturb_tokens(
        self, tokens: Sequence[str], tags: Sequence[str], rng: random.Random, scheme: str = "BIO", has_outside=True
    ) -> tuple[list[str], list[str], int]:
        """Edit whole tokens (deletion, insertion, swap) or a character inside one (substitution), keeping tags
        valid in `scheme`; `has_outside=False` for tag sets without `O` (an insertion then joins a span)."""
        segments = tags_to_segments(tags, scheme)
        units, segments, edits = self._perturb(list(tokens), segments, rng, outside_allowed=has_outside)
        return units, segments_to_tags(segments, scheme), edits

    def _perturb(self, units: list[str], segments: list | None, rng: random.Random, outside_allowed: bool):
        touched = [unit.isspace() or not unit for unit in units]
        budget = self._edit_count(sum(not t for t in touched), rng)
        edits = 0
        new_span = -1  # ids for spans that insertions open outside every span (tag sets without O)
        for _ in range(budget):
            choices = []
            for kind in self.kinds:
                positions = self._eligible(kind, units, segments, touched)
                if positions:
                    choices.append((kind, positions))
            if not choices:
                break
            kind, positions = rng.choice(choices)
            i = rng.choice(positions)
            if kind in self.substitutes:
                table = self.substitutes[kind]
                chars = [k for k, ch in enumerate(units[i]) if ch in table]
                k = rng.choice(chars)
                units[i] = units[i][:k] + rng.choice(table[units[i][k]]) + units[i][k + 1 :]
                touched[i] = True
            elif kind == "delete":
                del units[i], touched[i]
                if segments is not None:
                    del segments[i]
            elif kind == "swap":
                units[i], units[i + 1] = units[i + 1], units[i]
                touched[i] = touched[i + 1] = True
            else:  # insert before position i
                units.insert(i, rng.choice(self.insertable))
                touched.insert(i, True)
                if segments is not None:
                    segments.insert(i, self._inserted_segment(segments, i, outside_allowed, new_span))
                    new_span -= 1
            edits += 1
        return units, segments, edits

    def _eligible(self, kind: str, units: list[str], segments: list | None, touched: list[bool]) -> list[int]:
        n = len(units)
        if kind in self.substitutes:
            table = self.substitutes[kind]
            return [i for i in range(n) if not touched[i] and any(ch in table for ch in units[i])]
        if kind == "delete":
            free = [i for i in range(n) if not touched[i]]
            return free if n > 1 else []
        if kind == "swap":
            return [
                i
                for i in range(n - 1)
                if not touched[i]
                and not touched[i + 1]
                and units[i] != units[i + 1]
                and (segments is None or segments[i] == segments[i + 1])
            ]
        # insert: before any untouched unit, or at the end
        return [i for i in range(n + 1) if i == n or not touched[i]]

    @staticmethod
    def _inserted_segment(segments: list, i: int, outside_allowed: bool, new_span: int):
        before = segments[i - 1] if i > 0 else None
        after = segments[i] if i < len(segments) else None
        if before is not None and before == after:
            return before  # inside a span: it continues
        if outside_allowed:
            return None
        neighbour = before if before is not None else after
        return neighbour if neighbour is not None else (new_span, "")
