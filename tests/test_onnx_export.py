"""ONNX export: every supported head agrees with torch under onnxruntime at new batch sizes and lengths with padding,
the classifier runner answers like transformers' pipeline, greedy decoding through the exported step equals
`generate`, and what cannot be exported is refused with a message naming the head."""

import json

import numpy as np
import pytest
import torch
from helpers import tiny_config_kwargs
from transformers import pipeline

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
)
from sora_hf.cli import main
from sora_hf.deploy import OnnxCausalLM, OnnxExportError, OnnxSequenceClassifier, export_onnx
from sora_hf.deploy.onnx_export import check_parity
from sora_hf.tokenizer import train_tokenizer

TEXTS = [
    "这个手机的屏幕很好，电池也耐用。",
    "物流太慢了，包装也破了，很失望。",
    "价格便宜，质量不错，推荐购买！",
    "The quick brown fox jumps over the lazy dog.",
] * 10


def build(model_class, **overrides):
    torch.manual_seed(0)
    return model_class(SoraConfig(**tiny_config_kwargs(**overrides))).eval()


@pytest.mark.parametrize(
    "model_class",
    [SoraForSequenceClassification, SoraForTokenClassification, SoraForQuestionAnswering, SoraForSentenceEmbedding],
)
def test_encoder_heads_match_torch_at_new_shapes(model_class, tmp_path):
    model = build(model_class, num_labels=3)
    info = export_onnx(model, tmp_path)
    # export-time check: two shapes with padding, recorded in export_info.json
    recorded = json.loads((tmp_path / "export_info.json").read_text())
    assert recorded["architecture"] == model_class.__name__ and recorded["opset"] == 17
    assert recorded["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert recorded["max_abs_diff"] == info.max_abs_diff < 1e-4
    assert (tmp_path / "config.json").is_file()
    # shapes the graph never saw at export time: batch 1 and 5, lengths 5 and 21, padded rows
    checks = check_parity(model, tmp_path / "model.onnx", shapes=[(1, 5, 0), (5, 21, 0)])
    assert [c["batch"] for c in checks] == [1, 5]
    assert max(c["max_abs_diff"] for c in checks) < 1e-4


def test_encoder_graph_is_fused_by_onnxruntimes_optimizer_and_agrees_with_the_plain_graph(tmp_path):
    import onnx
    import onnxruntime as ort

    model = build(SoraForSequenceClassification, num_labels=3)
    fused, plain = export_onnx(model, tmp_path / "fused"), export_onnx(model, tmp_path / "plain", optimize=False)
    layers = model.config.num_hidden_layers
    # every RMSNorm but the embeddings' first becomes one kernel with the residual add before it
    assert fused.fused_operators.get("SkipSimplifiedLayerNormalization", 0) >= 2 * layers - 1, fused.fused_operators
    assert plain.fused_operators == {}
    nodes = {name: len(onnx.load(tmp_path / name / "model.onnx").graph.node) for name in ("fused", "plain")}
    assert nodes["fused"] < 0.6 * nodes["plain"], nodes
    ids = torch.randint(5, model.config.vocab_size, (4, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": np.zeros_like(ids.numpy())}
    logits = [
        ort.InferenceSession(str(tmp_path / name / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[
            0
        ]
        for name in ("fused", "plain")
    ]
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-5)


def test_exported_classifier_answers_like_the_pipeline(tmp_path):
    tokenizer = train_tokenizer(iter(TEXTS), vocab_size=200, min_frequency=1, model_max_length=64)
    model = build(
        SoraForSequenceClassification,
        vocab_size=len(tokenizer),
        num_labels=3,
        id2label={0: "neg", 1: "neu", 2: "pos"},
        label2id={"neg": 0, "neu": 1, "pos": 2},
    )
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    assert main(["export", "onnx", str(tmp_path / "ckpt"), str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "tokenizer.json").is_file()

    reference = pipeline("text-classification", model=str(tmp_path / "ckpt"))
    onnx = OnnxSequenceClassifier(tmp_path / "onnx")
    texts = TEXTS[:4]
    for got, want in zip(onnx(texts), reference(texts), strict=True):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    single_got, single_want = onnx(texts[0]), reference(texts[0])
    assert len(single_got) == 1 and single_got[0]["label"] == single_want[0]["label"]
    ranked_got, ranked_want = onnx(texts[1], top_k=None), reference(texts[1], top_k=None)
    assert [r["label"] for r in ranked_got] == [r["label"] for r in ranked_want]
    assert [r["score"] for r in ranked_got] == pytest.approx([r["score"] for r in ranked_want], abs=1e-5)


def test_greedy_decoding_through_the_exported_step_equals_generate(tmp_path):
    model = build(SoraForCausalLM)
    info = export_onnx(model, tmp_path)
    assert info.kind == "decoder_step" and info.max_abs_diff < 1e-4
    assert info.inputs[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert info.outputs[1:3] == ["present.0.key", "present.0.value"]
    # a left-padded batch of two prompts of different lengths
    input_ids = torch.randint(7, 120, (2, 6), generator=torch.Generator().manual_seed(3))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :2] = 0
    input_ids[1, :2] = model.config.pad_token_id
    with torch.no_grad():
        expected = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=12
        )
    got = OnnxCausalLM(tmp_path).generate(input_ids.numpy(), attention_mask.numpy(), max_new_tokens=12)
    np.testing.assert_array_equal(got, expected.numpy())


def test_dynamo_exporter_matches_torch(tmp_path):
    model = build(SoraForSequenceClassification, num_labels=2)
    info = export_onnx(model, tmp_path, exporter="dynamo")
    assert info.exporter == "dynamo" and info.max_abs_diff < 1e-4
    checks = check_parity(model, tmp_path / "model.onnx", shapes=[(1, 5, 0), (4, 17, 0)])
    assert max(c["max_abs_diff"] for c in checks) < 1e-4


def test_what_cannot_be_exported_is_named(tmp_path, capsys):
    seq2seq = build(SoraForSeq2SeqLM)
    with pytest.raises(OnnxExportError, match="SoraForSeq2SeqLM.*SoraForSequenceClassification"):
        export_onnx(seq2seq, tmp_path / "s2s")
    seq2seq.save_pretrained(tmp_path / "s2s-ckpt")
    with pytest.raises(OnnxExportError, match=r"SoraForSeq2SeqLM \(from .*s2s-ckpt\)"):
        export_onnx(tmp_path / "s2s-ckpt", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    assert main(["export", "onnx", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "has no config.json: not a saved model folder" in capsys.readouterr().err
    with pytest.raises(OnnxExportError, match="exporter='onnx2'"):
        export_onnx(build(SoraForSequenceClassification), tmp_path / "x", exporter="onnx2")
    with pytest.raises(OnnxExportError, match="dynamo.*SoraForCausalLM"):
        export_onnx(build(SoraForCausalLM), tmp_path / "x", exporter="dynamo")
