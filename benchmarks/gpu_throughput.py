"""Training and decoding throughput of Sora against transformers' own models of the same size, in one process.

    python benchmarks/gpu_throughput.py encoder   # Sora MLM vs BertForMaskedLM (sdpa) and ModernBertForMaskedLM
    python benchmarks/gpu_throughput.py decoder   # Sora CLM vs LlamaForCausalLM
    python benchmarks/gpu_throughput.py decode    # generate(): tokens/s at batch 1 and 32 vs Llama
    python benchmarks/gpu_throughput.py all --out benchmarks/results/gpu_throughput.json
    python benchmarks/gpu_throughput.py all --preset tiny --device cpu   # a smoke run of the script itself

Models are randomly initialised at matching sizes (same hidden size, depth, heads, vocabulary; a gated MLP gets 2/3
of the plain MLP's width so the parameter counts match). Training steps run AdamW in bf16 autocast on random token
ids; each figure is the median over timed steps after warm-up. MFU is 6 * parameters * tokens/s over the bf16
matrix-multiply peak measured on the same device at the start of the run. With `--padding 0.25` a quarter of every
batch is padding and only real tokens are counted. Ratios are Sora over each reference, from the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    LlamaConfig,
    LlamaForCausalLM,
    ModernBertConfig,
    ModernBertForMaskedLM,
)

from sora_hf import SoraConfig, SoraForCausalLM, SoraForMaskedLM

PRESETS = {
    # ~110M parameters with a 30.5k vocabulary (BERT-base shape)
    "base": dict(hidden=768, layers=12, heads=12, intermediate=3072, vocab=30528, batch=32, seq=512, dec_seq=1024),
    "tiny": dict(hidden=64, layers=2, heads=4, intermediate=256, vocab=1024, batch=4, seq=64, dec_seq=64),
}


def gated_width(intermediate: int) -> int:
    """2/3 of a plain MLP's width (same parameters), a multiple of 64: odd widths are slow in matrix multiplies."""
    return 64 * round(intermediate * 2 / 3 / 64)


