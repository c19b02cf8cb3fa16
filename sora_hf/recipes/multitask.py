"""The multi-task recipe (`MultiTaskRecipe`, one `TaskSection` per task) and its parser, which validates it
completely (keys, tasks, sampling, weighting) before any data is loaded. Like the other recipe kinds it imports
neither torch nor transformers; the sampler, model and trainer are in `sora_hf.training.multitask`.

A recipe (`recipes/multitask/zh-sentiment-ner.yaml`):

```yaml
name: zh-sentiment-ner
checkpoint: runs/quickstart/pretrain
output_dir: runs/zh-sentiment-ner
method: full                # or lora
sampling: temperature       # proportional | temperature | uniform
temperature: 2.0
loss_weighting: fixed       # fixed | uncertainty
tasks:
  sentiment: {data: {embedded: sentiment}}
  ner: {data: {embedded: ner}, loss_weight: 1.0}
training: {num_train_epochs: 1}
```
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.lora.config import LoraOptions, parse_lora_options
from ..training.multitask.config import LOSS_WEIGHTING, SAMPLING
from ..validation.choices import EMBEDDED_TASK_TYPES
from ..validation.errors import RecipeError, _suggest, check_keys
from ..validation.values import coerce_numbers, typed_mapping
from .io import read_recipe
from .schema import (
    INTERNAL_FIELDS,
    FinetuneDataSection,
    FinetuneRecipe,
    parse_data_section,
)
from .sources import check_model_section, check_training_section, multitask_head_types

TOP_LEVEL_KINDS = {
    "max_length": frozenset({"int"}),
    "doc_stride": frozenset({"int"}),
    "seed": frozenset({"int"}),
    "temperature": frozenset({"float"}),
}
TASK_KEYS = {"data", "loss_weight"}


@dataclass
class TaskSection:
    """One task of a multi-task recipe: its data (the fine-tuning `data:` section) and fixed loss weight."""

    data: FinetuneDataSection
    loss_weight: float = 1.0


@dataclass
class MultiTaskRecipe:
    name: str
    output_dir: str
    checkpoint: str  # a pre-trained Sora encoder folder, or a saved multi-task model to continue
    tasks: dict[str, TaskSection]
    method: str = "full"  # full | lora
    max_length: int = 128
    doc_stride: int = 32
    seed: int = 42
    sampling: str = "proportional"  # proportional | temperature | uniform
    temperature: float = 2.0  # sampling: temperature -> p_i ∝ n_i^(1/T)
    loss_weighting: str = "fixed"  # fixed | uncertainty
    lora: LoraOptions = field(default_factory=LoraOptions)  # method: lora (sora_hf.training.lora)
    model: dict[str, Any] = field(default_factory=dict)  # SoraConfig overrides (pooling, dropout...)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source_path: str | None = None
    effective: dict[str, Any] = field(default_factory=dict)  # the recipe as it runs (recipe.yaml of the run)
    overrides: dict[str, Any] = field(default_factory=dict)  # `--set` and command-line options, dotted key -> value

    def task_recipe(self, task: str) -> FinetuneRecipe:
        """The fine-tuning recipe of one task, so that the fine-tuning loaders and encoders serve it unchanged."""
        return FinetuneRecipe(
            name=f"{self.name}/{task}",
            output_dir=self.output_dir,
            checkpoint=self.checkpoint,
            method=self.method,
            max_length=self.max_length,
            doc_stride=self.doc_stride,
            seed=self.seed,
            data=self.tasks[task].data,
        )


def parse_multitask_recipe(raw: dict[str, Any], source_path: str | None = None) -> MultiTaskRecipe:
    """Validate a multi-task recipe completely (keys, tasks, sampling, weighting) before any data is loaded."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level")
    check_keys("recipe", raw, {f.name for f in dataclasses.fields(MultiTaskRecipe)} - INTERNAL_FIELDS)
    for required in ("name", "output_dir", "checkpoint", "tasks"):
        if required not in raw:
            raise RecipeError(f"recipe is missing the required key {required!r}")
    raw_tasks = raw["tasks"]
    if not isinstance(raw_tasks, dict) or not raw_tasks:
        raise RecipeError("recipe.tasks must map task names to {data: ..., loss_weight: ...}, one entry per task")
    tasks = {}
    for name, spec in raw_tasks.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise RecipeError(f"task name {name!r} must be a Python identifier (it names the task's head)")
        if not isinstance(spec, dict) or "data" not in spec:
            raise RecipeError(f"tasks.{name} must be a mapping with a `data:` section, got {spec!r}")
        check_keys(f"tasks.{name}", spec, TASK_KEYS)
        # the fine-tuning data section (exactly one of embedded/train_file, task_type...), named tasks.<name>.data
        data, _ = parse_data_section(spec["data"], f"tasks.{name}.data")
        # the heads SoraForMultiTask has; embedded tasks of other types (pinyin: seq2seq) are refused here
        task_type = data.task_type or EMBEDDED_TASK_TYPES.get(data.embedded or "")
        if task_type not in multitask_head_types():  # SoraConfig's, read from its source
            supported = ", ".join(multitask_head_types())
            raise RecipeError(f"tasks.{name}: task type {task_type!r} has no multi-task head; supported: {supported}")
        weight = coerce_numbers({"w": spec.get("loss_weight", 1.0)})["w"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise RecipeError(f"tasks.{name}.loss_weight={spec.get('loss_weight')!r} must be a positive number")
        tasks[name] = TaskSection(data=data, loss_weight=float(weight))
    lora_options, lora = parse_lora_options(raw.get("lora") or {})
    model = check_model_section(raw.get("model") or {}, exclude={"tasks", "task_loss_weighting"})
    training = check_training_section(raw.get("training") or {})
    numbers = {key: raw[key] for key in TOP_LEVEL_KINDS if key in raw}
    raw = {**raw, **typed_mapping("", numbers, TOP_LEVEL_KINDS)}
    recipe = MultiTaskRecipe(
        **{k: v for k, v in raw.items() if k not in ("tasks", "lora", "model", "training")},
        tasks=tasks,
        lora=lora_options,
        model=model,
        training=training,
        source_path=source_path,
    )
    recipe.effective = {
        **copy.deepcopy(raw),
        **({"lora": lora} if "lora" in raw else {}),
        **({"model": model} if "model" in raw else {}),
        **({"training": training} if "training" in raw else {}),
    }
    recipe.temperature = float(recipe.temperature)
    if recipe.method not in ("lora", "full"):
        raise RecipeError(f"recipe.method={recipe.method!r} must be 'lora' or 'full'")
    if recipe.sampling not in SAMPLING:
        raise RecipeError(
            f"recipe.sampling={recipe.sampling!r} must be one of {', '.join(SAMPLING)}"
            f"{_suggest(str(recipe.sampling), SAMPLING)}"
        )
    if not recipe.temperature > 0:
        raise RecipeError(f"recipe.temperature={recipe.temperature} must be positive")
    if recipe.loss_weighting not in LOSS_WEIGHTING:
        raise RecipeError(
            f"recipe.loss_weighting={recipe.loss_weighting!r} must be one of {', '.join(LOSS_WEIGHTING)}"
        )
    if recipe.doc_stride >= recipe.max_length // 2:
        raise RecipeError(f"doc_stride={recipe.doc_stride} must be under half of max_length={recipe.max_length}")
    if training.get("eval_strategy", "no") != "no":
        raise RecipeError(
            f"training.eval_strategy={training['eval_strategy']!r}: a multi-task run scores every task on its own "
            "test split after training; leave eval_strategy out (or 'no')"
        )
    return recipe


def load_multitask_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> MultiTaskRecipe:
    recipe = parse_multitask_recipe(read_recipe(path, overrides), source_path=str(path))
    recipe.overrides = dict(overrides or {})
    return recipe


__all__ = ["MultiTaskRecipe", "TaskSection", "load_multitask_recipe", "parse_multitask_recipe"]
