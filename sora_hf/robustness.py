"""Robustness of a fine-tuned model to character-level noise that matters for Chinese text.

Switched on by a recipe section; after the clean test split is scored, the same test split is perturbed (seeded)
and scored again with the task's own metric::

    robustness:
      rate: 0.1                                      # fraction of characters (tokens) edited per text
      kinds: [homophone, delete, insert, swap]       # the default; `visual` needs `visual_table:`
      seed: 0
      per_kind: true                                 # also score each kind alone at the same rate

Kinds of edit (each edited character is edited once; the number of edits per text is `rate * length`, rounded
up or down at random so that its mean is exact):

* ``homophone``: a character becomes a common character with the same toneless pinyin (snownlp's table): 在->再.
* ``visual``: a character becomes a look-alike from the user's table (no such table ships offline).
* ``delete``: a character is dropped.
* ``insert``: a common character is inserted.
* ``swap``: two neighbouring characters trade places.

What is perturbed per task: the text (and its pair) for classification and similarity, the question for extractive
QA (the context and its answer spans stay exact), the source for seq2seq, and the tokens of token classification
with their tags kept aligned: a deleted token takes its tag with it (and the entity's next token becomes its `B-`),
an inserted token inside an entity continues it (`I-`), one outside is `O` (or joins the preceding span for tag
sets without `O`, such as BMES segmentation), and only neighbours inside the same span (or both outside) swap.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .recipes import RecipeError, check_keys

logger = logging.getLogger(__name__)

KINDS = ("homophone", "visual", "delete", "insert", "swap")
DEFAULT_KINDS = ("homophone", "delete", "insert", "swap")
ROBUSTNESS_KEYS = {"rate", "kinds", "seed", "per_kind", "visual_table", "examples_file"}
# The columns perturbed per task type; causal LM fine-tuning scores perplexity on packed text and has none.
PERTURBED_COLUMNS = {
    "classification": ("text", "text_pair"),
    "similarity": ("text", "text_pair"),
    "question_answering": ("question",),
    "seq2seq": ("source",),
    "token_classification": ("tokens",),
}
# The score a perturbed split is judged by, per task type (classification: per problem type).
HEADLINE_METRICS = {
    "single_label_classification": "test_accuracy",
    "multi_label_classification": "test_f1_micro",
    "regression": "test_spearman",
    "token_classification": "test_overall_f1",
    "question_answering": "test_f1",
    "seq2seq": "test_chrf",
    "similarity": "test_spearman",
}


@dataclass(frozen=True)
class RobustnessOptions:
    """A parsed `robustness:` recipe section (see the module docstring)."""

    rate: float = 0.1
    kinds: tuple[str, ...] = DEFAULT_KINDS
    seed: int = 0
    per_kind: bool = True
    visual_table: str | None = None
    examples_file: str | None = "robustness_examples.jsonl"  # a sample of perturbed texts, in the run folder


def parse_robustness_options(raw: dict[str, Any]) -> RobustnessOptions:
    """Validate a `robustness:` section; raises RecipeError naming the key, its value and what is allowed."""
    check_keys("robustness", raw, ROBUSTNESS_KEYS)
    rate = raw.get("rate", 0.1)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise RecipeError(
            f"robustness.rate={rate!r} must be a fraction in (0, 1]: the share of characters edited (0.1 = 10%)"
        )
    kinds = raw.get("kinds", list(DEFAULT_KINDS))
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list | tuple) or not kinds:
        raise RecipeError(f"robustness.kinds={kinds!r} must be a non-empty list of {', '.join(KINDS)}")
    for kind in kinds:
        if kind not in KINDS:
            raise RecipeError(f"robustness.kinds has {kind!r}, which is not one of {', '.join(KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise RecipeError(f"robustness.kinds={list(kinds)} names a kind twice")
    visual_table = raw.get("visual_table")
    if "visual" in kinds and not visual_table:
        raise RecipeError(
            "robustness.kinds has 'visual' but robustness.visual_table is not set: no table of visually similar "
            "characters ships offline with snownlp or any installed package; give a file with one group of "
            "look-alike characters per line (e.g. 己已巳)"
        )
    if visual_table and not Path(visual_table).is_file():
        raise RecipeError(f"robustness.visual_table={visual_table!r} is not a file")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecipeError(f"robustness.seed={seed!r} must be a whole number >= 0")
    per_kind = raw.get("per_kind", True)
    if not isinstance(per_kind, bool):
        raise RecipeError(f"robustness.per_kind={per_kind!r} must be true or false")
    examples_file = raw.get("examples_file", RobustnessOptions.examples_file)
    return RobustnessOptions(float(rate), tuple(kinds), seed, per_kind, visual_table, examples_file)


def check_robustness_task(task_type: str) -> None:
    """Refuse, before training, a robustness section on a task it cannot perturb."""
    if task_type not in PERTURBED_COLUMNS:
        raise RecipeError(
            f"robustness evaluation does not apply to {task_type} fine-tuning (perplexity on packed text); "
            f"it applies to {', '.join(PERTURBED_COLUMNS)}"
        )


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
        from .data.char_tables import common_characters, homophone_table, load_visual_table

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


# ---------------------------------------------------------------------------------------------------------------
# datasets


def perturb_dataset(dataset, info, perturber: CharPerturber, seed: int, tag: str = "") -> tuple[Any, float]:
    """The test split with its texts (or tokens and tags) perturbed; and the fraction of characters edited."""
    task_type = info.task_type
    check_robustness_task(task_type)
    columns = [c for c in PERTURBED_COLUMNS[task_type] if c in dataset.column_names]
    names = list(info.label_names or [])
    scheme = info.tag_scheme or "BIO"

    def edit(example: dict[str, Any], index: int) -> dict[str, Any]:
        rng = random.Random(f"{seed}:{tag}:{index}")
        if task_type == "token_classification":
            tags = [names[t] for t in example["tags"]]
            tokens, tags, edits = perturber.perturb_tokens(
                example["tokens"], tags, rng, scheme=scheme, has_outside="O" in names
            )
            if any(t not in names for t in tags):  # e.g. a BMES S- tag this tag set never had: keep it clean
                return {"tokens": list(example["tokens"]), "tags": list(example["tags"]), "_edits": 0, "_units": 0}
            units = len(example["tokens"])
            return {"tokens": tokens, "tags": [names.index(t) for t in tags], "_edits": edits, "_units": units}
        out: dict[str, Any] = {"_edits": 0, "_units": 0}
        for column in columns:
            if example[column] is None:
                continue
            out[column], edits = perturber.perturb_text(example[column], rng)
            out["_edits"] += edits
            out["_units"] += sum(not ch.isspace() for ch in example[column])
        return out

    perturbed = dataset.map(edit, with_indices=True, load_from_cache_file=False, desc=f"Perturbing ({tag or 'all'})")
    fraction = sum(perturbed["_edits"]) / max(sum(perturbed["_units"]), 1)
    return perturbed.remove_columns(["_edits", "_units"]), fraction


def headline_metric(info) -> str:
    if info.task_type == "classification":
        return HEADLINE_METRICS[info.problem_type or "single_label_classification"]
    return HEADLINE_METRICS[info.task_type]


def evaluate_robustness(
    recipe,
    info,
    model,
    tokenizer,
    test,
    collator,
    batch_size: int,
    clean_metrics: dict[str, Any] | None = None,
    output_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score the model on the perturbed test split: all kinds mixed, and each kind alone (`per_kind`).

    The perturbed examples are written to `output_dir` (default: the recipe's; a run passes the folder it is
    being written in).

    Returns {"rate", "seed", "kinds", "metric", "clean", "perturbed", "drop", "edited_fraction", "mixed": {...},
    "per_kind": {kind: {...}}}, where "mixed" and each kind hold the task's scalar test metrics.
    """
    from . import task_metrics
    from .finetuning import encode_split, predict

    options = parse_robustness_options(recipe.robustness)
    metric = headline_metric(info)
    num_labels = len(info.label_names) if info.label_names else 1
    variants = {"mixed": options.kinds}
    if options.per_kind and len(options.kinds) > 1:
        variants.update({kind: (kind,) for kind in options.kinds})
    results: dict[str, Any] = {}
    samples = None
    for name, kinds in variants.items():
        perturber = CharPerturber(options.rate, kinds, options.visual_table)
        perturbed, edited = perturb_dataset(test, info, perturber, options.seed, tag=name)
        features = encode_split(recipe, info, perturbed, tokenizer, num_labels, name=f"perturbed ({name})")
        predictions = predict(model, info.task_type, features, collator, tokenizer, perturbed, batch_size, recipe)
        scores = task_metrics.score(info, perturbed, predictions)
        results[name] = {k: v for k, v in scores.items() if isinstance(v, int | float)} | {"edited_fraction": edited}
        if name == "mixed":
            samples = perturbed
    summary: dict[str, Any] = {
        "rate": options.rate,
        "seed": options.seed,
        "kinds": list(options.kinds),
        "metric": metric,
        "perturbed": results["mixed"].get(metric),
        "edited_fraction": round(results["mixed"]["edited_fraction"], 4),
        "mixed": results["mixed"],
        "per_kind": {k: v for k, v in results.items() if k != "mixed"},
    }
    if clean_metrics is not None and metric in clean_metrics and summary["perturbed"] is not None:
        summary["clean"] = clean_metrics[metric]
        summary["drop"] = clean_metrics[metric] - summary["perturbed"]
    if options.examples_file and samples is not None:
        _write_examples(Path(output_dir or recipe.output_dir) / options.examples_file, test, samples, info.task_type)
    logger.info("robustness (%s, rate %.2f): %s", ", ".join(options.kinds), options.rate, summary["perturbed"])
    return summary


def _write_examples(path: Path, clean, perturbed, task_type: str, limit: int = 50) -> None:
    columns = [c for c in PERTURBED_COLUMNS[task_type] if c in clean.column_names]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(min(limit, len(clean))):
            row = {}
            for column in columns:
                before, after = clean[i][column], perturbed[i][column]
                if task_type == "token_classification":
                    before, after = "".join(before), "".join(after)
                row[column] = before
                row[f"perturbed_{column}"] = after
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
