"""Pre-training candidates compared at equal wall time on this machine: held-out loss against minutes trained.

    python benchmarks/pretraining_budget.py --minutes 12 --out benchmarks/results/pretraining_budget.json

Each candidate is `recipes/pretrain/zh-tiny-mlm.yaml` with other sizes or objective options. A short probe measures
its seconds per optimizer step here; its step count is then set so that the run (warm-up and linear decay, as the
recipe schedules it) fills `--minutes`, and a callback stops it if the estimate was short, so every candidate gets the
same wall time, not the same steps ("Cramming", Geiping & Goldstein 2022). All candidates share one tokenizer and
one held-out split, so their whole-word masked-LM losses are comparable; the curves (held-out loss against minutes)
go to a PNG beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

from transformers import TrainerCallback

from sora_hf.recipes import find_recipe, load_pretrain_recipe
from sora_hf.runs import run_pretraining

BASE = "zh-tiny-mlm"


def _size(layers: int, width: int, heads: int) -> dict[str, int]:
    return {"model.num_hidden_layers": layers, "model.hidden_size": width, "model.intermediate_size": 3 * width,
            "model.num_attention_heads": heads}  # fmt: skip


SIZES = {"4x128": _size(4, 128, 4), "6x128": _size(6, 128, 4), "4x192": _size(4, 192, 4), "4x256": _size(4, 256, 4),
         "6x256": _size(6, 256, 4), "8x256": _size(8, 256, 4), "6x384": _size(6, 384, 6)}  # fmt: skip
VARIANTS = {
    "": {},
    "-grouped": {"training.train_sampling_strategy": "group_by_length"},  # batches of like lengths: less padding
    "-mask30": {"objective_options.mlm_probability": 0.3},
    "-lr2e-3": {"training.learning_rate": 2e-3},
    "-bs64": {"training.per_device_train_batch_size": 64},
}
CANDIDATES: dict[str, dict] = {
    size + suffix: {**overrides, **variant}
    for size, overrides in SIZES.items()
    for suffix, variant in VARIANTS.items()
}


class WallClock(TrainerCallback):
    """Stamps each evaluation with the minutes trained (evaluation time excluded) and stops at the budget."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s, self.points, self.eval_s = budget_s, [], 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        # Trainer evaluates after this hook, so the time from here to `on_evaluate` is evaluation
        self.step_ended = time.perf_counter()
        if self.step_ended - self.start - self.eval_s > self.budget_s:
            control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        trained = self.step_ended - self.start - self.eval_s
        self.eval_s += time.perf_counter() - self.step_ended
        self.points.append({"minutes": round(trained / 60, 3), "step": state.global_step,
                            "eval_loss": metrics["eval_loss"]})  # fmt: skip


def _recipe(overrides: dict, out: Path, tokenizer: str | None):
    overrides = {**overrides, "output_dir": str(out), "training.disable_tqdm": True}
    if tokenizer:
        overrides.update({"tokenizer.train": False, "tokenizer.path": tokenizer})
    return load_pretrain_recipe(find_recipe(BASE, "pretrain"), overrides)


def seconds_per_step(name: str, runs: Path, tokenizer: str | None, steps: int = 30) -> float:
    """Seconds per optimizer step of a short run (no evaluation or checkpoints), its first 5 steps excluded."""
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    overrides = {**CANDIDATES[name], "training.max_steps": steps, "training.eval_strategy": "no",
                 "training.save_strategy": "no"}  # fmt: skip
    run_pretraining(_recipe(overrides, runs / f"probe-{name}", tokenizer), overwrite=True, callbacks=[Stamp()])
    return (stamps[-1] - stamps[4]) / (len(stamps) - 5)


def run_candidate(name: str, minutes: float, runs: Path, tokenizer: str | None, evals: int) -> dict:
    rate = seconds_per_step(name, runs, tokenizer)
    steps = int(minutes * 60 / rate)
    clock = WallClock(minutes * 60 * 1.05)
    overrides = {**CANDIDATES[name], "training.max_steps": steps, "training.eval_strategy": "steps",
                 "training.eval_steps": max(steps // evals, 1), "training.save_strategy": "no"}  # fmt: skip
    metrics = run_pretraining(_recipe(overrides, runs / name, tokenizer), overwrite=True, callbacks=[clock])
    keep = ("eval_loss", "eval_masked_token_accuracy", "eval_perplexity", "parameters", "train_steps",
            "train_seconds", "train_tokens", "train_tokens_per_second")  # fmt: skip
    return {"overrides": CANDIDATES[name], "seconds_per_step": round(rate, 4), "planned_steps": steps,
            **{k: metrics[k] for k in keep if k in metrics}, "curve": clock.points}  # fmt: skip


def plot(results: dict, path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, r in results.items():
        points = r["curve"]
        ax.plot([p["minutes"] for p in points], [p["eval_loss"] for p in points], "o-", label=name, linewidth=1.3)
    ax.set_xlabel("minutes of training (2-core CPU, evaluation excluded)")
    ax.set_ylabel("held-out whole-word masked-LM loss")
    ax.set_title(f"{BASE} candidates at equal wall time ({minutes:g} min)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--candidates", nargs="+", default=["4x128", "4x256", "6x256"], choices=sorted(CANDIDATES))
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder all candidates share (else trained)")
    parser.add_argument("--evals", type=int, default=8, help="held-out evaluations per run (the curve's points)")
    parser.add_argument("--runs", default="runs/pretraining_budget")
    parser.add_argument("--out", default="benchmarks/results/pretraining_budget.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    if report.get("minutes") != args.minutes:
        report = {"minutes": args.minutes, "results": {}}
    report.update(base_recipe=BASE, machine={"cpu": platform.processor() or platform.machine()})
    for name in args.candidates:
        report["results"][name] = run_candidate(name, args.minutes, Path(args.runs), args.tokenizer, args.evals)
        print(name, json.dumps({k: v for k, v in report["results"][name].items() if k != "curve"}), flush=True)
        out.write_text(json.dumps(report, indent=2) + "\n")  # after each candidate: a long sweep keeps what it has
    report["chosen_on_held_out_loss"] = min(report["results"], key=lambda n: report["results"][n]["eval_loss"])
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report["results"], out.with_suffix(".png"), args.minutes)
    print(json.dumps({n: r["eval_loss"] for n, r in report["results"].items()}, indent=2))


if __name__ == "__main__":
    main()