def gated_sizes(p: dict, max_positions: int) -> dict:
    """Config sizes of a gated-MLP model (Sora, Llama, ModernBERT) matching the preset's plain-MLP reference."""
    return dict(
        vocab_size=p["vocab"],
        hidden_size=p["hidden"],
        num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"],
        intermediate_size=gated_width(p["intermediate"]),
        max_position_embeddings=max_positions,
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, size: int) -> float:
    """Measured bf16 matrix-multiply throughput: the denominator of MFU."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    repeats = 50 if device.type == "cuda" else 3
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def batch_inputs(p: dict, seq: int, padding: float, device: torch.device, mlm: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, p["vocab"], (p["batch"], seq), generator=g)
    mask = torch.ones_like(ids)
    if padding > 0:  # right padding with random lengths averaging (1 - padding) * seq
        lengths = (seq * (1 - padding) * 2 * torch.rand(p["batch"], generator=g)).clamp(8, seq).long()
        lengths = (lengths.float() * (seq * (1 - padding) * p["batch"] / lengths.sum())).clamp(8, seq).long()
        mask = (torch.arange(seq) < lengths[:, None]).long()
        ids = ids * mask
    if mlm:
        chosen = (torch.rand(ids.shape, generator=g) < 0.15) & mask.bool()
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        ids = torch.where(chosen, torch.full_like(ids, 4), ids)
    else:
        labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}, int(mask.sum())


def train_throughput(make_model: Callable, batch: dict, real_tokens: int, device, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = make_model().to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    parameters = sum(p.numel() for p in model.parameters())
    result = {
        "parameters": parameters,
        "step_ms": 1000 * seconds,
        "tokens_per_s": real_tokens / seconds,
        "loss": float(loss),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def encoder_models(p: dict, attn: str) -> dict[str, Callable]:
    gated = gated_sizes(p, max_positions=max(p["seq"], 512))

    def sora(padding_free: bool) -> SoraForMaskedLM:
        config = SoraConfig(**gated, sparse_prediction=True, padding_free=padding_free, attn_implementation=attn)
        return SoraForMaskedLM(config)

    return {
        "sora": lambda: sora(padding_free=False),
        "sora_padding_free": lambda: sora(padding_free=True),
        "bert": lambda: BertForMaskedLM(
            BertConfig(
                vocab_size=p["vocab"],
                hidden_size=p["hidden"],
                num_hidden_layers=p["layers"],
                num_attention_heads=p["heads"],
                intermediate_size=p["intermediate"],
                max_position_embeddings=max(p["seq"], 512),
                attn_implementation="sdpa",
            )
        ),
        # ModernBERT's Wi is (hidden, 2 * intermediate): the gated width gives it the same size as Sora
        "modernbert": lambda: ModernBertForMaskedLM(
            ModernBertConfig(**gated, sparse_prediction=True, pad_token_id=0, attn_implementation=attn)
        ),
    }


def run_training(kind: str, p: dict, device, steps: int, warmup: int, padding: float, peak: float, attn: str):
    seq = p["seq"] if kind == "encoder" else p["dec_seq"]
    batch, real_tokens = batch_inputs(p, seq, padding, device, mlm=kind == "encoder")
    if kind == "encoder":
        models = encoder_models(p, attn)
        if padding == 0:
            models.pop("sora_padding_free")  # nothing to drop
    else:
        common = gated_sizes(p, max_positions=max(seq, 512))
        models = {
            "sora": lambda: SoraForCausalLM(SoraConfig(**common, is_decoder=True, attn_implementation=attn)),
            "llama": lambda: LlamaForCausalLM(
                LlamaConfig(**common, tie_word_embeddings=True, attn_implementation=attn)
            ),
        }
    results = {}
    for name, make in models.items():
        print(f"{kind} {name} (padding {padding:.0%}) ...", flush=True)
        try:
            r = train_throughput(make, batch, real_tokens, device, steps, warmup)
            r["mfu"] = 6 * r["parameters"] * r["tokens_per_s"] / (peak * 1e12) if peak else None
        except Exception as error:  # a reference that cannot run here (e.g. an attention kernel) is reported
            r = {"error": f"{type(error).__name__}: {error}"[:500]}
        results[name] = r
    reference_names = [n for n in results if not n.startswith("sora")]
    ratios = {
        f"{s}_over_{ref}": results[s]["tokens_per_s"] / results[ref]["tokens_per_s"]
        for s in results
        if s.startswith("sora") and "tokens_per_s" in results[s]
        for ref in reference_names
        if "tokens_per_s" in results[ref]
    }
    return {
        "seq": seq,
        "batch": p["batch"],
        "padding": padding,
        "real_tokens": real_tokens,
        **results,
        "ratios": ratios,
    }


@torch.inference_mode()
def run_decoding(p: dict, device, new_tokens: int, batch_sizes: list[int], attn: str) -> dict:
    common = gated_sizes(p, max_positions=2048)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    sora = SoraForCausalLM(SoraConfig(**common, is_decoder=True, attn_implementation=attn)).to(device, dtype).eval()
    llama = (
        LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True, attn_implementation=attn))
        .to(device, dtype)
        .eval()
    )
    variants = {
        "llama_dynamic_cache": (llama, {}),
        "llama_static_cache": (llama, {"cache_implementation": "static"}),
        "sora_dynamic_cache": (sora, {}),
        "sora_static_cache": (sora, {"cache_implementation": "static"}),
    }
    out: dict = {"new_tokens": new_tokens, "dtype": str(dtype)}
    for batch_size in batch_sizes:
        prompt = torch.randint(7, p["vocab"], (batch_size, 16), device=device)
        rows = {}
        for name, (model, extra) in variants.items():
            print(f"decode {name} batch {batch_size} ...", flush=True)
            kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **extra)
            kwargs.update(attention_mask=torch.ones_like(prompt), pad_token_id=0)
            try:
                model.generate(prompt, **kwargs)  # warm-up (and compilation for the static cache)
                times = []
                for _ in range(3):
                    synchronize(device)
                    start = time.perf_counter()
                    model.generate(prompt, **kwargs)
                    synchronize(device)
                    times.append(time.perf_counter() - start)
                rows[name] = {"tokens_per_s": batch_size * new_tokens / statistics.median(times)}
            except Exception as error:
                rows[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
        best_sora = max((r.get("tokens_per_s", 0) for n, r in rows.items() if n.startswith("sora")), default=0)
        reference = rows["llama_dynamic_cache"].get("tokens_per_s")
        rows["sora_best_over_llama_generate"] = best_sora / reference if reference else None
        out[f"batch_{batch_size}"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["encoder", "decoder", "decode", "all"])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="base")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--attn", default="sdpa", help="Sora's (and ModernBERT's / Llama's) attention")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/gpu_throughput.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    p = PRESETS[args.preset]
    peak = matmul_peak_tflops(device, 8192 if device.type == "cuda" else 512)
    report: dict = {
        "benchmark": "gpu_throughput",
        "machine": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "platform": platform.platform(),
            "bf16_matmul_peak_tflops": peak,
        },
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "settings": {**vars(args), **p},
    }
    if args.what in ("encoder", "all"):
        report["encoder"] = [
            run_training("encoder", p, device, args.steps, args.warmup, padding, peak, args.attn)
            for padding in (0.0, 0.25)
        ]
    if args.what in ("decoder", "all"):
        report["decoder"] = run_training("decoder", p, device, args.steps, args.warmup, 0.0, peak, args.attn)
    if args.what in ("decode", "all"):
        report["decode"] = run_decoding(p, device, args.new_tokens, [1, 32], args.attn)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
