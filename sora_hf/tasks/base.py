"""What every task type provides (`Task`), the features it hands to the Trainer (`Features`), and the pieces task
types share: the batched forward pass that collects a head's outputs, and the `predictions.jsonl` writer.

A task type is one `Task` instance in `sora_hf.tasks.TASKS`. Its hooks take duck-typed arguments, so that nothing
here imports the runners: `recipe` is anything with the recipe's `max_length`, `doc_stride` and `max_target_length`,
`info` anything with the `TaskInfo` fields (`task_type`, `label_names`, `problem_type`, `tag_scheme`).

This package imports no torch, transformers or datasets at module level: `import sora_hf.tasks` stays cheap enough
for the recipe schema to validate task types against `TASKS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..configuration_sora import MULTITASK_TYPES
from ..validation.errors import RecipeError

if TYPE_CHECKING:
    from datasets import Dataset

# batch keys that are targets, not model inputs, when a split is predicted
TARGET_KEYS = ("labels", "start_positions", "end_positions")
# model outputs that prediction collects, in this order
OUTPUT_KEYS = ("logits", "start_logits", "end_logits", "embeddings")


@dataclass
class Features:
    """Model inputs for Trainer plus what is needed to map predictions back to the examples."""

    dataset: Dataset
    meta: list[dict[str, Any]] = field(default_factory=list)


def label_names(info) -> list[str]:
    return list(info.label_names or [])


def first_output(outputs):
    """The first of the model outputs Trainer hands `preprocess_logits_for_metrics` (the logits, or the embeddings)."""
    return outputs[0] if isinstance(outputs, tuple | list) else outputs


def evaluation_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """`score`'s `test_*` numbers under their bare names, for Trainer to log as `eval_*` at each evaluation."""
    return {k.removeprefix("test_"): v for k, v in scores.items() if not isinstance(v, dict | list)}


def collect_outputs(model, features: Features, collator, batch_size: int, transform=None) -> dict[str, list]:
    """The model's outputs (`OUTPUT_KEYS`) on every row of `features`, in batches, as per-row float32 arrays.

    `transform(key, value, model, batch)` may replace an output tensor before it is collected (similarity turns the
    first sentence's embeddings into the pair's cosine).
    """
    import torch

    device = next(model.parameters()).device
    outputs: dict[str, list] = {}
    with torch.no_grad():
        for start in range(0, len(features.dataset), batch_size):
            rows = [features.dataset[i] for i in range(start, min(start + batch_size, len(features.dataset)))]
            batch = {k: v.to(device) for k, v in collator(rows).items() if k not in TARGET_KEYS}
            out = model(**batch)
            for key in OUTPUT_KEYS:
                value = out.get(key) if hasattr(out, "get") else None
                if value is None:
                    continue
                if transform is not None:
                    value = transform(key, value, model, batch)
                arrays = value.float().cpu().numpy()
                outputs.setdefault(key, []).extend(list(arrays))
    return outputs


