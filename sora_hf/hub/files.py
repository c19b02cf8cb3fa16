"""What a push uploads from a checkpoint folder: the files it collects and checks, the model and pipeline code
that rides along, and the tables (`auto_map`, pipeline tags, custom pipelines) derived from `auto.heads`."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.dynamic_module_utils import get_relative_import_files

from .. import modeling_sora
from ..auto.heads import HEADS
from ..modeling_sora import SORA_AUTO_MAP
from ..modeling_sora_multitask import SORA_MULTITASK_AUTO_MAP

MODEL_TYPE = "sora"
# the model code of every head, and the file of the multi-task model, which imports those two
# (the model file's relative imports, found as `save_pretrained` finds them: configuration, CRF, sentence-transformers)
CORE_CODE_FILES = (
    "modeling_sora.py",
    *sorted(Path(f).name for f in get_relative_import_files(modeling_sora.__file__)),
)
MULTITASK_CODE_FILE = "modeling_sora_multitask.py"
CODE_FILES = (*CORE_CODE_FILES, MULTITASK_CODE_FILE)
TOKENIZER_REQUIRED = ("tokenizer.json", "tokenizer_config.json")
TOKENIZER_OPTIONAL = ("special_tokens_map.json", "added_tokens.json", "vocab.txt", "chat_template.jinja")
# modules.json / sentence_bert_config.json: a pushed embedding model loads in sentence-transformers with its own head
EXTRA_PATTERNS = (
    "generation_config.json",
    "metrics.json",
    "recipe.yaml",
    "*.png",
    "modules.json",
    "sentence_bert_config.json",
)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"

# head class -> Hub pipeline tag (None: the Hub has no tag for it), from `heads.HEADS`
PIPELINE_TAGS = {row.name: row.hub_pipeline_tag for row in HEADS}
PEFT_PIPELINE_TAGS = {
    "SEQ_CLS": "text-classification",
    "TOKEN_CLS": "token-classification",
    "QUESTION_ANS": "question-answering",
    "SEQ_2_SEQ_LM": "text2text-generation",
    "CAUSAL_LM": "text-generation",
    "FEATURE_EXTRACTION": "feature-extraction",
}
# head class -> {task: (module in sora_hf/pipelines, pipeline class, auto class that loads the head)}, for the tasks
# transformers 5.x has no pipeline of its own for; pushed as remote code with `custom_pipelines` in config.json
# (from `heads.HEADS`)
CUSTOM_PIPELINES = {
    row.name: {p.task: (p.module, p.class_name, p.auto_class) for p in row.custom_pipelines}
    for row in HEADS
    if row.custom_pipelines
}


def pipeline_files(module: str) -> tuple[str, ...]:
    """The files a pipeline module of `sora_hf/pipelines` needs in a repo: itself and the siblings it imports
    relatively (they ride along as sibling files, as transformers' remote code expects)."""
    path = Path(__file__).parent.parent / "pipelines" / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    siblings = {f"{node.module}.py" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
    return (path.name, *sorted(siblings))


# pipeline module -> the files it needs in the repo
PIPELINE_FILES = {p.module: pipeline_files(p.module) for row in HEADS for p in row.custom_pipelines}
NO_TOKEN_MESSAGE = (
    "no Hugging Face token found: set the HF_TOKEN environment variable, run `hf auth login`, or pass token=... "
    "(a token with write access, from https://huggingface.co/settings/tokens)"
)


@dataclass
class CheckpointFiles:
    """What a push of `folder` uploads: `files` maps the path in the repo to the local file (read, never changed)."""

    folder: Path
    kind: str  # "model" or "adapter"
    files: dict[str, Path] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # config.json, or adapter_config.json for an adapter
    code_from_package: list[str] = field(default_factory=list)
    pipeline_files: list[str] = field(default_factory=list)  # remote pipeline code (see CUSTOM_PIPELINES)

    @property
    def architecture(self) -> str:
        if self.kind == "adapter":
            return f"LoRA adapter ({self.config.get('task_type') or 'no task type'})"
        return (self.config.get("architectures") or ["SoraModel"])[0]


def collect_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> CheckpointFiles:
    """Check a local checkpoint (or adapter) folder and list what a push uploads; fail naming any missing file."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(folder)!r} does not exist (or is not a folder)")
    present = {p.name for p in folder.iterdir() if p.is_file()}
    if ADAPTER_CONFIG in present and "config.json" not in present:
        return _collect_adapter(folder, present)

    missing = [name for name in ("config.json", *TOKENIZER_REQUIRED) if name not in present]
    files: dict[str, Path] = {}
    if WEIGHTS_INDEX in present:
        index = json.loads((folder / WEIGHTS_INDEX).read_text(encoding="utf-8"))
        shards = sorted(set(index.get("weight_map", {}).values()))
        missing += [shard for shard in shards if shard not in present]
        files.update({name: folder / name for name in [WEIGHTS_INDEX, *shards] if name in present})
    elif WEIGHTS_FILE in present:
        files[WEIGHTS_FILE] = folder / WEIGHTS_FILE
    else:
        legacy = sorted(present & {"pytorch_model.bin", "model.bin"})
        hint = (
            f" (found {', '.join(legacy)}: re-save with model.save_pretrained(folder) to get safetensors)"
            if legacy
            else ""
        )
        missing.append(WEIGHTS_FILE + hint)
    if missing:
        raise FileNotFoundError(
            f"checkpoint folder {str(folder)!r} is missing {', '.join(missing)}; files there: {sorted(present) or 'none'}. "
            "Save the model and its tokenizer there with model.save_pretrained(folder) and "
            "tokenizer.save_pretrained(folder)."
        )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != MODEL_TYPE:
        raise ValueError(
            f"{folder / 'config.json'} has model_type {config.get('model_type')!r}; sora_hf.hub.push pushes Sora "
            f"checkpoints (model_type {MODEL_TYPE!r}); use huggingface_hub's upload_folder for other models"
        )
    checkpoint = CheckpointFiles(folder, "model", files, config)
    for name in (*TOKENIZER_REQUIRED, *TOKENIZER_OPTIONAL):
        if name in present:
            checkpoint.files[name] = folder / name
    package_dir = Path(__file__).resolve().parent.parent
    for name in _code_files(checkpoint.architecture, present):  # the copy saved with the weights matches them
        if name in present:
            checkpoint.files[name] = folder / name
        else:
            checkpoint.files[name] = package_dir / name
            checkpoint.code_from_package.append(name)
    pipelines_dir = package_dir / "pipelines"
    for module, _, _ in CUSTOM_PIPELINES.get(checkpoint.architecture, {}).values():
        for name in PIPELINE_FILES[module]:
            if name not in checkpoint.files:  # the installed code, which the config entries written here name
                checkpoint.files[name] = pipelines_dir / name
                checkpoint.pipeline_files.append(name)
    _add_extras(checkpoint, present)
    check_weights(checkpoint)
    return checkpoint


def check_weights(checkpoint: CheckpointFiles) -> None:
    """Refuse to push weights that would not load: every safetensors file must be whole (its header's tensors end
    exactly where the file does) and every tensor readable, and a shard index may name only tensors its shards hold.

    A copy cut short (a full disk, an interrupted `cp`) otherwise uploads fine and fails for everyone who downloads
    it. ValueError naming the file.
    """
    from safetensors import safe_open

    index_path = checkpoint.files.get(WEIGHTS_INDEX)
    held: dict[str, set[str]] = {}
    for name, path in sorted(checkpoint.files.items()):
        if not name.endswith(".safetensors"):
            continue
        expected = _safetensors_length(path)
        actual = path.stat().st_size
        if actual != expected:
            raise ValueError(
                f"{path} is {actual} bytes but its header describes {expected} bytes: the file is "
                f"{'truncated' if actual < expected else 'followed by extra bytes'}; nothing was pushed. Save the "
                "model again (model.save_pretrained) or copy the file again"
            )
        try:
            with safe_open(str(path), framework="pt") as handle:
                keys = set(handle.keys())
                for key in sorted(keys):
                    handle.get_tensor(key)
        except Exception as error:  # SafetensorError is not importable by name in every release
            raise ValueError(
                f"{path} is not a readable safetensors file ({_one_line(error)}); nothing was pushed"
            ) from None
        held[name] = keys
    if index_path is not None:
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
            entries = sorted(weight_map.items())
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
            raise ValueError(f"{index_path} is not a valid shard index ({error}); nothing was pushed") from None
        for tensor, shard in entries:
            if tensor not in held.get(shard, set()):
                raise ValueError(
                    f"{index_path} names tensor {tensor!r} in {shard}, which does not hold it; nothing was pushed"
                )


def _safetensors_length(path: Path) -> int:
    """The length a safetensors file must have: 8 bytes of header size, the JSON header, then the last tensor's end."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError(
                f"{path} is {size} bytes: too short for a safetensors file (truncated?); nothing was pushed"
            )
        header_size = int.from_bytes(head, "little")
        if header_size > size - 8:
            raise ValueError(
                f"{path} is {size} bytes but its header alone is {header_size} bytes: the file is truncated (or not "
                "safetensors); nothing was pushed"
            )
        try:
            header = json.loads(handle.read(header_size))
            ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError, ValueError, AttributeError):
            raise ValueError(
                f"{path} has no valid safetensors header (truncated or corrupt?); nothing was pushed"
            ) from None
    return 8 + header_size + max(ends, default=0)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _code_files(architecture: str, present: set[str]) -> list[str]:
    """The code files a model push uploads (from the folder, else the installed sora_hf): the core files, plus the
    multi-task file for a multi-task model, unless the folder holds a `modeling_sora.py` saved before that file
    existed (the class is then in it, where its config's `auto_map` points)."""
    names = list(CORE_CODE_FILES)
    if architecture == "SoraForMultiTask" and (MULTITASK_CODE_FILE in present or "modeling_sora.py" not in present):
        names.append(MULTITASK_CODE_FILE)
    return names


