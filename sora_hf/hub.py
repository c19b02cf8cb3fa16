"""Push a Sora checkpoint, or a LoRA adapter, to the Hugging Face Hub through `huggingface_hub.HfApi`.

    from sora_hf.hub import push
    result = push("runs/sentiment", "me/sora-sentiment", private=True)           # a full model
    push("runs/sentiment/adapter", "me/sora-sentiment-lora", base_model="me/sora-base")  # a LoRA adapter
    sora-hf push runs/sentiment me/sora-sentiment [--private] [--revision dev] [--message "..."]

A full model push uploads the safetensors weights, `config.json` with an `auto_map` for every head, the modelling and
configuration code (`modeling_sora.py`, `configuration_sora.py`, and `modeling_sora_multitask.py` for a multi-task
model), the tokenizer, and a model card, in one commit, so
that `AutoModelForX.from_pretrained(repo_id)` works with `sora_hf` imported and with `trust_remote_code=True` without
it. Heads whose tasks transformers does not serve itself also get sora_hf's pipeline code (`question_answering.py`,
`text2text.py`, `sentence_similarity.py`, `_utils.py`) and `custom_pipelines` in `config.json`, so that
`pipeline(task, model=repo_id, trust_remote_code=True)` works without sora_hf too (question-answering for
`SoraForQuestionAnswering`; summarization, translation and text2text-generation for `SoraForSeq2SeqLM`;
sentence-similarity for `SoraForSentenceEmbedding`). An adapter push uploads `adapter_config.json` +
`adapter_model.safetensors` (the head weights ride along through `modules_to_save`), the tokenizer when the folder has
one, and a card whose metadata names `base_model`.

The token comes from `token=`, else the usual places (`HF_TOKEN`, `hf auth login`); the endpoint from `endpoint=`,
else `HF_ENDPOINT`. The local folder is only read: changed files (`config.json`, the card) are built in memory.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .heads import HEADS
from .modeling_sora import SORA_AUTO_MAP
from .modeling_sora_multitask import SORA_MULTITASK_AUTO_MAP

__all__ = ["HubPushError", "PushResult", "push", "collect_checkpoint"]

MODEL_TYPE = "sora"
# the model code of every head, and the file of the multi-task model, which imports those two
CORE_CODE_FILES = ("modeling_sora.py", "configuration_sora.py")
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
    path = Path(__file__).parent / "pipelines" / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    siblings = {f"{node.module}.py" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
    return (path.name, *sorted(siblings))


# pipeline module -> the files it needs in the repo
PIPELINE_FILES = {p.module: pipeline_files(p.module) for row in HEADS for p in row.custom_pipelines}
NO_TOKEN_MESSAGE = (
    "no Hugging Face token found: set the HF_TOKEN environment variable, run `hf auth login`, or pass token=... "
    "(a token with write access, from https://huggingface.co/settings/tokens)"
)


class HubPushError(RuntimeError):
    """A push that could not be done; the message says why and what to do."""


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


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_sha: str
    commit_url: str
    kind: str
    files: list[str]
    commit_message: str


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
    package_dir = Path(__file__).resolve().parent
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


def _pushed_auto_map(files: Any) -> dict[str, str]:
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


def push(
    checkpoint_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    base_model: str | None = None,
) -> PushResult:
    """Push the Sora checkpoint (or LoRA adapter) in `checkpoint_dir` to `repo_id` in one commit.

    `private`: create the repo private (an existing repo keeps its visibility). `revision`: commit to this branch,
    created from `main` when missing. `base_model` (adapters): the Hub repo of the base model, written into the pushed
    `adapter_config.json` and the card; needed when the adapter was trained from a local folder.
    Raises `FileNotFoundError` (missing local files), `ValueError` (bad input, a repo holding another model type)
    and `HubPushError` (no token, the Hub refused or failed; a failed push commits nothing and can be run again).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token

    checkpoint = collect_checkpoint(checkpoint_dir)
    token = token or get_token()
    if not token:
        raise HubPushError(NO_TOKEN_MESSAGE)
    if constants.is_offline_mode():
        raise HubPushError("HF_HUB_OFFLINE is set: pushing needs the network; unset HF_HUB_OFFLINE and try again")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or constants.DEFAULT_REVISION

    uploads: dict[str, bytes | Path] = dict(checkpoint.files)
    if checkpoint.kind == "model":
        uploads["config.json"] = _config_with_auto_map(
            checkpoint.config, checkpoint.architecture, _pushed_auto_map(checkpoint.files)
        )
    else:
        base_model = _adapter_base_model(checkpoint, base_model)
        adapter_config = {**checkpoint.config, "base_model_name_or_path": base_model}
        uploads[ADAPTER_CONFIG] = (json.dumps(adapter_config, indent=2, sort_keys=True) + "\n").encode()
    uploads["README.md"] = _model_card(checkpoint, repo_id, base_model)

    stage = "creating the repository"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        stage = "reading the repository's current config"
        remote = _remote_state(api, repo_id, branch)
        _check_model_type(checkpoint, repo_id, remote)
        if branch != constants.DEFAULT_REVISION and not remote["branch_exists"]:
            stage = f"creating the branch {branch!r}"
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=source if isinstance(source, bytes) else str(source))
            for path, source in sorted(uploads.items())
        ]
        stale = [
            path
            for path in remote["files"]
            if path not in uploads and (path.endswith(".safetensors") or path == WEIGHTS_INDEX)
        ]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        summary, description = _commit_message(checkpoint, uploads, stale)
        summary = commit_message or summary
        stage = "uploading and committing the files"
        info = api.create_commit(
            repo_id, operations=operations, commit_message=summary, commit_description=description, revision=branch
        )
    except HubPushError:
        raise
    except ValueError:
        raise
    except Exception as error:  # HfHubHTTPError, network errors: say where it stopped and that a retry is safe
        raise HubPushError(_explain(error, repo_id, branch, stage, endpoint)) from error
    return PushResult(
        repo_id=repo_id,
        revision=branch,
        commit_sha=info.oid,
        commit_url=info.commit_url,
        kind=checkpoint.kind,
        files=sorted(uploads),
        commit_message=summary,
    )


