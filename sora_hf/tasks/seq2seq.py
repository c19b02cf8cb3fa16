"""Sequence to sequence (pinyin, translation, summarisation) on a Sora encoder-decoder; scored on greedy output."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics import load_metric
from .base import Features, Task


def encode_seq2seq(dataset, tokenizer, max_length: int, max_target_length: int) -> Features:
    """Source through the tokenizer's template; target as plain tokens + [EOS] (the decoder starts from [BOS])."""
    eos = tokenizer.eos_token_id

    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(batch["source"], truncation=True, max_length=max_length)
        targets = tokenizer(batch["target"], add_special_tokens=False)["input_ids"]
        enc["labels"] = [ids[: max_target_length - 1] + [eos] for ids in targets]
        return enc

    return Features(dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenising"))


class Seq2SeqTask(Task):
    name = "seq2seq"
    auto_class_name = "AutoModelForSeq2SeqLM"
    pipeline_tag = "text2text-generation"
    perturbed_columns = ("source",)
    headline = "test_chrf"

    def check_config(self, config, checkpoint) -> None:
        """No shape check for seq2seq: only the checked load (`load_checked`) judges the checkpoint."""

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        return encode_seq2seq(dataset, tokenizer, recipe.max_length, recipe.max_target_length)

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, model=None, label_pad_token_id=-100)

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        device = next(model.parameters()).device
        texts = []
        for start in range(0, len(features.dataset), batch_size):
            rows = [features.dataset[i] for i in range(start, min(start + batch_size, len(features.dataset)))]
            batch = tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt").to(device)
            generated = model.generate(**batch, max_new_tokens=recipe.max_target_length, do_sample=False, num_beams=1)
            texts.extend(tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated)
        return texts

    def score(self, info, test, predictions) -> dict[str, Any]:
        refs = list(test["target"])
        bleu = load_metric("sacrebleu").compute(predictions=predictions, references=[[r] for r in refs])
        chrf = load_metric("chrf").compute(predictions=predictions, references=[[r] for r in refs])
        cer = load_metric("cer").compute(predictions=predictions, references=refs)
        exact = float(np.mean([p == r for p, r in zip(predictions, refs, strict=True)]))
        return {
            "test_bleu": bleu["score"],
            "test_chrf": chrf["score"],
            "test_cer": cer["cer"] if isinstance(cer, dict) else cer,
            "test_exact_match": exact,
        }

    def prediction_row(self, example, prediction, names: list[str], info) -> dict[str, Any]:
        return {"source": example["source"], "target": example["target"], "prediction": prediction}


TASK = Seq2SeqTask()
