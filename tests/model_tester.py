"""One tester for every Sora head, as transformers' `LlamaModelTester`: a tiny config, a padded batch with labels,
and the outputs each head must give. Keyed by short names whose classes must be the rows of `sora_hf.auto.heads.HEADS`
(the registry the rest of the package derives from): a head added there without a case here fails
`test_every_head_of_the_table_has_a_tester_case`. The multi-task model has its own tester (test_multitask.py)."""

import torch
from helpers import VOCAB, random_batch, tiny_config_kwargs
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTextEncoding,
    AutoModelForTokenClassification,
)

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForMultipleChoice,
    SoraForPreTraining,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
)

B, T = 3, 10


def head_case(name: str):
    """(model class, Auto class, inputs with labels, {output: expected shape})."""
    ids, mask = random_batch(B, T, pad_rows={1: 3})
    g = torch.Generator().manual_seed(1)
    if name == "base":
        return SoraModel, AutoModel, dict(input_ids=ids, attention_mask=mask), {"last_hidden_state": (B, T, 32)}
    if name == "masked_lm":
        labels = torch.full_like(ids, -100)
        labels[:, 2] = ids[:, 2]
        masked = ids.clone()
        masked[:, 2] = 4
        inputs = dict(input_ids=masked, attention_mask=mask, labels=labels)
        return SoraForMaskedLM, AutoModelForMaskedLM, inputs, {"logits": (B, T, VOCAB)}
    if name == "pretraining":
        labels = torch.full_like(ids, -100)
        labels[:, 1:4] = ids[:, 1:4]
        masked = ids.clone()
        masked[:, 1:4] = 4
        inputs = dict(input_ids=masked, attention_mask=mask, labels=labels)
        return (
            SoraForPreTraining,
            AutoModelForPreTraining,
            inputs,
            {"logits": (B, T), "generator_logits": (B, T, VOCAB)},
        )
    if name == "causal_lm":
        inputs = dict(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
        return SoraForCausalLM, AutoModelForCausalLM, inputs, {"logits": (B, T, VOCAB)}
    if name == "seq2seq":
        labels = torch.randint(7, VOCAB, (B, 6), generator=g)
        inputs = dict(input_ids=ids, attention_mask=mask, labels=labels)
        return SoraForSeq2SeqLM, AutoModelForSeq2SeqLM, inputs, {"logits": (B, 6, VOCAB)}
    if name == "sequence_classification":
        inputs = dict(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2, 1]))
        return SoraForSequenceClassification, AutoModelForSequenceClassification, inputs, {"logits": (B, 3)}
    if name == "token_classification":
        labels = torch.randint(0, 3, (B, T), generator=g).masked_fill(mask == 0, -100)
        inputs = dict(input_ids=ids, attention_mask=mask, labels=labels)
        return SoraForTokenClassification, AutoModelForTokenClassification, inputs, {"logits": (B, T, 3)}
    if name == "question_answering":
        inputs = dict(
            input_ids=ids,
            attention_mask=mask,
            start_positions=torch.tensor([1, 2, 3]),
            end_positions=torch.tensor([2, 4, 5]),
        )
        return (
            SoraForQuestionAnswering,
            AutoModelForQuestionAnswering,
            inputs,
            {"start_logits": (B, T), "end_logits": (B, T)},
        )
    if name == "multiple_choice":
        inputs = dict(input_ids=ids.view(1, B, T), attention_mask=mask.view(1, B, T), labels=torch.tensor([2]))
        return SoraForMultipleChoice, AutoModelForMultipleChoice, inputs, {"logits": (1, B)}
    if name == "sentence_embedding":
        inputs = dict(input_ids=ids, attention_mask=mask)  # its pair loss is the similarity task's (test_tasks.py)
        return SoraForSentenceEmbedding, AutoModelForTextEncoding, inputs, {"embeddings": (B, 32)}
    raise KeyError(name)


HEADS = [
    "base",
    "masked_lm",
    "pretraining",
    "causal_lm",
    "seq2seq",
    "sequence_classification",
    "token_classification",
    "question_answering",
    "multiple_choice",
    "sentence_embedding",
]


def make_model(model_class, **overrides):
    torch.manual_seed(0)
    config = SoraConfig(**tiny_config_kwargs(**{"num_labels": 3, **overrides}))
    return model_class(config)