def _config_with_auto_map(
    config: dict[str, Any], architecture: str | None = None, auto_map: dict[str, str] | None = None
) -> bytes:
    config = dict(config)
    config["auto_map"] = {**(config.get("auto_map") or {}), **(SORA_AUTO_MAP if auto_map is None else auto_map)}
    pipelines = _custom_pipelines(architecture)
    if pipelines:
        config["custom_pipelines"] = {**(config.get("custom_pipelines") or {}), **pipelines}
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def _custom_pipelines(architecture: str | None) -> dict[str, dict[str, Any]]:
    """`custom_pipelines` entries of config.json for `architecture`, as `Pipeline.save_pretrained` writes them."""
    return {
        task: {"impl": f"{module}.{class_name}", "pt": [auto_class], "tf": [], "type": "text"}
        for task, (module, class_name, auto_class) in CUSTOM_PIPELINES.get(architecture or "", {}).items()
    }


def _adapter_base_model(checkpoint: CheckpointFiles, base_model: str | None) -> str:
    base = base_model or checkpoint.config.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{checkpoint.folder / ADAPTER_CONFIG} names no base_model_name_or_path; pass base_model='<hub repo of the "
            "base model>'"
        )
    if base_model is None and (os.path.isabs(base) or os.path.exists(base)):
        raise ValueError(
            f"the adapter's base model is the local folder {base!r}, which nobody else can load: push the base model "
            "first and pass base_model='<its repo id>' (sora-hf push ... --base-model <repo id>)"
        )
    return base


def _remote_state(api, repo_id: str, branch: str) -> dict[str, Any]:
    """The repo's files and config.json at `branch` (or at `main` when the branch does not exist yet)."""
    from huggingface_hub.errors import RevisionNotFoundError

    state: dict[str, Any] = {"branch_exists": True, "files": [], "config": None, "adapter_config": None}
    try:
        state["files"] = api.list_repo_files(repo_id, revision=branch)
    except RevisionNotFoundError:
        state["branch_exists"] = False
        state["files"] = api.list_repo_files(repo_id)
    read_at = branch if state["branch_exists"] else "main"
    for name, key in (("config.json", "config"), (ADAPTER_CONFIG, "adapter_config")):
        if name in state["files"]:
            state[key] = _read_remote_json(api, repo_id, read_at, name)
    if not state["branch_exists"]:
        state["files"] = []  # the branch starts from main, but this push describes it whole
    return state


def _read_remote_json(api, repo_id: str, revision: str, filename: str) -> dict[str, Any] | None:
    """One small file straight from `resolve/` (hf_hub_download's URL template is fixed when huggingface_hub is
    imported, so it would ignore `endpoint=`); no cache is written."""
    from urllib.parse import quote

    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = f"{api.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{filename}"
    response = get_session().get(url, headers=build_hf_headers(token=api.token), follow_redirects=True)
    if response.status_code == 404:
        return None
    hf_raise_for_status(response)
    try:
        return json.loads(response.content)
    except json.JSONDecodeError:
        return None


def _check_model_type(checkpoint: CheckpointFiles, repo_id: str, remote: dict[str, Any]) -> None:
    config = remote["config"]
    if config is not None:
        remote_type = config.get("model_type")
        if remote_type != MODEL_TYPE:
            what = "a Sora LoRA adapter" if checkpoint.kind == "adapter" else f"a model of type {MODEL_TYPE!r}"
            raise ValueError(
                f"{repo_id} already holds a model of type {remote_type!r}; refusing to push {what} on top of it. "
                "Push to another repo (or revision), or delete the repo first."
            )
        if checkpoint.kind == "adapter":
            raise ValueError(
                f"{repo_id} already holds a full {MODEL_TYPE!r} model; refusing to push a LoRA adapter on top of it"
            )
    elif remote["adapter_config"] is not None and checkpoint.kind == "model":
        raise ValueError(f"{repo_id} already holds a LoRA adapter; refusing to push a full {MODEL_TYPE!r} model on it")


