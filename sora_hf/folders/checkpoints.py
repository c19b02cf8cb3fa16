"""Checkpoints as inputs: a local path is local, and weights that do not fit the class they load into are an error.

transformers' `from_pretrained` is generous in two ways a careless user pays for: a string that is not an
existing folder is tried as a Hub repo id (retries, minutes, then a traceback about huggingface.co for what was a
typo), and weights that do not match the class are reported in `loading_info` and otherwise ignored, so a
checkpoint of another architecture "loads" as a randomly initialised model. Every command that reads a model goes
through `resolve_checkpoint` and `load_checked` instead.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Literal

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked: missing, corrupt, or of another architecture."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def looks_like_path(spec: str) -> bool:
    """Whether `spec` is meant as a local path rather than a Hub repo id (`org/name`).

    A path: anything that is not a valid repo id (two or more slashes, a leading `.`, `/` or `~`, a backslash), or
    whose first component exists here (`runs/zh-tiny-mlmm` when `runs/` exists)."""
    if not _REPO_ID.match(spec) or spec.startswith((".", "~")):
        return True
    first = spec.split("/", 1)[0]
    return "/" in spec and Path(first).is_dir()


def resolve_checkpoint(spec: str | os.PathLike[str], what: str = "checkpoint") -> str:
    """The local folder `spec` names, or a Hub repo id; refuses at once what can be neither.

    A path that does not exist is "no such folder" (never a Hub lookup). A repo id under HF_HUB_OFFLINE=1 must be in
    the local cache."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{what} {text} is a file; pass the folder that save_pretrained wrote")
        return str(path)
    if looks_like_path(text):
        parent = next((p for p in path.parents if p.is_dir()), None)
        near = ""
        if parent is not None and parent != Path("."):
            names = sorted(p.name for p in parent.iterdir() if p.is_dir())[:8]
            near = f" ({parent} holds: {', '.join(names) or 'no folders'})"
        raise FileNotFoundError(f"{what} {text}: no such folder{near}")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(text, "config.json"), str):
        return text
    if _offline():
        raise FileNotFoundError(
            f"{what} {text}: no such folder, and not a Hub repo in the local cache (HF_HUB_OFFLINE=1)"
        )
    _check_hub_repo(text, what)
    return text


