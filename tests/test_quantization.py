"""int8 quantization (`sora_hf.deploy.quantization`): torch dynamic and onnxruntime int8 stay close to fp32, the
int8 graph is smaller, and `run_quantization`'s report scores the real sentiment task as the torch model does."""

import json

import numpy as np
import pytest
import torch
from helpers import classifier, logits_of, random_batch

from sora_hf.deploy import OnnxModel, export_onnx
from sora_hf.deploy.evaluation import accuracy, classification_data, torch_logits
from sora_hf.deploy.quantization import quantize_onnx, quantize_torch_dynamic, run_quantization


def test_torch_dynamic_int8_stays_close_to_fp32():
    model = classifier(initializer_range=0.05)  # trained-like weight scale; 0.2 magnifies rounding on purpose
    quantized = quantize_torch_dynamic(model)
    input_ids, attention_mask = random_batch(3, 10, pad_rows={1: 4})
    fp32, int8 = logits_of(model, input_ids, attention_mask), logits_of(quantized, input_ids, attention_mask)
    assert isinstance(quantized.model.layers[0].mlp.up_proj, torch.ao.nn.quantized.dynamic.Linear)
    assert not torch.equal(fp32, int8)
    torch.testing.assert_close(int8, fp32, atol=0.1 * fp32.abs().max().item(), rtol=0)


def test_onnx_int8_graph_is_smaller_and_close(tmp_path):
    model = classifier(hidden_size=64, intermediate_size=256, initializer_range=0.05)
    export_onnx(model, tmp_path / "fp32")
    quantize_onnx(tmp_path / "fp32" / "model.onnx", tmp_path / "int8" / "model.onnx")
    for name in ("config.json", "export_info.json"):
        (tmp_path / "int8" / name).write_bytes((tmp_path / "fp32" / name).read_bytes())
    fp32_size = (tmp_path / "fp32" / "model.onnx").stat().st_size
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < 0.5 * fp32_size
    input_ids, attention_mask = random_batch(3, 10, pad_rows={1: 4})
    fp32 = OnnxModel(tmp_path / "fp32").run(input_ids=input_ids, attention_mask=attention_mask)["logits"]
    int8 = OnnxModel(tmp_path / "int8").run(input_ids=input_ids, attention_mask=attention_mask)["logits"]
    assert not np.array_equal(fp32, int8)
    np.testing.assert_allclose(int8, fp32, atol=0.1 * np.abs(fp32).max())


def test_quantize_report_scores_the_task(sentiment_checkpoint, tmp_path):
    folder, model, tokenizer = sentiment_checkpoint
    report = run_quantization(folder, tmp_path, task="sentiment", max_examples=48, max_length=64, repeats=3)
    assert json.loads((tmp_path / "quantization_report.json").read_text()) == report
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "tokenizer.json").is_file()
    data = classification_data("sentiment", model.config, "test", 48)
    # the fp32 graph's accuracy is the torch model's (parity), computed here independently
    assert report["accuracy"]["fp32"] == accuracy(
        torch_logits(model, tokenizer, data.texts, max_length=64), data.labels
    )
    assert report["accuracy"]["change"] == pytest.approx(report["accuracy"]["int8"] - report["accuracy"]["fp32"])
    assert report["size_mb"]["int8"] < report["size_mb"]["fp32"]
    assert set(report["latency_ms"]) == {"batch_1", "batch_32"}