def _model_card(checkpoint: CheckpointFiles, repo_id: str, base_model: str | None) -> bytes:
    from huggingface_hub import ModelCard

    from .reporting import write_model_card

    generated = not ("README.md" in checkpoint.files and checkpoint.kind == "model")
    if not generated:  # the run's own card (results, recipe): keep its text, complete its metadata
        card = ModelCard.load(checkpoint.files["README.md"])
    else:
        metrics_path = checkpoint.folder / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
        with tempfile.TemporaryDirectory(prefix="sora-hf-card-") as tmp:
            if checkpoint.kind == "adapter":
                title = f"Sora LoRA adapter {repo_id}"
                summary = f"A LoRA adapter ({checkpoint.config.get('task_type')}) for the Sora model `{base_model}`."
            else:
                title = f"Sora {repo_id}"
                summary = f"A Sora model ({checkpoint.architecture}) pushed by sora-hf."
            card = ModelCard.load(write_model_card(tmp, title=title, summary=summary, metrics=metrics))
    data = card.data
    data.tags = sorted(set(data.tags or []) | {"sora", "sora-hf"} | ({"lora", "peft"} if base_model else set()))
    if checkpoint.kind == "adapter":
        data.library_name = "peft"
        data.base_model = base_model
        data.pipeline_tag = PEFT_PIPELINE_TAGS.get(checkpoint.config.get("task_type"), data.pipeline_tag)
        usage = (
            "\n## Load this adapter\n\n```python\nfrom peft import AutoPeftModelForSequenceClassification  "
            "# or the class of this task\n\n"
            f'model = AutoPeftModelForSequenceClassification.from_pretrained("{repo_id}", trust_remote_code=True)\n```\n'
        )
    else:
        data.library_name = data.library_name or "transformers"
        if generated or not data.pipeline_tag:
            data.pipeline_tag = PIPELINE_TAGS.get(checkpoint.architecture)
        usage = ""
    text = card.text.replace("<this folder or repo>", repo_id) + usage
    return f"---\n{data.to_yaml()}\n---\n{text}".encode()


def _commit_message(checkpoint: CheckpointFiles, uploads: dict[str, Any], stale: list[str]) -> tuple[str, str]:
    def size(path: str) -> str:
        source = uploads[path]
        n = len(source) if isinstance(source, bytes) else source.stat().st_size
        return f"{path} ({n / 1e6:.1f} MB)" if n >= 1e5 else f"{path} ({n} bytes)"

    groups = {
        "weights": [p for p in uploads if p.endswith(".safetensors") or p == WEIGHTS_INDEX],
        "config": [p for p in uploads if p in ("config.json", ADAPTER_CONFIG, "generation_config.json")],
        "code": [p for p in uploads if p in CODE_FILES or p in checkpoint.pipeline_files],
        "tokenizer": [p for p in uploads if p in TOKENIZER_REQUIRED + TOKENIZER_OPTIONAL],
        "model card": [p for p in uploads if p == "README.md"],
    }
    groups["other"] = sorted(set(uploads) - {p for ps in groups.values() for p in ps})
    what = [name for name in ("weights", "config", "code", "tokenizer", "model card") if groups[name]]
    if checkpoint.kind == "adapter":
        summary = f"Push Sora LoRA adapter: {', '.join(what)}"
    else:
        summary = f"Push {checkpoint.architecture} (model_type {MODEL_TYPE}): {', '.join(what)}"
    lines = [f"- {name}: {', '.join(size(p) for p in sorted(paths))}" for name, paths in groups.items() if paths]
    if checkpoint.kind == "model":
        auto_map = _pushed_auto_map(uploads)
        lines.append(f"- auto_map in config.json for {len(auto_map)} classes: {', '.join(auto_map)}")
    if checkpoint.pipeline_files:
        tasks = ", ".join(_custom_pipelines(checkpoint.architecture))
        lines.append(f"- custom_pipelines in config.json for {tasks}: {', '.join(checkpoint.pipeline_files)}")
    if checkpoint.code_from_package:
        lines.append(f"- code taken from the installed sora_hf: {', '.join(checkpoint.code_from_package)}")
    if stale:
        lines.append(f"- removed stale weights: {', '.join(stale)}")
    from . import __version__

    lines.append(f"Pushed by sora-hf {__version__} from {checkpoint.folder.name}/")
    return summary, "\n".join(lines)


def _explain(error: Exception, repo_id: str, branch: str, stage: str, endpoint: str) -> str:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401 or status == 403:
        hint = (
            f"the token was refused (status {status}): check that HF_TOKEN / `hf auth login` holds a token with "
            f"write access to {repo_id}"
        )
    elif status is not None:
        hint = f"the Hub answered {status}"
    else:
        hint = f"could not reach {endpoint}"
    return (
        f"push of {repo_id} (revision {branch!r}) failed while {stage}: {hint} ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}). A push is one commit, all or nothing: "
        "run the same push again to retry."
    )
