"""A saved Sora checkpoint is self-contained: it loads with `trust_remote_code=True` in a process where sora_hf cannot
be imported (a user who has only transformers), through any head's Auto class, and reproduces the outputs. The code
files that travel import nothing of sora_hf but each other; the multi-task model travels as a file of its own."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from helpers import random_batch, tiny_config_kwargs

import sora_hf
from sora_hf import (
    SoraConfig,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForMultipleChoice,
    SoraForMultiTask,
    SoraForPreTraining,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
)

# (model class, Auto class name to load it with, output to compare)
CASES = {
    "base": (SoraModel, "AutoModel", "last_hidden_state"),
    "masked_lm": (SoraForMaskedLM, "AutoModelForMaskedLM", "logits"),
    "pretraining": (SoraForPreTraining, "AutoModelForPreTraining", "logits"),
    "causal_lm": (SoraForCausalLM, "AutoModelForCausalLM", "logits"),
    "seq2seq": (SoraForSeq2SeqLM, "AutoModelForSeq2SeqLM", "logits"),
    "sequence_classification": (SoraForSequenceClassification, "AutoModelForSequenceClassification", "logits"),
    "token_classification": (SoraForTokenClassification, "AutoModelForTokenClassification", "logits"),
    "question_answering": (SoraForQuestionAnswering, "AutoModelForQuestionAnswering", "start_logits"),
    "multiple_choice": (SoraForMultipleChoice, "AutoModelForMultipleChoice", "logits"),
    "sentence_embedding": (SoraForSentenceEmbedding, "AutoModelForTextEncoding", "embeddings"),
    # transformers has no multi-task Auto class: the child loads the class its auto_map names
    "multitask": (SoraForMultiTask, "AutoModelForMultiTask", "logits"),
}
MULTITASK_TASKS = {
    "sentiment": {"type": "classification", "labels": ["neg", "pos"]},
    "ner": {"type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
}

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["sora_hf"] = None  # any `import sora_hf` now raises ImportError
    try:
        import sora_hf  # noqa: F401
        raise SystemExit("sora_hf is importable in the child: the test would prove nothing")
    except ImportError:
        pass
    import torch, transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    cases = json.load(open(sys.argv[1]))
    for name, case in cases.items():
        inputs = torch.load(case["inputs"])
        if hasattr(transformers, case["auto"]):
            model = getattr(transformers, case["auto"]).from_pretrained(case["dir"], trust_remote_code=True).eval()
        else:
            auto_map = json.load(open(case["dir"] + "/config.json"))["auto_map"]
            model = get_class_from_dynamic_module(auto_map[case["auto"]], case["dir"]).from_pretrained(case["dir"])
            model.eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            got = model(**inputs)[case["key"]]
        expected = torch.load(case["expected"])
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6, msg=name)
        if name == "masked_lm":  # the same checkpoint also loads as the bare model and as a classifier
            base = transformers.AutoModel.from_pretrained(case["dir"], trust_remote_code=True)
            clf = transformers.AutoModelForSequenceClassification.from_pretrained(
                case["dir"], trust_remote_code=True, num_labels=2
            )
            assert type(base).__name__ == "SoraModel" and type(clf).__name__ == "SoraForSequenceClassification"
        if name == "causal_lm":
            gen = model.generate(inputs["input_ids"][:1, :4], max_new_tokens=6, do_sample=False, eos_token_id=None)
            torch.testing.assert_close(gen, torch.load(case["generated"]))
        print("ok", name)
    """
)


def test_every_head_loads_as_remote_code_without_sora_hf(tmp_path):
    ids, mask = random_batch(2, 9, pad_rows={1: 3})
    cases = {}
    for name, (model_class, auto_name, key) in CASES.items():
        torch.manual_seed(0)
        extra = {"tasks": MULTITASK_TASKS} if name == "multitask" else {}
        config = SoraConfig(**tiny_config_kwargs(num_labels=3, tie_word_embeddings=name != "causal_lm", **extra))
        model = model_class(config).eval()
        inputs = dict(input_ids=ids, attention_mask=mask)
        if name == "multiple_choice":
            inputs = dict(input_ids=ids.unsqueeze(0), attention_mask=mask.unsqueeze(0))
        if name == "multitask":
            inputs["task"] = "ner"
        folder = tmp_path / name
        model.save_pretrained(folder)
        for code in ("modeling_sora.py", "configuration_sora.py", "crf.py", "sentence_transformers_folder.py"):
            assert (folder / code).exists(), code
        # the multi-task file travels with the multi-task model only
        assert (folder / "modeling_sora_multitask.py").exists() == (name == "multitask")
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        if name == "multitask":
            assert len(auto_map) == 12 and auto_map[auto_name] == "modeling_sora_multitask.SoraForMultiTask"
        else:
            assert len(auto_map) == 11 and auto_map[auto_name].startswith("modeling_sora.")
        with torch.no_grad():
            expected = model(**inputs)[key]
        torch.save(inputs, folder / "inputs.pt")
        torch.save(expected, folder / "expected.pt")
        case = dict(dir=str(folder), auto=auto_name, key=key, inputs=str(folder / "inputs.pt"))
        case["expected"] = str(folder / "expected.pt")
        if name == "causal_lm":
            gen = model.generate(ids[:1, :4], max_new_tokens=6, do_sample=False, eos_token_id=None)
            torch.save(gen, folder / "generated.pt")
            case["generated"] = str(folder / "generated.pt")
        cases[name] = case
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "cases.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(CASES)


def _imports(path) -> set[str]:
    """Every module a file imports, at top level or inside functions (relative ones with their dots)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_the_code_files_that_travel_import_only_torch_transformers_and_each_other():
    package = Path(sora_hf.__file__).parent
    allowed = {
        "configuration_sora.py": set(),
        "crf.py": {".configuration_sora"},
        "sentence_transformers_folder.py": set(),
        "modeling_sora.py": {".configuration_sora", ".crf", ".sentence_transformers_folder"},
        "modeling_sora_multitask.py": {".configuration_sora", ".modeling_sora"},
    }
    stdlib = {
        "copy",
        "functools",
        "inspect",
        "json",
        "os",
        "typing",
        "collections",
        "collections.abc",
        "dataclasses",
        "warnings",
    }
    for name, relative in allowed.items():
        imports = _imports(package / name)
        assert {i for i in imports if i.startswith(".")} == relative, name
        outside = {i.split(".")[0] for i in imports if not i.startswith(".")} - {"torch", "transformers"}
        assert outside <= stdlib | {"huggingface_hub"}, (name, outside)


def test_registration_and_pipelines_do_not_import_each_other_back():
    """registration imports the pipelines to register them; the pipelines take the multi-task Auto class from the
    model file, so the two packages no longer form an import cycle."""
    pipelines = Path(sora_hf.__file__).parent / "pipelines"
    for path in pipelines.glob("*.py"):
        assert not [i for i in _imports(path) if i.lstrip(".").startswith("registration")], path.name
    assert sora_hf.AutoModelForMultiTask.__module__ == "sora_hf.modeling_sora_multitask"
    assert sora_hf.SoraForMultiTask.__module__ == "sora_hf.modeling_sora_multitask"
