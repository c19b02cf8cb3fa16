"""`sora_hf.auto.heads.HEADS` is the one table of Sora's model classes: every exported class has one row, every other
table about the heads agrees with it, and each row's Auto class loads a saved checkpoint of its head as that head."""

import ast
from pathlib import Path

import pytest
import torch
import transformers
from helpers import tiny_config_kwargs
from transformers.pipelines import PIPELINE_REGISTRY

import sora_hf
from sora_hf import SoraConfig, modeling_sora, modeling_sora_multitask
from sora_hf.auto import heads, registration
from sora_hf.auto.heads import HEADS
from sora_hf.hub import files as hub
from sora_hf.pipelines import AutoModelOrTextEncoder
from sora_hf.serving.tasks import infer_task
from sora_hf.training.lora import model as lora

# what sora_hf exports that is no model class with an Auto class: the config, the abstract base class, sora_hf's
# multi-task Auto class (the Auto class of the SoraForMultiTask row) and the registration function
# SoraDecoderModel: the bare decoder, which AutoModel (SoraModel) gives for a decoder config; no Auto class of its own
NOT_HEADS = {"SoraConfig", "SoraPreTrainedModel", "SoraDecoderModel", "AutoModelForMultiTask", "register"}
MULTITASK_TASKS = {"sentiment": {"type": "classification", "labels": ["neg", "pos"]}}


def test_every_exported_model_class_has_exactly_one_row():
    names = [row.name for row in HEADS]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(set(sora_hf.__all__) - NOT_HEADS)
    for row in HEADS:
        assert isinstance(getattr(sora_hf, row.name), type) and issubclass(
            getattr(sora_hf, row.name), sora_hf.SoraPreTrainedModel
        )
        assert heads.head(row.name) is row
    assert heads.head("BertModel") is None


def test_the_table_imports_neither_torch_nor_the_model():
    tree = ast.parse(Path(heads.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "dataclasses", "typing"}  # no relative import either (its module would be None)


def test_the_auto_classes_registered_are_the_table_s():
    expected = {}
    for row in HEADS:
        module = transformers if row.code_module == "modeling_sora" else modeling_sora_multitask
        expected[getattr(module, row.auto_class)] = getattr(sora_hf, row.name)
    assert {**registration.AUTO_CLASSES, **registration.SORA_AUTO_CLASSES} == expected
    for auto_class, model_class in expected.items():
        assert auto_class._model_mapping[SoraConfig] is model_class


def test_the_auto_maps_of_the_model_files_are_the_table_s():
    # the model files cannot import sora_hf (they travel as remote code), so they keep a copy: it must agree
    assert modeling_sora.SORA_AUTO_MAP == {"AutoConfig": "configuration_sora.SoraConfig", **heads.auto_map_entries()}
    assert modeling_sora_multitask.SORA_MULTITASK_AUTO_MAP == heads.auto_map_entries("modeling_sora_multitask")
    assert modeling_sora_multitask.SoraForMultiTask._auto_class == heads.head("SoraForMultiTask").auto_class


def test_the_lora_set_up_is_the_table_s():
    assert lora.HEAD_TASK_TYPES == {
        row.name: (row.peft_task_type, list(row.modules_to_save)) for row in HEADS if row.peft_task_type
    }
    assert set(lora.HEAD_TASK_TYPES) == {
        "SoraForSequenceClassification",
        "SoraForTokenClassification",
        "SoraForQuestionAnswering",
        "SoraForSeq2SeqLM",
        "SoraForCausalLM",
        "SoraForSentenceEmbedding",
        "SoraForMultipleChoice",
    }


def test_the_hub_tables_are_the_table_s():
    assert hub.PIPELINE_TAGS == {row.name: row.hub_pipeline_tag for row in HEADS}
    assert hub.CUSTOM_PIPELINES == {
        row.name: {p.task: (p.module, p.class_name, p.auto_class) for p in row.custom_pipelines}
        for row in HEADS
        if row.custom_pipelines
    }
    for pipelines in hub.CUSTOM_PIPELINES.values():
        for module, _, _ in pipelines.values():
            assert module in hub.PIPELINE_FILES


@pytest.mark.parametrize("row", HEADS, ids=lambda row: row.name)
def test_the_served_task_is_the_table_s(row):
    config = SoraConfig(architectures=[row.name])
    if row.pipeline_task is None:
        with pytest.raises(ValueError, match="no pipeline task is known"):
            infer_task(config)
    else:
        assert infer_task(config) == row.pipeline_task


def test_the_registered_pipelines_are_the_table_s():
    for row in HEADS:
        for p in row.custom_pipelines:
            entry = PIPELINE_REGISTRY.supported_tasks[p.task]
            assert entry["impl"].__name__ == p.class_name
            assert entry["impl"].__module__ == f"sora_hf.pipelines.{p.module}"
            local = AutoModelOrTextEncoder if p.auto_class == "AutoModelForTextEncoding" else None
            assert tuple(entry["pt"]) == (local or getattr(transformers, p.auto_class),)


def _tiny_model(name):
    extra = {}
    if "Classification" in name or "Choice" in name:
        extra["num_labels"] = 3
    if name == "SoraForMultiTask":
        extra["tasks"] = MULTITASK_TASKS
    torch.manual_seed(0)
    return getattr(sora_hf, name)(SoraConfig(**tiny_config_kwargs(**extra)))


@pytest.mark.parametrize("row", HEADS, ids=lambda row: row.name)
def test_each_row_s_auto_class_loads_a_saved_checkpoint_of_its_head(row, tmp_path):
    _tiny_model(row.name).save_pretrained(tmp_path)
    module = transformers if row.code_module == "modeling_sora" else modeling_sora_multitask
    loaded = getattr(module, row.auto_class).from_pretrained(tmp_path)
    assert type(loaded) is getattr(sora_hf, row.name)


def test_the_onnx_export_table_is_the_table_s():
    from sora_hf.deploy.onnx_export import SUPPORTED_HEADS

    assert {name: (spec.outputs, spec.kind, spec.task, spec.per_token) for name, spec in SUPPORTED_HEADS.items()} == {
        row.name: (row.onnx_outputs, row.onnx_graph, row.pipeline_task, row.onnx_per_token)
        for row in HEADS
        if row.onnx_outputs
    }


@pytest.mark.parametrize("row", [row for row in HEADS if row.onnx_outputs], ids=lambda row: row.name)
def test_each_exportable_row_names_outputs_its_head_returns(row):
    """The ONNX graph's outputs are the head's own, with a sequence axis exactly where the row says."""
    model = _tiny_model(row.name).eval()
    input_ids = torch.randint(7, 100, (2, 5))
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    for name in row.onnx_outputs:
        value = out[name]
        has_sequence_axis = value.dim() >= 2 and value.shape[1] == 5
        assert has_sequence_axis == (row.onnx_per_token or row.onnx_graph == "decoder_step"), name
