"""README's per-task example block runs as printed: each line gets `path`, a saved tiny model of the head that its
task needs, and must give the kind of result the README promises."""

import re
from pathlib import Path

import pytest
import torch
from helpers import tiny_config_kwargs

from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
)
from sora_hf.tokenizer import train_tokenizer

README = Path(__file__).resolve().parents[1] / "README.md"
TEXTS = ["中华人民共和国的首都是北京。", "质量不错，推荐购买！", "江泽民在北京发表讲话。", "会议在上海举行。"] * 30
# task of a README line -> the head its `path` holds, and config overrides
HEADS = {
    "fill-mask": (SoraForMaskedLM, {}),
    "text-classification": (SoraForSequenceClassification, {"id2label": {0: "negative", 1: "positive"}}),
    "token-classification": (
        SoraForTokenClassification,
        {"id2label": dict(enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]))},
    ),
    "question-answering": (SoraForQuestionAnswering, {}),
    "text-generation": (SoraForCausalLM, {"tie_word_embeddings": False}),
    "summarization": (SoraForSeq2SeqLM, {}),
    "sentence-similarity": (SoraForSentenceEmbedding, {}),
    "feature-extraction": (SoraForSentenceEmbedding, {}),
    "SentenceTransformer": (SoraForSentenceEmbedding, {}),
}


def example_lines() -> list[str]:
    """The statements of the code block after "A short example per task", one per line."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index("A short example per task") :]
    block = block[block.index("```python") + len("```python") : block.index("```", block.index("```python") + 9)]
    return [line.split("  #")[0].rstrip() for line in block.strip().splitlines() if line.strip()]


def task_of(line: str) -> str | None:
    if line.startswith("SentenceTransformer("):
        return "SentenceTransformer"
    match = re.match(r'pipeline\("([a-z-]+)"', line)
    return match.group(1) if match else None


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    encoder = train_tokenizer(iter(TEXTS), vocab_size=200, min_frequency=1, model_max_length=64)
    decoder = train_tokenizer(iter(TEXTS), vocab_size=200, min_frequency=1, model_max_length=64, template="decoder")
    made = {}
    for task, (model_class, overrides) in HEADS.items():
        tokenizer = decoder if model_class is SoraForCausalLM else encoder
        torch.manual_seed(0)
        model = model_class(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), **overrides)))
        folder = tmp_path_factory.mktemp(task)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        made[task] = folder
    return made


def test_the_readme_lists_an_example_for_every_pipeline_task():
    tasks = {task_of(line) for line in example_lines()} - {None}
    assert tasks == set(HEADS), tasks ^ set(HEADS)


@pytest.mark.parametrize("line", [line for line in example_lines() if task_of(line)], ids=task_of)
def test_readme_example_runs_as_printed(line, folders):
    namespace: dict = {}
    exec("import sora_hf\nfrom transformers import pipeline", namespace)  # the block's own first lines
    if task_of(line) == "SentenceTransformer":
        namespace["SentenceTransformer"] = pytest.importorskip("sentence_transformers").SentenceTransformer
    namespace["path"] = str(folders[task_of(line)])
    result = eval(line, namespace)
    if task_of(line) == "text-classification":
        assert result[0]["label"] in {"negative", "positive"}
    elif task_of(line) in ("feature-extraction", "SentenceTransformer"):
        # an embedding folder: one vector per input, the head's width (32 in the tiny config)
        assert torch.as_tensor(result).shape[-1] == 32 and torch.as_tensor(result).dim() == 2
    elif task_of(line) == "sentence-similarity":
        assert len(result) == 2 and all(-1.0 <= score <= 1.0 for score in result)
    else:
        assert result  # each task's own tests check its values; here the printed call must work


def test_the_readme_lists_every_data_key_with_its_default():
    """The own-data table is the schema's: every key of FinetuneDataSection, with its default as YAML writes it."""
    import dataclasses

    import yaml

    from sora_hf.recipes import FINETUNE_LEARNING_RATE, FINETUNE_TRAINING, FinetuneDataSection

    text = README.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, flags=re.M))
    for field in dataclasses.fields(FinetuneDataSection):
        assert field.name in rows, field.name
        assert yaml.safe_load(rows[field.name]) == field.default, field.name
    for name in ("my-classification", "my-token-classification", "my-question-answering", "my-seq2seq",
                 "my-similarity", "my-causal-lm"):  # fmt: skip
        assert f"{name}.yaml" in text
    stated = {"per_device_train_batch_size": 32, "per_device_eval_batch_size": 64, "weight_decay": 0.01,
              "warmup_steps": 0.06, "num_train_epochs": 3, "logging_steps": 25}  # fmt: skip
    assert {key: FINETUNE_TRAINING[key] for key in stated} == stated
    rates = re.search(r"`FINETUNE_LEARNING_RATE`: ([0-9.e-]+) for `full`, ([0-9.e-]+) for `lora`", text)
    assert rates and (float(rates[1]), float(rates[2])) == (
        FINETUNE_LEARNING_RATE["full"],
        FINETUNE_LEARNING_RATE["lora"],
    )