def pushed_auto_map(files: Any) -> dict[str, str]:
    """The `auto_map` entries a push writes: every head's, and the multi-task Auto class's with its code file."""
    return {**SORA_AUTO_MAP, **(SORA_MULTITASK_AUTO_MAP if MULTITASK_CODE_FILE in files else {})}


def _collect_adapter(folder: Path, present: set[str]) -> CheckpointFiles:
    missing = [] if ADAPTER_WEIGHTS in present else [ADAPTER_WEIGHTS]
    if missing and "adapter_model.bin" in present:
        missing = [f"{ADAPTER_WEIGHTS} (found adapter_model.bin: re-save with peft's save_pretrained)"]
    tokenizer = [name for name in TOKENIZER_REQUIRED if name in present]
    if tokenizer and len(tokenizer) < len(TOKENIZER_REQUIRED):  # half a tokenizer is a broken folder
        missing += [name for name in TOKENIZER_REQUIRED if name not in present]
    if missing:
        raise FileNotFoundError(
            f"adapter folder {str(folder)!r} is missing {', '.join(missing)}; files there: {sorted(present)}"
        )
    config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    checkpoint = CheckpointFiles(folder, "adapter", {ADAPTER_CONFIG: folder / ADAPTER_CONFIG}, config)
    checkpoint.files[ADAPTER_WEIGHTS] = folder / ADAPTER_WEIGHTS
    for name in (*TOKENIZER_REQUIRED, *TOKENIZER_OPTIONAL):
        if name in present:
            checkpoint.files[name] = folder / name
    _add_extras(checkpoint, present)
    check_weights(checkpoint)
    return checkpoint


def _add_extras(checkpoint: CheckpointFiles, present: set[str]) -> None:
    for name in sorted(present):
        if any(fnmatch.fnmatch(name, pattern) for pattern in EXTRA_PATTERNS):
            checkpoint.files.setdefault(name, checkpoint.folder / name)
    if "README.md" in present:
        checkpoint.files["README.md"] = checkpoint.folder / "README.md"
