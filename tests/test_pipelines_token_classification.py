"""`pipeline("token-classification", aggregation_strategy=...)` groups BMES and BIOES spans (typed and bare) as
whole entities, and is transformers' own pipeline for BIO labels (same output as its class on a BERT model)."""

import pytest
import torch
from helpers import tiny_config_kwargs
from torch import nn
from transformers import BertConfig, BertForTokenClassification, TokenClassificationPipeline, pipeline

import sora_hf  # noqa: F401  (registers the pipelines)
from sora_hf import SoraConfig, SoraForTokenClassification
from sora_hf.pipelines import SoraTokenClassificationPipeline

TEXT = "新华社记者在北京大学"


class FixedTags(nn.Module):
    """A classifier that says `tags[i]` at token position i (position 0 is [CLS]): the pipeline sees known tags."""

    def __init__(self, labels: list[str], tags: list[str]):
        super().__init__()
        self.ids = torch.tensor([0, *(labels.index(t) for t in tags), 0])  # [CLS] and [SEP]: any tag
        self.num_labels = len(labels)

    def forward(self, hidden_states):
        logits = torch.full((*hidden_states.shape[:2], self.num_labels), -10.0)
        logits[:, torch.arange(len(self.ids)), self.ids] = 10.0
        return logits + 0 * hidden_states.sum()


def _tagger(model_class, config, labels, tags, vocab_size):
    torch.manual_seed(0)
    model = model_class(config(labels, vocab_size)).eval()
    model.classifier = FixedTags(labels, tags)
    return model


def _sora_config(labels, vocab_size):
    return SoraConfig(
        **tiny_config_kwargs(vocab_size=vocab_size),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


CASES = {
    "BMES typed": (
        ["O", "B-ORG", "M-ORG", "E-ORG", "S-ORG", "B-LOC", "M-LOC", "E-LOC", "S-LOC"],
        ["B-ORG", "M-ORG", "E-ORG", "O", "O", "O", "B-LOC", "E-LOC", "B-ORG", "E-ORG"],
        [("ORG", "新华社"), ("LOC", "北京"), ("ORG", "大学")],
    ),
    "BIOES": (
        ["O", "B-ORG", "I-ORG", "E-ORG", "S-ORG", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
        ["B-ORG", "I-ORG", "E-ORG", "O", "O", "S-LOC", "B-LOC", "E-LOC", "S-ORG", "S-ORG"],
        [("ORG", "新华社"), ("LOC", "在"), ("LOC", "北京"), ("ORG", "大"), ("ORG", "学")],
    ),
    "bare BMES words": (
        ["B", "M", "E", "S"],
        ["B", "M", "E", "B", "E", "S", "B", "E", "B", "E"],
        [("WORD", "新华社"), ("WORD", "记者"), ("WORD", "在"), ("WORD", "北京"), ("WORD", "大学")],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_spans_are_grouped_whole(tokenizer, case):
    labels, tags, expected = CASES[case]
    model = _tagger(SoraForTokenClassification, _sora_config, labels, tags, len(tokenizer))
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    assert isinstance(tagger, SoraTokenClassificationPipeline) and isinstance(tagger, TokenClassificationPipeline)
    found = tagger(TEXT)
    assert [(e["entity_group"], e["word"].replace(" ", "")) for e in found] == expected
    assert [TEXT[e["start"] : e["end"]] for e in found] == [word for _, word in expected]
    # transformers' own grouping breaks the first span apart (the bug this class fixes)
    stock = TokenClassificationPipeline(model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    assert [(e["entity_group"], TEXT[e["start"] : e["end"]]) for e in stock(TEXT)] != expected


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_bio_labels_give_transformers_own_output(tokenizer, strategy):
    """A BERT model with BIO labels: the registered pipeline answers exactly as transformers' class."""
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tags = ["O", "O", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O"]

    def bert_config(labels, vocab_size):
        return BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)},
        )  # fmt: skip

    model = _tagger(BertForTokenClassification, bert_config, labels, tags, len(tokenizer))
    ours = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy)
    stock = TokenClassificationPipeline(model=model, tokenizer=tokenizer, aggregation_strategy=strategy)
    assert ours(TEXT) == stock(TEXT)
