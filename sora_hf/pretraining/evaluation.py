"""Held-out evaluation of each pre-training objective, token-weighted over the whole split."""

from __future__ import annotations

import torch
from datasets import Dataset

from ..metrics.reporting import safe_exp


@torch.no_grad()
def evaluate_pretraining(model, objective: str, dataset: Dataset, collator, batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics of each objective, token-weighted over the whole split (not averaged over batches).

    mlm / denoising / clm: accuracy and perplexity of the predicted tokens; rtd: the discriminator's accuracy on
    every real token plus the generator's masked-token accuracy and perplexity.
    """
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(0)  # the RTD generator samples: make the held-out number repeatable
    total_loss = correct = count = 0.0
    disc_correct = disc_count = replaced = 0.0
    for start in range(0, len(dataset), batch_size):
        features = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: v.to(device) for k, v in collator(features).items()}
        out = model(**batch)
        if objective == "rtd":
            logits, labels = out.generator_logits, batch["labels"]
            mask = batch["attention_mask"].bool()
            disc_correct += ((out.logits > 0).long() == out.replaced_labels)[mask].sum().item()
            disc_count += mask.sum().item()
            replaced += out.replaced_labels[mask].sum().item()
        else:
            logits, labels = out.logits, batch["labels"]
        if objective == "clm":
            logits, labels = logits[:, :-1], labels[:, 1:]
        keep = labels != -100
        flat_labels = labels[keep]
        # with config.sparse_prediction the logits already hold only the labelled positions
        flat_logits = (logits if logits.dim() == 2 else logits[keep]).float()
        total_loss += torch.nn.functional.cross_entropy(flat_logits, flat_labels, reduction="sum").item()
        correct += (flat_logits.argmax(-1) == flat_labels).sum().item()
        count += keep.sum().item()
    loss = total_loss / max(count, 1)
    prefix = "generator_" if objective == "rtd" else ""
    name = {"mlm": "masked_token", "rtd": "masked_token", "clm": "next_token", "denoising": "target_token"}[objective]
    metrics = {
        f"eval_{prefix}{name}_accuracy": correct / max(count, 1),
        f"eval_{prefix}perplexity": safe_exp(loss),
        f"eval_{prefix}loss": loss,
        "eval_predicted_tokens": int(count),
    }
    if objective == "rtd":
        metrics["eval_discriminator_accuracy"] = disc_correct / max(disc_count, 1)
        metrics["eval_replaced_fraction"] = replaced / max(disc_count, 1)
    return metrics
