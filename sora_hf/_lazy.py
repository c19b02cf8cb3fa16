"""Lazy package exports: `from sora_hf.training.adversarial import AdversarialTrainer` imports the trainer module
(and torch) on first use, so that the recipe parser can import a package's `config` without torch, and `sora-hf
serve --help` reads `sora_hf.serving.settings` without FastAPI."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, **modules: tuple[str, ...]) -> tuple[Callable[[str], Any], list[str]]:
    """A module `__getattr__` for `package` that imports submodule `m` when one of `modules[m]` is read, and the
    package's `__all__`."""
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{exports[name]}", package), name)

    return __getattr__, sorted(exports)
