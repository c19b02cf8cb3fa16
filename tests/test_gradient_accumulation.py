"""Gradient accumulation through `Trainer` gives the update of one big batch, for every kind of head.

transformers' Trainer divides the loss by the accumulation steps only for models whose forward does not take
`**kwargs` (or that set `accepts_loss_kwargs = False`); the others must divide by `num_items_in_batch` themselves.
A head that did neither would take steps `gradient_accumulation_steps` times too large.
"""

import pytest
import torch
from datasets import Dataset
from helpers import tiny_config_kwargs
from transformers import Trainer, TrainingArguments

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForQuestionAnswering,
    SoraForSequenceClassification,
    SoraForTokenClassification,
)

SEQ = 8


def _rows(kind: str) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(8):
        ids = torch.randint(7, 120, (SEQ,), generator=g)
        row = {"input_ids": ids.tolist(), "attention_mask": [1] * SEQ}
        if kind == "classification":
            row["labels"] = i % 3
        elif kind == "tokens":
            row["labels"] = torch.randint(0, 4, (SEQ,), generator=g).tolist()
        elif kind == "qa":
            row["start_positions"], row["end_positions"] = i % SEQ, (i + 2) % SEQ
        elif kind == "mlm":  # two masked tokens in half the rows, one in the others: counts differ per batch
            labels = [-100] * SEQ
            for j in (1, 5) if i % 2 else (3,):
                labels[j] = int(ids[j])
            row["labels"] = labels
        else:  # causal LM
            row["labels"] = ids.tolist()
        rows.append(row)
    return rows


CASES = {
    "classification": (SoraForSequenceClassification, dict(num_labels=3)),
    "tokens": (SoraForTokenClassification, dict(num_labels=4)),
    "qa": (SoraForQuestionAnswering, {}),
    "mlm": (SoraForMaskedLM, {}),
    "mlm_sparse": (SoraForMaskedLM, dict(sparse_prediction=True)),
    "causal": (SoraForCausalLM, dict(is_decoder=True)),
}


def _one_update(model_class, config_kwargs, rows, batch_size: int, accumulation: int, tmp_path) -> dict:
    torch.manual_seed(0)
    model = model_class(SoraConfig(**tiny_config_kwargs(**config_kwargs)))
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run-{batch_size}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows)).train()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_accumulated_micro_batches_equal_one_batch(case, tmp_path):
    model_class, config_kwargs = CASES[case]
    kind = "mlm" if case.startswith("mlm") else case
    rows = _rows(kind)
    whole = _one_update(model_class, config_kwargs, rows, 8, 1, tmp_path)
    accumulated = _one_update(model_class, config_kwargs, rows, 4, 2, tmp_path)
    torch.manual_seed(0)
    initial = dict(model_class(SoraConfig(**tiny_config_kwargs(**config_kwargs))).named_parameters())
    moved = max((whole[n] - initial[n]).abs().max().item() for n in whole)
    assert moved > 1e-3  # the step did something, so equal results are not two no-ops
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], atol=1e-5, rtol=1e-4, msg=name)
