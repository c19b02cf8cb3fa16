"""The evaluation: score a fine-tuned model on perturbed copies of its test split."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from ...tasks import Task, get_task, task_types
from ...validation import RecipeError
from .perturb import CharPerturber

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# datasets


def perturb_dataset(dataset, info, perturber: CharPerturber, seed: int, tag: str = "") -> tuple[Any, float]:
    """The test split with its texts (or tokens and tags) perturbed; and the fraction of characters edited."""
    check_robustness_task(info.task_type)
    task = get_task(info.task_type)
    columns = [c for c in task.perturbed_columns if c in dataset.column_names]
    names = list(info.label_names or [])
    scheme = info.tag_scheme or "BIO"

    def edit(example: dict[str, Any], index: int) -> dict[str, Any]:
        rng = random.Random(f"{seed}:{tag}:{index}")
        if task.perturbs_tagged_tokens:
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
    options = recipe.robustness
    task = get_task(info.task_type)
    metric = task.headline_metric(info)
    variants = {"mixed": options.kinds}
    if options.per_kind and len(options.kinds) > 1:
        variants.update({kind: (kind,) for kind in options.kinds})
    results: dict[str, Any] = {}
    samples = None
    for name, kinds in variants.items():
        perturber = CharPerturber(options.rate, kinds, options.visual_table)
        perturbed, edited = perturb_dataset(test, info, perturber, options.seed, tag=name)
        features = task.encode(recipe, info, perturbed, tokenizer, name=f"perturbed ({name})")
        predictions = task.predict(model, features, collator, tokenizer, perturbed, batch_size, recipe)
        scores = task.score(info, perturbed, predictions)
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
        _write_examples(Path(output_dir or recipe.output_dir) / options.examples_file, test, samples, task)
    logger.info("robustness (%s, rate %.2f): %s", ", ".join(options.kinds), options.rate, summary["perturbed"])
    return summary


def _write_examples(path: Path, clean, perturbed, task: Task, limit: int = 50) -> None:
    columns = [c for c in task.perturbed_columns if c in clean.column_names]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(min(limit, len(clean))):
            row = {}
            for column in columns:
                before, after = clean[i][column], perturbed[i][column]
                if task.perturbs_tagged_tokens:
                    before, after = "".join(before), "".join(after)
                row[column] = before
                row[f"perturbed_{column}"] = after
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def check_robustness_task(task_type: str) -> None:
    """Refuse, before training, a robustness section on a task it cannot perturb."""
    if not get_task(task_type).perturbed_columns:
        raise RecipeError(
            f"robustness evaluation does not apply to {task_type} fine-tuning (perplexity on packed text); "
            f"it applies to {', '.join(task_types(lambda task: bool(task.perturbed_columns)))}"
        )
