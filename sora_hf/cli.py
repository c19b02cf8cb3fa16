"""`sora-hf`: a thin command line over the library; each command is one call of a Python function.

sora-hf pretrain recipes/pretrain/zh-tiny-mlm.yaml [--set training.max_steps=50] [--overwrite | --resume]
sora-hf finetune sentiment [--checkpoint runs/zh-tiny-mlm] [--set training.num_train_epochs=1] [--overwrite]
sora-hf multitask recipes/multitask/zh-sentiment-ner.yaml [--set sampling=uniform] [--overwrite]
sora-hf quickstart [--output-dir runs/quickstart] [--max-steps N]
sora-hf push <checkpoint-dir> <repo_id> [--private] [--revision BRANCH] [--message MSG] [--base-model REPO]
sora-hf serve <checkpoint-or-repo> [--task TASK] [--port 8000] [--max-batch-size 32] [--max-wait-ms 2]
sora-hf export onnx <checkpoint> <output-dir> [--opset 17] [--exporter torchscript|dynamo]
sora-hf quantize <checkpoint-or-onnx-dir> <output-dir> [--task sentiment] [--per-channel]
sora-hf prune <classifier-checkpoint> <output-dir> [--heads 0.5] [--mlp 0.5] [--task sentiment]

A recipe is a file, or a shipped recipe by name (`zh-tiny-mlm`, `sentiment`: see `sora-hf <command> --help`),
found in the installed package from any folder. Arguments and recipes are checked before torch is imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any


def _library() -> None:
    """Register Sora with transformers, peft and the pipelines before a command runs a model.

    The CLI imports torch and transformers only here, after its arguments and recipe have been checked, so that
    `--help` and a refused recipe answer at once (registration is idempotent: `import sora_hf` may have done it)."""
    from .registration import register

    register()


def _recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .recipes import parse_set_options

    overrides = parse_set_options(args.set or [])
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if getattr(args, "checkpoint", None):
        overrides["checkpoint"] = args.checkpoint
    return overrides


def _load_recipe(loader: Callable[..., Any], args: argparse.Namespace, kind: str) -> Any:
    """The recipe `args.recipe` names (a file, or a shipped recipe by name), validated; errors name the file."""
    from .recipes import RecipeError, find_recipe

    path = find_recipe(args.recipe, kind)
    try:
        return loader(path, _recipe_overrides(args))
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from None


def _pretrain(args: argparse.Namespace) -> int:
    from .recipes import load_pretrain_recipe

    recipe = _load_recipe(load_pretrain_recipe, args, "pretrain")
    _library()
    from .distributed import is_main_process
    from .pretraining import run_pretraining

    metrics = run_pretraining(recipe, overwrite=args.overwrite, resume=args.resume)
    if is_main_process():  # one report per run, not one per rank
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from .recipes import load_finetune_recipe

    recipe = _load_recipe(load_finetune_recipe, args, "finetune")
    _library()
    from .finetuning import run_finetuning

    metrics = run_finetuning(recipe, overwrite=args.overwrite)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def _multitask(args: argparse.Namespace) -> int:
    _library()  # the multi-task recipe parser lives beside the trainer, which imports torch
    from .multitask import load_multitask_recipe, run_multitask

    recipe = _load_recipe(load_multitask_recipe, args, "multitask")
    metrics = run_multitask(recipe, overwrite=args.overwrite)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    _library()
    from .quickstart import run_quickstart

    run_quickstart(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        overwrite=args.overwrite,
        finetune_epochs=args.finetune_epochs,
    )
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
    _library()
    from .serving import ServerSettings, serve

    settings = ServerSettings(
        max_batch_size=args.max_batch_size,
        forward_batch_size=args.forward_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue_size=args.max_queue_size,
        max_text_chars=args.max_text_chars,
        max_texts_per_request=args.max_texts_per_request,
        max_body_bytes=args.max_body_bytes,
        max_new_tokens=args.max_new_tokens,
        max_length=args.max_length,
    )
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

    info = export_onnx(args.checkpoint, args.output_dir, opset=args.opset, exporter=args.exporter)
    print(info.to_json())
    return 0


def _quantize(args: argparse.Namespace) -> int:
    _library()
    from .deploy.quantization import run_quantization

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = run_quantization(
        args.source,
        args.output_dir,
        task=None if args.task == "none" else args.task,
        max_examples=args.max_examples,
        max_length=args.max_length,
        per_channel=args.per_channel,
        threads=args.threads,
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _prune(args: argparse.Namespace) -> int:
    _library()
    from .deploy.pruning import run_pruning

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = run_pruning(
        args.checkpoint,
        args.output_dir,
        heads=args.heads,
        mlp=args.mlp,
        task=args.task,
        importance_batches=args.importance_batches,
        max_length=args.max_length,
        max_eval_examples=args.max_examples,
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _recipe_help(kind: str, example: str) -> str:
    from .recipes import shipped_recipes

    try:
        names = ", ".join(shipped_recipes(kind))
    except FileNotFoundError:
        names = "none found"
    return f"a recipe file (e.g. {example}) or the name of a shipped one: {names}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sora-hf", description="Pre-train, fine-tune and share Sora models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    pretrain = sub.add_parser("pretrain", help="pre-train a Sora model from a YAML recipe")
    pretrain.add_argument("recipe", help=_recipe_help("pretrain", "recipes/pretrain/zh-tiny-mlm.yaml"))
    pretrain.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    pretrain.add_argument("--output-dir", help="write the run here instead of the recipe's output_dir")
    group = pretrain.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    group.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    pretrain.set_defaults(func=_pretrain)

    finetune = sub.add_parser("finetune", help="fine-tune a pre-trained Sora (LoRA or full) from a YAML recipe")
    finetune.add_argument("recipe", help=_recipe_help("finetune", "recipes/finetune/sentiment.yaml"))
    finetune.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    finetune.add_argument("--output-dir", help="write the run here instead of the recipe's output_dir")
    finetune.add_argument("--checkpoint", help="the pre-trained model folder to start from")
    finetune.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    finetune.set_defaults(func=_finetune)

    multitask = sub.add_parser(
        "multitask", help="train one shared encoder on several tasks (one head each) from a multi-task recipe"
    )
    multitask.add_argument("recipe", help=_recipe_help("multitask", "recipes/multitask/zh-sentiment-ner.yaml"))
    multitask.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    multitask.add_argument("--output-dir", help="write the run here instead of the recipe's output_dir")
    multitask.add_argument("--checkpoint", help="the pre-trained encoder (or multi-task model) to start from")
    multitask.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    multitask.set_defaults(func=_multitask)

    quick = sub.add_parser(
        "quickstart", help="the main job: pre-train the tiny Chinese encoder, fine-tune it on sentiment, use it"
    )
    quick.add_argument("--output-dir", default="runs/quickstart")
    quick.add_argument("--max-steps", type=int, default=None, help="pre-training steps (default: the recipe's)")
    quick.add_argument("--finetune-epochs", type=float, default=None, help="sentiment epochs (default: recipe's)")
    quick.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    quick.set_defaults(func=_quickstart)

    push = sub.add_parser("push", help="push a checkpoint (or a LoRA adapter folder) to the Hugging Face Hub")
    push.add_argument("checkpoint_dir", help="a folder written by save_pretrained (model + tokenizer), or an adapter")
    push.add_argument("repo_id", help="the Hub repo, e.g. me/sora-sentiment (created when missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="push to this branch (created from main when missing)")
    push.add_argument("--message", help="commit message (default: says what was pushed)")
    push.add_argument("--base-model", help="adapters: the Hub repo of the base model (when trained from a folder)")
    push.set_defaults(func=_push)

    serve = sub.add_parser("serve", help="serve a checkpoint over HTTP (dynamic batching, Prometheus /metrics)")
    serve.add_argument("checkpoint", help="a model folder (save_pretrained) or a Hub repo id")
    serve.add_argument("--task", help="pipeline task (default: from the config's architectures)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: local only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", help="pipeline device, e.g. cpu, cuda:0 (default: transformers' choice)")
    serve.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="items per model call (1: no batching)")
    serve.add_argument("--forward-batch-size", type=int, default=8, help="length-sorted items per forward pass")
    serve.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits to fill")
    serve.add_argument("--max-queue-size", type=int, default=1024, help="queued items before 503")
    serve.add_argument("--max-text-chars", type=int, default=4096, help="characters per text before 413")
    serve.add_argument("--max-texts-per-request", type=int, default=64, help="texts per request before 413")
    serve.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request body bytes before 413")
    serve.add_argument("--max-new-tokens", type=int, default=256, help="cap on generation lengths")
    serve.add_argument("--max-length", type=int, help="tokens per text (default: the model's limit)")
    serve.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds to finish requests on SIGTERM")
    serve.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    serve.set_defaults(func=_serve)

    export = sub.add_parser("export", help="export a checkpoint for deployment")
    export_sub = export.add_subparsers(dest="format", required=True)
    onnx = export_sub.add_parser("onnx", help="ONNX graph + config + tokenizer, checked against torch")
    onnx.add_argument("checkpoint", help="a saved Sora model: an encoder head or SoraForCausalLM")
    onnx.add_argument("output_dir", help="folder for model.onnx, config, tokenizer and export_info.json")
    onnx.add_argument("--opset", type=int, default=17)
    onnx.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    onnx.set_defaults(func=_export)

    quantize = sub.add_parser("quantize", help="int8 dynamic quantization (onnxruntime) with a before/after report")
    quantize.add_argument("source", help="a saved Sora model (exported first) or an exported ONNX folder")
    quantize.add_argument("output_dir", help="folder for the int8 model.onnx and quantization_report.json")
    quantize.add_argument("--task", default="sentiment", help="embedded classification task to score ('none': skip)")
    quantize.add_argument("--max-examples", type=int, help="score on the first N test examples (default: all)")
    quantize.add_argument("--max-length", type=int, default=128, help="tokens per text")
    quantize.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    quantize.add_argument("--threads", type=int, help="intra-op threads for the latency figures")
    quantize.set_defaults(func=_quantize)

    prune = sub.add_parser("prune", help="structured pruning of heads and MLP width, with a before/after report")
    prune.add_argument("checkpoint", help="a saved SoraForSequenceClassification")
    prune.add_argument("output_dir", help="folder for the pruned model (loads with AutoModelForX) and its report")
    prune.add_argument("--heads", type=float, default=0.5, help="fraction of key/value head groups removed per layer")
    prune.add_argument("--mlp", type=float, default=0.5, help="fraction of MLP units removed per layer")
    prune.add_argument("--task", default="sentiment", help="embedded classification task (importance and score)")
    prune.add_argument("--importance-batches", type=int, default=8, help="train batches of 32 for importance")
    prune.add_argument("--max-examples", type=int, help="score on the first N test examples (default: all)")
    prune.add_argument("--max-length", type=int, default=128, help="tokens per text")
    prune.add_argument("--threads", type=int, help="torch threads for the latency figures")
    prune.set_defaults(func=_prune)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:  # RecipeError is a ValueError
        print(f"sora-hf: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser"]
