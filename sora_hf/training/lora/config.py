"""The recipe's `lora:` section, parsed once into `LoraOptions` (imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...validation import check_keys
from ...validation.values import _dataclass_kinds, typed_mapping


@dataclass(frozen=True)
class LoraOptions:
    """A parsed `lora:` recipe section: peft `LoraConfig` arguments under the recipe's names."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | str | None = None  # None: sora_hf's default for model_type "sora"
    modules_to_save: list[str] = field(default_factory=list)  # trained whole and saved with the adapter


def parse_lora_options(raw: dict[str, Any]) -> tuple[LoraOptions, dict[str, Any]]:
    """Validate a `lora:` section (keys and value types from `LoraOptions`' annotations); the options, and the given
    keys typed (what the run's recipe.yaml records)."""
    kinds = _dataclass_kinds(LoraOptions)
    check_keys("lora", raw, set(kinds))
    typed = typed_mapping("lora", raw, kinds)
    return LoraOptions(**typed), typed
