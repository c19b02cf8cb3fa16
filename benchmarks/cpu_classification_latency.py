"""CPU text-classification pipeline: Sora against a BERT of the same size, in the same process, same inputs.

    python benchmarks/cpu_classification_latency.py --out benchmarks/results/cpu_classification_latency.json

Both models are randomly initialised at matching size (hidden, layers, heads, intermediate, vocabulary) and run
through `transformers.pipeline("text-classification")` with the same fast tokenizer, so the ratio measures the
model code. Reports batch-1 latency (median, p90) and batched throughput, and the Sora/BERT ratio of each.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, pipeline

import sora_hf
from sora_hf import SoraConfig, SoraForSequenceClassification
from sora_hf.data import load_review_sentiment
from sora_hf.tokenizer import train_tokenizer


def measure(pipe, texts: list[str], repeats: int, batch_size: int) -> dict[str, float]:
    for text in texts[:5]:
        pipe(text, truncation=True, max_length=128)  # warm-up
    latencies = []
    for i in range(repeats):
        start = time.perf_counter()
        pipe(texts[i % len(texts)], truncation=True, max_length=128)
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    pipe(texts, batch_size=batch_size, truncation=True, max_length=128)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "latency_ms_median": 1000 * statistics.median(latencies),
        "latency_ms_p90": 1000 * latencies[int(0.9 * (len(latencies) - 1))],
        "throughput_texts_per_s": len(texts) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/cpu_classification_latency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reviews = load_review_sentiment()["test"]["text"][: args.texts]
    tokenizer = train_tokenizer(iter(load_review_sentiment()["train"]["text"][:5000]), vocab_size=8000)
    vocab = len(tokenizer)
    torch.manual_seed(0)
    sora = SoraForSequenceClassification(
        SoraConfig(
            vocab_size=vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            # a gated MLP has three matrices: 2/3 of BERT's width gives the same parameter count, rounded to a
            # multiple of 64 as Llama does: an odd width (682) runs 3x slower in the CPU matrix multiply
            intermediate_size=64 * round(args.intermediate * 2 / 3 / 64),
            num_labels=2,
            multi_level_attention=False,
        )
    ).eval()
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.intermediate,
            num_labels=2,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    results = {}
    for name, model in (("sora", sora), ("bert", bert)):
        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
        with torch.inference_mode():
            results[name] = measure(pipe, list(reviews), args.repeats, args.batch_size)
        results[name]["parameters"] = sum(p.numel() for p in model.parameters())
    ratios = {
        "latency_median_sora_over_bert": results["sora"]["latency_ms_median"] / results["bert"]["latency_ms_median"],
        "throughput_sora_over_bert": results["sora"]["throughput_texts_per_s"]
        / results["bert"]["throughput_texts_per_s"],
    }
    report = {
        "benchmark": "cpu_classification_latency",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads},
        "versions": {"torch": torch.__version__, "sora_hf": sora_hf.__version__},
        "settings": vars(args),
        "results": results,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({**results, **ratios}, indent=2))


if __name__ == "__main__":
    main()
