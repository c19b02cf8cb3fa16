"""CPU speed of Sora against the stock model of the same size, in one process: inference (torch eager,
`torch.compile`, onnxruntime fp32 and int8), training (MLM vs BERT, causal LM vs Llama, padded batches) and decoding
(vs Llama `generate()`), every figure a ratio to the stock model measured in the same run, medians of interleaved
repeats.

    python benchmarks/cpu_speed.py --out benchmarks/results/cpu_speed.json          # both sizes, every section
    python benchmarks/cpu_speed.py --sizes tiny --sections inference --repeats 5    # a quick look

Sizes: `tiny` is the quickstart's encoder (4 x 128); `small` is about 25M parameters (8 x 512). BERT gets the same
width, depth and heads and 1.5x the MLP width (two matrices against Sora's three), so the parameter counts match;
Llama is Sora's decoder block under Llama's code. Inputs are real text: the embedded reviews and People's Daily
sentences, tokenised with one tokenizer for both models. BERT's ONNX graph is optimised as its users do it
(onnxruntime's transformer optimizer: fused attention, SkipLayerNorm, GELU); Sora's is `sora-hf export onnx`'s.
Writes the JSON and a PNG of the ratios beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    CompileConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

import sora_hf
from sora_hf import SoraConfig, SoraForCausalLM, SoraForMaskedLM, SoraForSequenceClassification
from sora_hf.data import load_review_sentiment, peoples_daily_sentences
from sora_hf.tokenizer import train_tokenizer

SIZES = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 384},
    "small": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "intermediate_size": 1408},
}


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds per call of each function, measured in alternating rounds so drift hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(median_time(fn, max(1, repeats // rounds)))
    return {name: statistics.median(values) for name, values in times.items()}


def batch_of(tokenizer, texts: list[str], size: int, max_length: int, pad_fraction: float = 0.0):
    """`size` rows of `max_length` real tokens (the texts' tokens end to end, as pre-training packs them);
    `pad_fraction` > 0 pads every other row's tail so that exactly that share of the batch is padding."""
    stream = [token for ids in tokenizer(texts)["input_ids"] for token in ids]
    stream = stream * (1 + size * max_length // len(stream))
    input_ids = torch.tensor(stream[: size * max_length]).view(size, max_length)
    attention_mask = torch.ones_like(input_ids)
    if pad_fraction:
        keep = int(max_length * (1 - 2 * pad_fraction))  # every other row truncated: pad_fraction of all tokens
        attention_mask[::2, keep:] = 0
        input_ids[attention_mask == 0] = tokenizer.pad_token_id
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def models_for(size: dict, vocab: int, pad_id: int, kind: str):
    bert_mlp = 64 * round(size["intermediate_size"] * 1.5 / 64)
    common = {k: size[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")}
    torch.manual_seed(0)
    if kind == "classification":
        sora = SoraForSequenceClassification(SoraConfig(vocab_size=vocab, **size, num_labels=2, pad_token_id=pad_id))
        stock = BertForSequenceClassification(
            BertConfig(vocab_size=vocab, **common, intermediate_size=bert_mlp, num_labels=2, pad_token_id=pad_id)
        )
    elif kind == "mlm":
        # as the pre-training recipes configure it: vocabulary logits only at the masked positions
        sora = SoraForMaskedLM(SoraConfig(vocab_size=vocab, **size, pad_token_id=pad_id, sparse_prediction=True))
        stock = BertForMaskedLM(
            BertConfig(vocab_size=vocab, **common, intermediate_size=bert_mlp, pad_token_id=pad_id)
        )
    else:
        sora = SoraForCausalLM(SoraConfig(vocab_size=vocab, **size, pad_token_id=pad_id, type_vocab_size=0))
        stock = LlamaForCausalLM(
            LlamaConfig(vocab_size=vocab, **size, pad_token_id=pad_id, tie_word_embeddings=True, bos_token_id=5,
                        eos_token_id=6)
        )  # fmt: skip
        stock.load_state_dict(sora.state_dict())
    return sora, stock


def call(model, batch: dict):
    return model(**batch)


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def inference(size, tokenizer, text_sets: dict[str, list[str]], args) -> dict:
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    sora, bert = (m.eval() for m in models_for(size, vocab, pad, "classification"))
    out: dict = {"parameters": {"sora": parameters(sora), "bert": parameters(bert)}}
    torch._dynamo.reset()  # each size compiles afresh
    compiled = (torch.compile(sora), torch.compile(bert)) if args.compile else None
    sessions = onnx_sessions(sora, bert, tokenizer, args) if args.onnx else {}
    for set_name, texts in text_sets.items():
        single = tokenizer(texts[0], truncation=True, max_length=args.max_length, return_tensors="pt")
        single = {"input_ids": single["input_ids"], "attention_mask": single["attention_mask"]}
        many = tokenizer(texts[:32], truncation=True, max_length=args.max_length, padding=True, return_tensors="pt")
        many = {"input_ids": many["input_ids"], "attention_mask": many["attention_mask"]}
        result: dict = {"tokens_batch1": single["input_ids"].shape[1], "tokens_batch32": list(many["input_ids"].shape)}
        runs = {"eager": (sora, bert), **({"compile": compiled} if compiled else {})}
        with torch.inference_mode():
            for mode, (s, b) in runs.items():
                result[mode] = compare({"sora": partial(call, s, single), "bert": partial(call, b, single)},
                                       {"sora": partial(call, s, many), "bert": partial(call, b, many)}, args)  # fmt: skip
                print(size["hidden_size"], set_name, mode, json.dumps(result[mode]), flush=True)
        for precision, pair in sessions.items():
            result[f"onnx_{precision}"] = compare(
                {n: partial(session.run, None, onnx_feed(session, single)) for n, session in pair.items()},
                {n: partial(session.run, None, onnx_feed(session, many)) for n, session in pair.items()},
                args,
            )
            print(size["hidden_size"], set_name, precision, json.dumps(result[f"onnx_{precision}"]), flush=True)
        out[set_name] = result
    return out


def compare(singles: dict, batches: dict, args) -> dict:
    """Batch-1 latency and batch-32 throughput of Sora and BERT, interleaved; ratios Sora / BERT."""
    latency = interleaved(singles, args.repeats)
    batch = interleaved(batches, max(3, args.repeats // 4))
    return {
        "latency_ms": {k: 1000 * v for k, v in latency.items()},
        "throughput_texts_per_s": {k: 32 / v for k, v in batch.items()},
        "latency_ratio": latency["sora"] / latency["bert"],
        "throughput_ratio": batch["bert"] / batch["sora"],
    }


def onnx_feed(session, batch: dict) -> dict:
    import numpy as np

    names = {i.name for i in session.get_inputs()}
    feed = {k: v.numpy().astype(np.int64) for k, v in batch.items() if k in names}
    if "token_type_ids" in names:  # Sora's graph takes segment ids (all zeros here, as for BERT)
        feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
    return feed


def onnx_sessions(sora, bert, tokenizer, args) -> dict:
    """fp32 and int8 onnxruntime sessions of both models: Sora as `sora-hf export onnx` writes it (fused by
    onnxruntime's transformer optimizer), BERT exported and optimised the way its users do it."""
    from sora_hf.deploy.onnx_export import export_onnx, optimize_graph
    from sora_hf.deploy.onnx_runtime import ort_session
    from sora_hf.deploy.quantization import quantize_onnx

    folder = Path(tempfile.mkdtemp(prefix="cpu-speed-"))
    export_onnx(sora, folder / "sora", tokenizer=tokenizer)
    example = tokenizer(["示例"], return_tensors="pt")
    bert_path = folder / "bert.onnx"
    torch.onnx.export(
        bert, (example["input_ids"], example["attention_mask"]), str(bert_path), input_names=["input_ids", "attention_mask"],
        output_names=["logits"], dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    optimize_graph(bert_path, bert.config)  # the optimizer `export onnx` runs on Sora's graph
    paths = {"fp32": {"sora": folder / "sora" / "model.onnx", "bert": bert_path}}
    paths["int8"] = {name: quantize_onnx(path, folder / f"{name}-int8.onnx") for name, path in paths["fp32"].items()}
    return {
        precision: {name: ort_session(path, threads=args.threads) for name, path in pair.items()}
        for precision, pair in paths.items()
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training(size, tokenizer, texts, args) -> dict:
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    out = {}
    for kind in ("mlm", "causal_lm"):
        sora, stock = models_for(size, vocab, pad, "mlm" if kind == "mlm" else "causal_lm")
        results = {}
        for pad_fraction in (0.0, 0.25):
            batch = batch_of(tokenizer, texts, args.train_batch, args.max_length, pad_fraction)
            labels = batch["input_ids"].clone()
            if kind == "mlm":
                masked = torch.rand(labels.shape, generator=torch.Generator().manual_seed(0)) < 0.15
                labels[~masked | (batch["attention_mask"] == 0)] = -100
            else:
                labels[batch["attention_mask"] == 0] = -100
            steps = {}
            for name, model in (("sora", sora), ("stock", stock)):
                model.train()
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

                def step(model=model, optimizer=optimizer, batch=batch, labels=labels):
                    optimizer.zero_grad(set_to_none=True)
                    model(**batch, labels=labels).loss.backward()
                    optimizer.step()

                steps[name] = step
            seconds = interleaved(steps, args.train_repeats)
            real_tokens = int(batch["attention_mask"].sum())
            results[f"pad{int(pad_fraction * 100)}"] = {
                "steps_per_s": {k: 1 / v for k, v in seconds.items()},
                "real_tokens_per_s": {k: real_tokens / v for k, v in seconds.items()},
                "steps_ratio": seconds["stock"] / seconds["sora"],
            }
        for name in ("sora", "stock"):
            pad0 = results["pad0"]["real_tokens_per_s"][name]
            results[f"padding_cost_{name}"] = 1 - results["pad25"]["real_tokens_per_s"][name] / pad0
        results["parameters"] = {"sora": parameters(sora), "stock": parameters(stock)}
        results["stock"] = type(stock).__name__
        out[kind] = results
        print(size, kind, json.dumps(results), flush=True)
    out["peak_rss_mb_process"] = peak_rss_mb()
    return out


def decoding(size, tokenizer, texts, args) -> dict:
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    sora, llama = (m.eval() for m in models_for(size, vocab, pad, "causal_lm"))
    out = {}
    for batch_size in (1, 8):
        prompt = tokenizer(texts[:batch_size], truncation=True, max_length=32, padding=True, return_tensors="pt",
                           padding_side="left")  # fmt: skip
        inputs = {"input_ids": prompt["input_ids"], "attention_mask": prompt["attention_mask"]}
        settings = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False,
                    "pad_token_id": pad}  # fmt: skip
        fns = {
            "sora": partial(sora.generate, **inputs, **settings),
            "llama": partial(llama.generate, **inputs, **settings),
        }
        if args.static_cache:
            fns["sora_static"] = partial(sora.generate, **inputs, **settings, cache_implementation="static")
            fns["llama_static"] = partial(llama.generate, **inputs, **settings, cache_implementation="static")
            if args.compile:  # generate() compiles the decoding step with a static cache (on CPU only when asked)
                compiled = CompileConfig()
                compiled._compile_all_devices = True
                static = {**settings, "cache_implementation": "static", "compile_config": compiled}
                fns["sora_static_compile"] = partial(sora.generate, **inputs, **static)
                fns["llama_static_compile"] = partial(llama.generate, **inputs, **static)
        with torch.inference_mode():
            seconds = interleaved(fns, max(3, args.repeats // 10))
        tokens = batch_size * args.new_tokens
        out[f"batch{batch_size}"] = {
            "tokens_per_s": {k: tokens / v for k, v in seconds.items()},
            "ratio": seconds["llama"] / seconds["sora"],
            **({"static_over_dynamic_sora": seconds["sora"] / seconds["sora_static"]} if args.static_cache else {}),
        }
        if "sora_static_compile" in seconds:
            out[f"batch{batch_size}"]["static_compile_over_dynamic_sora"] = (
                seconds["sora"] / seconds["sora_static_compile"]
            )
            out[f"batch{batch_size}"]["static_compile_ratio"] = (
                seconds["llama_static_compile"] / seconds["sora_static_compile"]
            )
        print(size, "decoding", batch_size, json.dumps(out[f"batch{batch_size}"]), flush=True)
    return out


def markdown_table(report: dict) -> str:
    """The README's table: every figure Sora's speed over the stock model's (above 1: Sora is faster)."""
    results = report["results"]
    columns = [(size, text_set) for size in results for text_set in ("reviews", "news")]
    header = "| | " + " | ".join(f"{size}: {text_set}" for size, text_set in columns) + " |"
    rows = [header, "|---" * (len(columns) + 1) + "|"]
    modes = {"eager": "torch eager", "compile": "`torch.compile`", "onnx_fp32": "onnxruntime fp32",
             "onnx_int8": "onnxruntime int8"}  # fmt: skip
    for mode, title in modes.items():
        for key, what, invert in (("latency_ratio", "batch-1 latency", True), ("throughput_ratio", "batch-32", False)):
            cells = []
            for size, text_set in columns:
                entry = results[size].get("inference", {}).get(text_set, {}).get(mode)
                cells.append("" if entry is None else f"{1 / entry[key] if invert else entry[key]:.2f}")
            rows.append(f"| {title}, {what} | " + " | ".join(cells) + " |")

    def both(fn) -> str:  # one figure per size, spanning its two text columns
        return " | ".join(f"{fn(results[size])} | " for size, text_set in columns if text_set == "reviews")[:-3]

    for kind, stock in (("mlm", "BertForMaskedLM"), ("causal_lm", "LlamaForCausalLM")):
        if all(kind in r.get("training", {}) for r in results.values()):
            rows.append(f"| {kind} training steps/s vs {stock} | " + both(
                lambda r, k=kind: f"{r['training'][k]['pad0']['steps_ratio']:.2f}") + " |")  # fmt: skip
            rows.append(f"| {kind}: real tokens/s lost to 25% padding, Sora / stock | " + both(
                lambda r, k=kind: f"{r['training'][k]['padding_cost_sora']:.0%} / {r['training'][k]['padding_cost_stock']:.0%}"
            ) + " |")  # fmt: skip
    for key in ("batch1", "batch8"):
        if all(key in r.get("decoding", {}) for r in results.values()):
            rows.append(f"| `generate()` tokens/s vs Llama, {key}, dynamic cache | " + both(
                lambda r, k=key: f"{r['decoding'][k]['ratio']:.2f}") + " |")  # fmt: skip
            if all("static_compile_ratio" in r["decoding"][key] for r in results.values()):
                rows.append("| the same, static cache compiled | " + both(
                    lambda r, k=key: f"{r['decoding'][k]['static_compile_ratio']:.2f}") + " |")  # fmt: skip
                rows.append(f"| Sora static + compile over Sora dynamic, {key} | " + both(
                    lambda r, k=key: f"{r['decoding'][k]['static_compile_over_dynamic_sora']:.2f}x") + " |")  # fmt: skip
    return "\n".join(rows)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = [], []
    for size, sections in report["results"].items():
        for set_name, modes in sections.get("inference", {}).items():
            for mode in ("eager", "compile", "onnx_fp32", "onnx_int8"):
                if mode in modes:
                    labels += [f"{size} {set_name} {mode}\nbatch-1", f"{size} {set_name} {mode}\nbatch-32"]
                    values += [1 / modes[mode]["latency_ratio"], modes[mode]["throughput_ratio"]]
        for kind in ("mlm", "causal_lm"):
            if kind in sections.get("training", {}):
                labels.append(f"{size} {kind}\ntrain steps/s")
                values.append(sections["training"][kind]["pad0"]["steps_ratio"])
        for key, entry in sections.get("decoding", {}).items():
            labels.append(f"{size} decode\n{key} tokens/s")
            values.append(entry["ratio"])
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(labels)), 4), dpi=110)
    ax.bar(range(len(values)), values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_ylabel("Sora speed / stock model speed (higher is better)")
    ax.set_title("CPU speed, same run, medians of interleaved repeats", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--sections", nargs="+", default=["inference", "training", "decoding"],
                        choices=["inference", "training", "decoding"])  # fmt: skip
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--train-repeats", type=int, default=9)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--static-cache", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default="benchmarks/results/cpu_speed.json")
    parser.add_argument("--table", metavar="JSON", help="print the README table of a written report and stop")
    parser.add_argument(
        "--merge", action="store_true", help="keep the sections of --out that this run does not measure"
    )
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return {}
    torch.set_num_threads(args.threads)
    # two models x two text sets x two batch shapes share transformers' forward wrappers, one dynamo frame: past the
    # default 8 recompilations dynamo would silently run the rest in eager
    torch._dynamo.config.recompile_limit = 64
    reviews = load_review_sentiment()
    news = [sentence.text for sentence in peoples_daily_sentences()]
    text_sets = {"reviews": list(reviews["test"]["text"][:64]), "news": news[-64:]}
    tokenizer = train_tokenizer(iter([*reviews["train"]["text"][:5000], *news[:5000]]), vocab_size=8000)
    report = {
        "benchmark": "cpu_speed",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads},
        "versions": {"torch": torch.__version__, "sora_hf": sora_hf.__version__},
        "settings": vars(args),
        "results": {},
    }
    sections = {"inference": inference, "training": training, "decoding": decoding}
    for size in args.sizes:
        report["results"][size] = {
            name: sections[name](
                SIZES[size], tokenizer, text_sets if name == "inference" else text_sets["reviews"], args
            )
            for name in args.sections
        }
    out = Path(args.out)
    if args.merge and out.is_file():  # e.g. only `--sections decoding` re-measured after a change
        previous = json.loads(out.read_text())
        for size, sections in previous["results"].items():
            report["results"].setdefault(size, {})
            for name, section in sections.items():
                report["results"][size].setdefault(name, section)
        report["merged_from"] = previous.get("merged_from", []) + [previous["settings"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(report))
    plot(report, out.with_suffix(".png"))
    return report


if __name__ == "__main__":
    main()