class Task:
    """One task type: everything that differs between task types, behind one set of hooks.

    Facts (class attributes): `name` (the recipe's `task_type`), `auto_class_name` (the transformers Auto class
    of its head; `auto_class` imports it), `pipeline_tag` (the model card's), `perturbed_columns` (what robustness
    evaluation edits; empty: it does not apply), `perturbs_tagged_tokens` (those columns are token lists whose tags
    must stay aligned), `headline` (the test metric a run is judged by), `distillable` (its outputs have logits to
    distil), `has_label_names` (the head's `id2label` is the
    task's label list) and `has_problem_type` (the head's `problem_type` comes from the task); `multitask_head`
    (`SoraForMultiTask` has a head for it) is SoraConfig's fact, read from there.

    Hooks: `check_config` (can a checkpoint serve the task), `model_kwargs` (config overrides of the head),
    `encode` (a split to `Features`), `collator`, `training_defaults` and `loss_function` (what Trainer needs beyond
    the head), `predict` (raw predictions mapped back to the examples), `score`
    (the `test_*` metrics), `write_reports` (`predictions.jsonl` and any task report) and `multitask_head_spec`.
    """

    name: ClassVar[str]
    auto_class_name: ClassVar[str]
    pipeline_tag: ClassVar[str]
    perturbed_columns: ClassVar[tuple[str, ...]] = ()
    perturbs_tagged_tokens: ClassVar[bool] = False
    headline: ClassVar[str | None] = None
    distillable: ClassVar[bool] = False
    has_label_names: ClassVar[bool] = False
    has_problem_type: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    def multitask_head(self) -> bool:
        """`SoraForMultiTask` has a head for this task type (SoraConfig's `MULTITASK_TYPES`)."""
        return self.name in MULTITASK_TYPES

    # ---- the model ------------------------------------------------------------------------------------------

    @property
    def auto_class(self):
        import transformers

        return getattr(transformers, self.auto_class_name)

    def check_config(self, config, checkpoint) -> None:
        """Refuse a checkpoint that cannot serve the task; the default: the task needs a Sora encoder."""
        if config.is_decoder or config.is_encoder_decoder:
            kind = "an encoder-decoder" if config.is_encoder_decoder else "a causal decoder"
            raise RecipeError(
                f"checkpoint {checkpoint} is {kind} ({config.architectures}); {self.name} needs a Sora encoder "
                "(pre-trained with the mlm or rtd objective)"
            )

    def model_kwargs(self, info) -> dict[str, Any]:
        """Config overrides of the task's head: its labels and problem type."""
        kwargs: dict[str, Any] = {}
        if self.has_label_names and info.label_names:
            kwargs["id2label"] = dict(enumerate(info.label_names))
            kwargs["label2id"] = {name: i for i, name in enumerate(info.label_names)}
        if self.has_problem_type:
            kwargs["problem_type"] = info.problem_type
            if info.problem_type == "regression":
                kwargs.update(num_labels=1, id2label={0: "score"}, label2id={"score": 0})
        return kwargs

    def multitask_head_spec(self, info) -> dict[str, Any]:
        """The `SoraConfig.tasks` entry of this task's head, less its `type` and `loss_weight`."""
        if not self.multitask_head:
            raise RecipeError(f"{self.name} has no multi-task head")
        spec: dict[str, Any] = {}
        if self.has_label_names:
            spec["labels"] = label_names(info)
        if self.has_problem_type and info.problem_type:
            spec["problem_type"] = info.problem_type
            if info.problem_type == "regression":
                spec["labels"] = ["score"]
        if info.tag_scheme:
            spec["tag_scheme"] = info.tag_scheme
        return spec

    # ---- data -----------------------------------------------------------------------------------------------

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        """One split's model features (also used to score perturbed copies of the test split)."""
        raise NotImplementedError

    def collator(self, tokenizer, model):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    # ---- training -------------------------------------------------------------------------------------------

    def training_defaults(self) -> dict[str, Any]:
        """Trainer arguments the task needs unless the recipe sets them."""
        return {}

    def loss_function(self):
        """Trainer's `compute_loss_func` for the task; None: the head computes its loss from the labels itself."""
        return None

    # ---- evaluation -----------------------------------------------------------------------------------------

    def predict(self, model, features: Features, collator, tokenizer, dataset, batch_size: int, recipe):
        """Raw predictions for a split, mapped back to its examples (labels, tags, answer texts, generated texts)."""
        import torch

        model.eval()
        with torch.no_grad():
            return self._predict(model, features, collator, tokenizer, dataset, batch_size, recipe)

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        raise NotImplementedError

    def eval_metrics(self, info, dataset, features: Features, model):
        """Trainer's `(compute_metrics, preprocess_logits_for_metrics)` that give every evaluation during training
        the task's own metrics (what `score` gives the test split, logged as `eval_*` beside `eval_loss`) from the
        outputs the evaluation computes anyway; `dataset` and `features` are the evaluated split's. None: the
        task's metrics need more than those outputs (generation), and evaluations report the loss only."""
        return None

    def headline_metric(self, info) -> str | None:
        """The score a run (and a perturbed split) is judged by."""
        return self.headline

    def score(self, info, test, predictions) -> dict[str, Any]:
        """The task's natural metrics, prefixed `test_`."""
        raise NotImplementedError

    def prediction_row(self, example, prediction, names: list[str], info) -> dict[str, Any]:
        raise NotImplementedError

    def prediction_rows(self, info, test, predictions) -> list[dict[str, Any]]:
        names = label_names(info)
        return [self.prediction_row(example, predictions[i], names, info) for i, example in enumerate(test)]

    def write_reports(self, output_dir: Path, info, test, predictions, metrics: dict[str, Any]) -> None:
        """predictions.jsonl for every task; a confusion matrix PNG or a per-entity report where they apply."""
        rows = self.prediction_rows(info, test, predictions)
        with (output_dir / "predictions.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.write_task_reports(output_dir, info, test, predictions, metrics)

    def write_task_reports(self, output_dir: Path, info, test, predictions, metrics: dict[str, Any]) -> None:
        """Reports beyond predictions.jsonl; none by default."""