@functools.cache  # a run resolves its checkpoint in several steps: one request per repo (failures are not kept)
def _check_hub_repo(repo_id: str, what: str, timeout: float = 10.0) -> None:
    """One request that tells a Hub repo from a typo, instead of from_pretrained's lookups file by file (with
    retries when there is no network: minutes, then a traceback about huggingface.co)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except GatedRepoError:
        return  # it exists; from_pretrained says what access it needs
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"{what} {repo_id}: no such folder here, and no such model repo on the Hub (or it is private: log in)"
        ) from None
    except Exception as error:  # noqa: BLE001 - no network, DNS, proxy, timeout: all mean "cannot look it up"
        raise FileNotFoundError(
            f"{what} {repo_id}: no such folder here, and the Hub could not be reached to look it up as a repo id "
            f"({type(error).__name__}); set HF_HUB_OFFLINE=1 to use the local cache only"
        ) from None


def read_config_file(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """`config.json` of a local checkpoint folder, checked to be a JSON object naming its `model_type`."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        present = sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else []
        raise CheckpointError(
            f"{folder} has no config.json: not a saved model folder (files there: {', '.join(present) or 'none'})"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{path} names no model_type: not a transformers config")
    return config


def check_weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a local checkpoint, each opened far enough to know it is whole (safetensors headers,
    shard indexes); a truncated, empty or missing file is an error that names it."""
    from safetensors import safe_open

    folder = Path(folder)
    files: list[Path] = []
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                raise CheckpointError(f"{index} is not a valid shard index: {error}") from None
            files += [folder / shard for shard in shards]
            break
    else:
        files = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not files:
        raise CheckpointError(f"{folder} holds no model weights ({' or '.join(WEIGHT_FILES)})")
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file} is missing (named in the shard index)")
        if file.stat().st_size == 0:
            raise CheckpointError(f"{file} is empty: the checkpoint was not saved completely")
        if file.suffix == ".safetensors":
            try:
                with safe_open(str(file), framework="pt") as handle:
                    handle.keys()
            except Exception as error:  # SafetensorError is not importable by name in every release
                raise CheckpointError(f"{file} is not a readable safetensors file ({error}): truncated?") from None
    return files


def check_checkpoint_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A local model folder's config (checked) after checking that its weights are whole."""
    config = read_config_file(folder)
    check_weight_files(folder)
    return config


HeadPolicy = Literal["complete", "new_head"]


def load_checked(
    model_class: Any,
    checkpoint: str | os.PathLike[str],
    *,
    heads: HeadPolicy = "complete",
    expected_model_type: str | None = "sora",
    **kwargs: Any,
):
    """`model_class.from_pretrained(checkpoint, **kwargs)`, refused when the weights do not fit the class.

    `heads="complete"` (serving, export, pruning): every parameter must come from the checkpoint.
    `heads="new_head"` (fine-tuning): the task head may be new, the body (`base_model_prefix`) may not.
    `expected_model_type` (default "sora"): the config's `model_type` must be this one.
    """
    source = resolve_checkpoint(checkpoint)
    local = Path(source).is_dir()
    if local:
        config = check_checkpoint_folder(source)
        model_type = config.get("model_type")
        if expected_model_type is not None and model_type != expected_model_type:
            raise CheckpointError(
                f"{source} is a {model_type!r} checkpoint ({', '.join(config.get('architectures') or [])}), not a "
                f"{expected_model_type!r} one: its weights would not load into {_name(model_class)}"
            )
    try:
        model, info = model_class.from_pretrained(source, output_loading_info=True, **kwargs)
    except pickle.UnpicklingError:
        pickled = [name for name in ("pytorch_model.bin",) if (Path(source) / name).is_file()] if local else []
        where = f"{Path(source) / pickled[0]}" if pickled else f"the weights of {source}"
        raise CheckpointError(
            f"refused to load {where}: the pickle holds objects other than tensors, and unpickling it could run "
            "code; it was not loaded. Re-save the model as safetensors from a copy you trust"
        ) from None
    if expected_model_type is not None and getattr(model.config, "model_type", None) != expected_model_type:
        raise CheckpointError(f"{source} is a {model.config.model_type!r} model, not a {expected_model_type!r} one")
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if heads == "new_head":
        prefix = f"{model.base_model_prefix}."
        missing = [key for key in missing if key.startswith(prefix)]
    if mismatched:
        raise CheckpointError(
            f"{source}: {len(mismatched)} weights have other shapes than {type(model).__name__} expects, "
            f"e.g. {_first(mismatched)}"
        )
    if missing:
        what = "body" if heads == "new_head" else "model"
        raise CheckpointError(
            f"{source} has no weights for {len(missing)} {what} parameters of {type(model).__name__}, e.g. "
            f"{', '.join(missing[:3])}: the checkpoint was saved from "
            f"{', '.join(getattr(model.config, 'architectures', None) or ['another class'])}, which does not fit"
        )
    return model


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _unpickled_file(error: BaseException) -> str | None:
    """The file `torch.load` was reading when it refused a pickle (its `f` argument, in the traceback)."""
    tb = error.__traceback__
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "load" and frame.f_code.co_filename.endswith(
            os.path.join("torch", "serialization.py")
        ):
            f = frame.f_locals.get("f")
            if isinstance(f, str | os.PathLike):
                found = os.fspath(f)
        tb = tb.tb_next
    return found


def refused_pickle(error: pickle.UnpicklingError, checkpoint: str | os.PathLike[str]) -> CheckpointError:
    """`torch.load(weights_only=True)` refused a file of a Trainer checkpoint (rng_state.pth, optimizer.pt...):
    one line naming the file and the object it would not unpickle, instead of torch's page of advice."""
    file = _unpickled_file(error) or f"a file of {checkpoint}"
    match = _UNSUPPORTED_GLOBAL.search(str(error))
    what = f" ({match.group(1)})" if match else ""
    return CheckpointError(
        f"--resume: refused to load {file}: the pickle holds an object other than tensors{what}, and unpickling it "
        "could run code; nothing was loaded. Resume from a checkpoint you trust, or pass --overwrite to start again"
    )


def _first(mismatched: list[Any]) -> str:
    item = mismatched[0]
    return " ".join(map(str, item)) if isinstance(item, (tuple, list)) else str(item)


def _name(model_class: Any) -> str:
    return getattr(model_class, "__name__", str(model_class))


__all__ = [
    "CheckpointError",
    "check_checkpoint_folder",
    "check_weight_files",
    "load_checked",
    "looks_like_path",
    "read_config_file",
    "refused_pickle",
    "resolve_checkpoint",
]
