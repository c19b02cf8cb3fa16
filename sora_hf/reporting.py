"""What a run leaves for a person to read: `metrics.json`, a loss-curve PNG and a model card."""

from __future__ import annotations

import json
import math
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
) -> Path:
    """A README.md with Hub metadata (language, license, tags, pipeline) and the run's results and recipe."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        language=["zh", "en"],
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["sora", "sora-hf", *(tags or [])],
        datasets=datasets,
    )
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if isinstance(v, (int, float)))
    recipe = f"\n## Recipe\n\n```yaml\n{recipe_text.strip()}\n```\n" if recipe_text else ""
    content = f"""---
{data.to_yaml()}
---

# {title}

{summary}

## Use

```python
import sora_hf  # registers Sora with the Auto classes (or pass trust_remote_code=True without it)
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained("<this folder or repo>")
tokenizer = AutoTokenizer.from_pretrained("<this folder or repo>")
```

## Results

| metric | value |
|---|---|
{rows}
{recipe}
## Limits

Trained by sora-hf on a small public corpus; the scores above are the whole evidence of its quality.
"""
    card = ModelCard(content)
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
