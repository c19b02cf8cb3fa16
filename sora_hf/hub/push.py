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

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..modeling_sora import SORA_AUTO_MAP

__all__ = ["HubPushError", "PushResult", "push", "collect_checkpoint"]
from .files import (
    ADAPTER_CONFIG,
    CODE_FILES,
    CUSTOM_PIPELINES,
    MODEL_TYPE,
    NO_TOKEN_MESSAGE,
    PEFT_PIPELINE_TAGS,
    PIPELINE_TAGS,
    TOKENIZER_OPTIONAL,
    TOKENIZER_REQUIRED,
    WEIGHTS_INDEX,
    CheckpointFiles,
    collect_checkpoint,
    pushed_auto_map,
)

__all__ = ["HubPushError", "PushResult", "push", "collect_checkpoint"]


class HubPushError(RuntimeError):
    """A push that could not be done; the message says why and what to do."""


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_sha: str
    commit_url: str
    kind: str
    files: list[str]
    commit_message: str


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

    uploads = _uploads(checkpoint, repo_id, base_model)

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


def _uploads(checkpoint: CheckpointFiles, repo_id: str, base_model: str | None) -> dict[str, bytes | Path]:
    """Repo path -> local file, or the bytes of what a push writes anew (config with `auto_map`, adapter config
    naming its base model, the card); the local folder is only read."""
    uploads: dict[str, bytes | Path] = dict(checkpoint.files)
    if checkpoint.kind == "model":
        uploads["config.json"] = _config_with_auto_map(
            checkpoint.config, checkpoint.architecture, pushed_auto_map(checkpoint.files)
        )
    else:
        base_model = _adapter_base_model(checkpoint, base_model)
        adapter_config = {**checkpoint.config, "base_model_name_or_path": base_model}
        uploads[ADAPTER_CONFIG] = (json.dumps(adapter_config, indent=2, sort_keys=True) + "\n").encode()
    uploads["README.md"] = _model_card(checkpoint, repo_id, base_model)
    return uploads


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

    from ..metrics.reporting import write_model_card

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
        auto_map = pushed_auto_map(uploads)
        lines.append(f"- auto_map in config.json for {len(auto_map)} classes: {', '.join(auto_map)}")
    if checkpoint.pipeline_files:
        tasks = ", ".join(_custom_pipelines(checkpoint.architecture))
        lines.append(f"- custom_pipelines in config.json for {tasks}: {', '.join(checkpoint.pipeline_files)}")
    if checkpoint.code_from_package:
        lines.append(f"- code taken from the installed sora_hf: {', '.join(checkpoint.code_from_package)}")
    if stale:
        lines.append(f"- removed stale weights: {', '.join(stale)}")
    from .. import __version__

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
