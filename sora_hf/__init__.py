"""Sora-HF: the Sora Transformer family for Chinese and English, native to the Hugging Face stack.

`import sora_hf` is cheap and the same everywhere (Python, the `sora-hf` command, `python -m sora_hf.cli` under a
launcher): the names below load on first use (PEP 562), and Sora is registered with transformers' Auto factories,
peft's LoRA defaults and the pipelines that transformers 5.23 removed (question answering, summarization, translation,
text2text) plus sentence similarity, on first use too: at once when transformers is already imported, otherwise as
soon as transformers is, or when a Sora class is first read from here. So `import sora_hf` then
`AutoModel.from_pretrained(<sora folder>)` works as for BERT or Llama, while `sora-hf --help` and a refused recipe
never import torch. `sora_hf.register()` registers explicitly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
import threading
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "SoraConfig",
    "SoraPreTrainedModel",
    "SoraModel",
    "SoraDecoderModel",
    "SoraForMaskedLM",
    "SoraForPreTraining",
    "SoraForCausalLM",
    "SoraForSeq2SeqLM",
    "SoraForSequenceClassification",
    "SoraForTokenClassification",
    "SoraForQuestionAnswering",
    "SoraForMultipleChoice",
    "SoraForSentenceEmbedding",
    "SoraForMultiTask",
    "AutoModelForMultiTask",
    "register",
]

_MODULES = {
    "SoraConfig": "configuration_sora",
    "SoraForMultiTask": "modeling_sora_multitask",
    "AutoModelForMultiTask": "modeling_sora_multitask",
    "register": "auto.registration",
}


def __getattr__(name: str) -> Any:
    """The classes and `register`, imported on first use; reading a class registers Sora first."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULES.get(name, 'modeling_sora')}", __name__), name)
    if name != "register":
        importlib.import_module(".auto.registration", __name__).register()
    globals()[name] = value
    return value


# the imports after which Sora can be registered: transformers (the registration needs it, and so torch, which
# `import sora_hf` does not load by itself), and what the registration imports: sora_hf's model files, the
# registration module and the pipelines (imported directly, they import transformers half-way through their own
# import, before their classes exist)
_SORA_MODULES = ("configuration_sora", "modeling_sora", "modeling_sora_multitask", "auto.registration", "pipelines")
_WATCHED = frozenset({"transformers", *(f"{__name__}.{module}" for module in _SORA_MODULES)})
_finding = threading.local()
_registering = False


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """A post-import hook: wraps the loader of each watched module so that Sora registers once the last of them
    has finished importing."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _WATCHED or getattr(_finding, "name", None) == fullname:
            return None
        _finding.name = fullname  # the real finders locate it (find_spec below comes back here)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            _finding.name = None
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _register_when_ready(finished=fullname)

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


def _initialising(name: str) -> bool:
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _register_when_ready(finished: str | None = None) -> None:
    """Register once transformers is imported and no watched module is half-imported; a failure is logged, not
    raised, so that the import that triggered it still succeeds (`sora_hf.register()` raises it)."""
    global _registering
    if _registering or "transformers" not in sys.modules:
        return
    if any(_initialising(name) for name in _WATCHED if name != finished):
        return  # the last of them to finish registers
    _registering = True
    try:
        importlib.import_module(".auto.registration", __name__).register()
    except Exception as error:  # noqa: BLE001 - `import transformers` must not fail because of sora_hf
        logging.getLogger(__name__).warning("sora_hf: registering Sora with transformers failed: %s", error)
    finally:
        _registering = False


if not any(type(finder).__name__ == "_RegisterAfterImport" for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())
_register_when_ready()
