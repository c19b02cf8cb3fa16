"""Every head answers bit for bit as the model code before the re-layout of issue 29 did (tests/fixtures/sora_a6b611d,
the code at a6b611d), on the same weights and inputs: the old classes save, today's load, and each output tensor,
hidden state and attention map must be `torch.equal`, in every layout the config offers (Sora's pre-norm rotary
blocks, BERT's post-norm and learned positions, decoders, padding-free, CRF, multi-level pooling)."""

import sys
from pathlib import Path

import pytest
import torch
from helpers import import_model_code, random_batch, tiny_config_kwargs

import sora_hf

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sora_a6b611d"
BERT = dict(
    norm_position="post",
    norm_type="layer_norm",
    position_embedding_type="absolute",
    embedding_norm=True,
    mlp_type="plain",
    attention_bias=True,
    mlp_bias=True,
    hidden_act="gelu",
)
LAYOUTS = {
    "sora": {},
    "bert": BERT,
    "roberta": {**BERT, "position_offset": 1, "type_vocab_size": 1},
    "padding_free": {"padding_free": True},
    "not_padding_free": {"padding_free": False, "qk_norm": True},
    "multi_level": {"multi_level_attention": True, "classifier_pooling": "mean"},
}
DECODER_LAYOUTS = {
    "decoder": {"is_decoder": True},
    "sliding": {"is_decoder": True, "sliding_window": 4, "qk_norm": True},
}
TAGS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
HEADS = {
    "SoraModel": {},
    "SoraForMaskedLM": {},
    "SoraForPreTraining": {},
    "SoraForSeq2SeqLM": {"num_decoder_layers": 1},
    "SoraForSequenceClassification": {"num_labels": 3},
    "SoraForTokenClassification": {"id2label": TAGS},
    "SoraForTokenClassification-crf": {"id2label": TAGS, "use_crf": True},
    "SoraForQuestionAnswering": {},
    "SoraForMultipleChoice": {},
    "SoraForSentenceEmbedding": {},
    "SoraForMultiTask": {
        "tasks": {
            "sentiment": {"type": "classification", "labels": ["neg", "pos"]},
            "ner": {"type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
            "qa": {"type": "question_answering"},
        }
    },
}
DECODER_HEADS = {"SoraModel": {}, "SoraForCausalLM": {}, "SoraForSequenceClassification": {"num_labels": 3}}
CASES = [(h, layout) for h in HEADS for layout in LAYOUTS if not (h == "SoraForSeq2SeqLM" and layout != "sora")]
CASES += [(h, layout) for h in DECODER_HEADS for layout in DECODER_LAYOUTS]


@pytest.fixture(scope="module")
def old_code(tmp_path_factory):
    """The code at a6b611d as an importable package `sora_a6b611d` (its own classes, nothing registered)."""
    root = tmp_path_factory.mktemp("old-code")
    try:
        yield import_model_code(root, FIXTURE, "sora_a6b611d", ("modeling_sora", "modeling_sora_multitask"))
    finally:
        sys.path.remove(str(root))


def _inputs(name: str, labels: bool) -> dict:
    input_ids, attention_mask = random_batch(batch=3, seq=10, seed=3, pad_rows={1: 4, 2: 2})
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if name == "SoraForMultipleChoice":
        kwargs = {k: v.unsqueeze(1).expand(-1, 2, -1).contiguous() for k, v in kwargs.items()}
        kwargs["labels"] = torch.tensor([0, 1, 1])
    elif name == "SoraForSeq2SeqLM":
        kwargs["labels"] = input_ids[:, :6].masked_fill(attention_mask[:, :6] == 0, -100)
    elif name in ("SoraForMaskedLM", "SoraForCausalLM", "SoraForPreTraining"):
        kwargs["labels"] = input_ids.masked_fill((attention_mask == 0) | (input_ids % 3 != 0), -100)
    elif name == "SoraForSequenceClassification":
        kwargs["labels"] = torch.tensor([0, 2, 1])
    elif name.startswith("SoraForTokenClassification"):
        kwargs["labels"] = (input_ids % 5).masked_fill(attention_mask == 0, -100)
    elif name == "SoraForQuestionAnswering":
        kwargs["start_positions"], kwargs["end_positions"] = torch.tensor([1, 2, 3]), torch.tensor([2, 4, 3])
    elif name == "SoraForMultiTask":
        kwargs["task"] = "ner"
        kwargs["labels"] = (input_ids % 3).masked_fill(attention_mask == 0, -100)
    if not labels:
        kwargs = {k: v for k, v in kwargs.items() if k in ("input_ids", "attention_mask", "task")}
    return kwargs


def _tensors(value, prefix: str):
    """Every tensor in an output, with a path that names it (tuples of hidden states and attentions included)."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{prefix}.{key}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{prefix}[{i}]")
    elif value is not None and hasattr(value, "to_tuple"):
        yield from _tensors(dict(value.items()), prefix)


@pytest.mark.parametrize(("name", "layout"), CASES, ids=[f"{h}-{layout}" for h, layout in CASES])
def test_every_head_answers_bit_for_bit_as_before_the_re_layout(name, layout, old_code, tmp_path):
    class_name = name.split("-")[0]
    module = old_code["modeling_sora_multitask" if class_name == "SoraForMultiTask" else "modeling_sora"]
    layouts = DECODER_LAYOUTS if layout in DECODER_LAYOUTS else LAYOUTS
    config_kwargs = tiny_config_kwargs(**HEADS.get(name, DECODER_HEADS.get(name, {})), **layouts[layout])
    torch.manual_seed(0)
    getattr(module, class_name)(module.SoraConfig(**config_kwargs)).save_pretrained(tmp_path)
    # both load the same file: a model built in memory and one loaded from safetensors may differ in the last bit
    # (the weights' alignment picks the matmul kernel), whatever the code
    old = getattr(module, class_name).from_pretrained(tmp_path).eval()
    model, info = getattr(sora_hf, class_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    assert type(model).__module__.startswith("sora_hf.")  # today's class, not the saved code
    model.eval()
    outputs_checked = 0
    for implementation in ("eager", "sdpa"):
        old.set_attn_implementation(implementation)
        model.set_attn_implementation(implementation)
        for labels in (True, False):
            extra = {"output_hidden_states": True} if labels else {"output_attentions": implementation == "eager"}
            with torch.no_grad():
                torch.manual_seed(1)  # the ELECTRA generator samples its replacements
                want = dict(_tensors(old(**_inputs(class_name, labels), **extra), "out"))
                torch.manual_seed(1)
                got = dict(_tensors(model(**_inputs(class_name, labels), **extra), "out"))
            assert got.keys() == want.keys(), (implementation, labels)
            for key, tensor in want.items():
                assert torch.equal(got[key], tensor), f"{implementation} labels={labels} {key}"
            outputs_checked += len(want)
    assert outputs_checked >= 4
    # and training: the same loss gives the same gradient on every weight
    old.train()
    model.train()
    for m in (old, model):
        m.set_attn_implementation("sdpa")
        m.zero_grad()
        torch.manual_seed(2)  # the same dropout masks and generator samples
        out = m(**_inputs(class_name, True))
        loss = out.loss if getattr(out, "loss", None) is not None else out[0].float().pow(2).mean()
        loss.backward()
    old_grads = {n: p.grad for n, p in old.named_parameters()}
    for n, p in model.named_parameters():
        assert (p.grad is None) == (old_grads[n] is None), n
        if p.grad is not None:
            assert torch.equal(p.grad, old_grads[n]), n
