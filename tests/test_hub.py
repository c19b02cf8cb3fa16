"""`sora_hf.hub.push` / `sora-hf push` against a loopback Hub API server (tests/hub_server.py): the huggingface_hub,
transformers and peft client code is the real one, only the server is small. Loading back happens in fresh
interpreters (HF_HOME empty, HF_ENDPOINT set, online), with and without sora_hf importable."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers
from helpers import tiny_config_kwargs
from hub_server import TOKEN, HubServer

from sora_hf import (
    SoraConfig,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSeq2SeqLM,
    SoraForSequenceClassification,
)
from sora_hf.cli import main as cli_main
from sora_hf.hub import CUSTOM_PIPELINES, HubPushError, push
from sora_hf.modeling_sora import SORA_AUTO_MAP
from sora_hf.tokenizer import train_tokenizer
from sora_hf.training.lora import apply_lora

TEXTS = ["今天天气很好", "this movie is great", "我不喜欢这个电影", "a bad day", "hello world 你好世界"] * 4


def folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


def _save_classifier(folder: Path, tokenizer, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), num_labels=3, pad_token_id=0))
    model = SoraForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two classifier checkpoints (v1, v2) and a LoRA adapter on v1, each with the logits they must reproduce."""
    root = tmp_path_factory.mktemp("hub")
    tokenizer = train_tokenizer(TEXTS, vocab_size=60, min_frequency=1, model_max_length=64)
    batch = tokenizer(["今天天气很好", "this movie is bad 你好"], padding=True, return_tensors="pt")
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    torch.save(inputs, root / "inputs.pt")
    out = {"root": root, "inputs": inputs}
    for name, seed in (("v1", 0), ("v2", 1)):
        model = _save_classifier(root / name, tokenizer, seed)
        with torch.no_grad():
            out[name] = model(**inputs).logits
        torch.save(out[name], root / f"{name}.pt")
    model = SoraForSequenceClassification.from_pretrained(root / "v1").eval()
    peft_model = apply_lora(model)
    torch.manual_seed(2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.3)
    peft_model.eval()
    with torch.no_grad():
        out["adapter"] = peft_model(**inputs).logits
    torch.save(out["adapter"], root / "adapter.pt")
    peft_model.save_pretrained(root / "adapter")
    tokenizer.save_pretrained(root / "adapter")
    assert not torch.allclose(out["adapter"], out["v1"])
    return out


CHILD = textwrap.dedent(
    """
    import json, sys
    mode, cases_path = sys.argv[1], sys.argv[2]
    if mode == "remote_code":
        sys.modules["sora_hf"] = None  # any `import sora_hf` now raises ImportError
        try:
            import sora_hf  # noqa: F401
            raise SystemExit("sora_hf is importable in the child: the test would prove nothing")
        except ImportError:
            pass
        kwargs = {"trust_remote_code": True}
    else:
        import sora_hf  # noqa: F401
        kwargs = {}
    import torch, transformers, huggingface_hub
    torch.set_num_threads(1)
    cases = json.load(open(cases_path))
    inputs = torch.load(cases["inputs"])
    for case in cases["models"]:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            case["repo"], revision=case.get("revision"), **kwargs
        ).eval()
        module = type(model).__module__
        assert module.startswith("transformers_modules" if kwargs else "sora_hf"), module
        with torch.no_grad():
            got = model(**inputs).logits
        torch.testing.assert_close(got, torch.load(case["expected"]), rtol=1e-6, atol=1e-6, msg=str(case))
        print("ok model", case["repo"], case.get("revision"), flush=True)
    tok = transformers.AutoTokenizer.from_pretrained(cases["models"][0]["repo"])
    assert tok(["今天天气很好"])["input_ids"][0] == inputs["input_ids"][0][: len(tok(["今天天气很好"])["input_ids"][0])].tolist()
    print("ok tokenizer", flush=True)
    if mode == "remote_code":
        from peft import AutoPeftModelForSequenceClassification

        model = AutoPeftModelForSequenceClassification.from_pretrained(cases["adapter"]["repo"], **kwargs).eval()
        with torch.no_grad():
            got = model(**inputs).logits
        torch.testing.assert_close(got, torch.load(cases["adapter"]["expected"]), rtol=1e-6, atol=1e-6)
        print("ok adapter", flush=True)
        cards = {}
        for repo in (cases["models"][0]["repo"], cases["adapter"]["repo"]):
            cards[repo] = huggingface_hub.ModelCard.load(repo).data.to_dict()
        print("CARDS " + json.dumps(cards), flush=True)
    """
)


def _run_child(tmp_path: Path, hub: HubServer, mode: str, cases: dict, script: str = CHILD) -> str:
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "child.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    home = tmp_path / f"hf-home-{mode}"
    env.update(HF_HOME=str(home), HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_TELEMETRY="1")
    env.update(
        OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH="" if mode == "remote_code" else os.getcwd()
    )
    result = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), mode, str(tmp_path / "cases.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    return result.stdout


def test_push_model_and_adapter_then_load_back_without_sora_hf(online, checkpoints, tmp_path):
    root = checkpoints["root"]
    before = {name: folder_hash(root / name) for name in ("v1", "v2", "adapter")}

    first = push(root / "v1", "tester/sora-clf", private=True)
    assert first.kind == "model" and first.revision == "main"
    repo = online.repos["tester/sora-clf"]
    assert repo.private
    files = repo.commits[first.commit_sha].files
    for name in ("model.safetensors", "config.json", "modeling_sora.py", "configuration_sora.py"):
        assert name in files
    for name in ("tokenizer.json", "tokenizer_config.json", "README.md"):
        assert name in files
    assert json.loads(files["config.json"])["auto_map"] == SORA_AUTO_MAP
    commit = repo.commits[first.commit_sha]
    for word in ("SoraForSequenceClassification", "weights", "config", "code", "tokenizer", "model card"):
        assert word in commit.summary, commit.summary
    assert "model.safetensors" in commit.description and "auto_map" in commit.description

    second = push(root / "v2", "tester/sora-clf")  # same repo: main moves, the first commit stays reachable
    assert second.commit_sha != first.commit_sha and repo.branches["main"] == second.commit_sha
    dev = push(root / "v1", "tester/sora-clf", revision="dev", commit_message="v1 on dev")
    assert repo.branches["dev"] == dev.commit_sha and repo.commits[dev.commit_sha].summary == "v1 on dev"
    assert repo.branches["main"] == second.commit_sha

    adapter = push(root / "adapter", "tester/sora-clf-lora", base_model="tester/sora-clf", revision=None)
    assert adapter.kind == "adapter"
    adapter_files = online.repos["tester/sora-clf-lora"].commits[adapter.commit_sha].files
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= set(adapter_files)
    assert "config.json" not in adapter_files
    assert json.loads(adapter_files["adapter_config.json"])["base_model_name_or_path"] == "tester/sora-clf"
    # a local base path in the folder's own adapter_config.json is not rewritten on disk
    assert json.loads((root / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] != (
        "tester/sora-clf"
    )

    assert {name: folder_hash(root / name) for name in ("v1", "v2", "adapter")} == before

    # the adapter was trained on v1: its base must be v1 when it is loaded, so point main back at v1's commit
    online.repos["tester/sora-clf"].branches["main"] = first.commit_sha
    cases = {
        "inputs": str(root / "inputs.pt"),
        "models": [
            {"repo": "tester/sora-clf", "revision": None, "expected": str(root / "v1.pt")},
            {"repo": "tester/sora-clf", "revision": second.commit_sha, "expected": str(root / "v2.pt")},
            {"repo": "tester/sora-clf", "revision": first.commit_sha, "expected": str(root / "v1.pt")},
            {"repo": "tester/sora-clf", "revision": "dev", "expected": str(root / "v1.pt")},
        ],
        "adapter": {"repo": "tester/sora-clf-lora", "expected": str(root / "adapter.pt")},
    }
    out = _run_child(tmp_path, online, "remote_code", cases)
    assert out.count("ok model") == 4 and "ok adapter" in out and "ok tokenizer" in out
    cards = json.loads(out.split("CARDS ", 1)[1].splitlines()[0])
    model_card, adapter_card = cards["tester/sora-clf"], cards["tester/sora-clf-lora"]
    assert model_card["library_name"] == "transformers" and model_card["pipeline_tag"] == "text-classification"
    assert "sora" in model_card["tags"]
    assert adapter_card["base_model"] == "tester/sora-clf" and adapter_card["library_name"] == "peft"

    cases["models"] = cases["models"][:2]
    out = _run_child(tmp_path, online, "with_sora_hf", cases)
    assert out.count("ok model") == 2


def test_cli_push_to_a_private_branch(online, checkpoints, capsys):
    rc = cli_main(["push", str(checkpoints["root"] / "v1"), "tester/cli-repo", "--private", "--revision", "exp/1"])
    assert rc == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    repo = online.repos["tester/cli-repo"]
    assert repo.private and repo.branches["exp/1"] == printed["commit"]
    assert "config.json" not in repo.commits[repo.branches["main"]].files  # main untouched
    assert "model.safetensors" in repo.commits[printed["commit"]].files


def test_no_token_names_hf_token_and_login(online, checkpoints, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    n_requests = len(online.log)
    with pytest.raises(HubPushError, match="HF_TOKEN") as error:
        push(checkpoints["root"] / "v1", "tester/no-token")
    assert "hf auth login" in str(error.value)
    assert cli_main(["push", str(checkpoints["root"] / "v1"), "tester/no-token"]) == 1
    assert "HF_TOKEN" in capsys.readouterr().err
    assert len(online.log) == n_requests and "tester/no-token" not in online.repos


def test_refuses_a_repo_holding_another_model_type(online, checkpoints):
    push(checkpoints["root"] / "v1", "tester/bert-repo")
    repo = online.repos["tester/bert-repo"]
    online.new_commit(repo, "main", {"config.json": b'{"model_type": "bert"}'}, "a bert", "")
    head = repo.branches["main"]
    with pytest.raises(ValueError, match="'bert'") as error:
        push(checkpoints["root"] / "v2", "tester/bert-repo")
    assert "'sora'" in str(error.value)
    assert repo.branches["main"] == head


def test_missing_tokenizer_or_config_is_named(online, checkpoints, tmp_path, capsys):
    n_requests = len(online.log)
    for missing in ("tokenizer.json", "config.json", "model.safetensors"):
        folder = tmp_path / missing
        shutil.copytree(checkpoints["root"] / "v1", folder)
        (folder / missing).unlink()
        with pytest.raises(FileNotFoundError, match=missing.replace(".", r"\.")):
            push(folder, "tester/broken")
    assert cli_main(["push", str(folder), "tester/broken"]) == 2
    assert "model.safetensors" in capsys.readouterr().err
    assert len(online.log) == n_requests


def test_server_error_mid_push_then_retry(online, checkpoints):
    folder = checkpoints["root"] / "v2"
    before = folder_hash(folder)
    push(checkpoints["root"] / "v1", "tester/flaky")
    repo = online.repos["tester/flaky"]
    head = repo.branches["main"]
    online.fail("POST", "/commit/", status=500)
    with pytest.raises(HubPushError, match="500") as error:
        push(folder, "tester/flaky")
    assert "again" in str(error.value) and "tester/flaky" in str(error.value)
    assert repo.branches["main"] == head  # nothing committed
    result = push(folder, "tester/flaky")
    assert repo.branches["main"] == result.commit_sha != head
    assert folder_hash(folder) == before


def test_adapter_with_a_local_base_needs_base_model(online, checkpoints):
    with pytest.raises(ValueError, match="base_model"):
        push(checkpoints["root"] / "adapter", "tester/lora-no-base")
    assert "tester/lora-no-base" not in online.repos
    push(checkpoints["root"] / "v1", "tester/full")
    with pytest.raises(ValueError, match="full 'sora' model"):
        push(checkpoints["root"] / "adapter", "tester/full", base_model="tester/sora-clf")


PIPELINE_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["sora_hf"] = None  # any `import sora_hf` now raises ImportError
    try:
        import sora_hf  # noqa: F401
        raise SystemExit("sora_hf is importable in the child: the test would prove nothing")
    except ImportError:
        pass
    import torch, transformers
    torch.set_num_threads(1)
    cases = json.load(open(sys.argv[2]))
    qa = transformers.pipeline("question-answering", model=cases["qa"]["repo"], trust_remote_code=True)
    assert type(qa).__module__.startswith("transformers_modules"), type(qa).__module__
    assert type(qa.model).__name__ == "SoraForQuestionAnswering", type(qa.model)
    result = qa(question=cases["qa"]["question"], context=cases["qa"]["context"])
    print("QA " + json.dumps(result), flush=True)
    sim = transformers.pipeline("sentence-similarity", model=cases["sim"]["repo"], trust_remote_code=True)
    assert type(sim).__module__.startswith("transformers_modules"), type(sim).__module__
    assert type(sim.model).__name__ == "SoraForSentenceEmbedding", type(sim.model)
    scores = sim({"source_sentence": cases["sim"]["source"], "sentences": cases["sim"]["sentences"]})
    print("SIM " + json.dumps(scores), flush=True)
    summarize = transformers.pipeline("summarization", model=cases["s2s"]["repo"], trust_remote_code=True)
    assert type(summarize).__module__.startswith("transformers_modules"), type(summarize).__module__
    summary = summarize(cases["s2s"]["text"], max_new_tokens=6, do_sample=False)
    print("S2S " + json.dumps(summary, ensure_ascii=False), flush=True)
    classify = transformers.pipeline("text-classification", model=cases["clf"]["repo"], trust_remote_code=True)
    assert type(classify.model).__name__ == "SoraForSequenceClassification", type(classify.model)
    print("CLF " + json.dumps(classify(cases["clf"]["text"], top_k=None), ensure_ascii=False), flush=True)
    """
)


def test_push_custom_pipelines_then_run_them_without_sora_hf(online, tmp_path):
    """Heads of tasks transformers 5.23 has no pipeline for carry sora_hf's pipeline code as remote code."""
    import transformers

    tokenizer = train_tokenizer(TEXTS, vocab_size=60, min_frequency=1, model_max_length=64)
    config_kwargs = tiny_config_kwargs(vocab_size=len(tokenizer), pad_token_id=0)
    folders, expected = {}, {}
    heads = {
        "qa": (SoraForQuestionAnswering, "question-answering"),
        "sim": (SoraForSentenceEmbedding, "sentence-similarity"),
        "s2s": (SoraForSeq2SeqLM, "summarization"),
        "clf": (SoraForSequenceClassification, "text-classification"),
    }
    for name, (model_class, task) in heads.items():
        torch.manual_seed(3)
        kwargs = dict(config_kwargs, tie_word_embeddings=False) if name == "s2s" else config_kwargs
        model = model_class(SoraConfig(**kwargs)).eval()
        folders[name] = tmp_path / name
        model.save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
        expected[name] = transformers.pipeline(task, model=model, tokenizer=tokenizer)  # sora_hf's, registered
    before = {name: folder_hash(folder) for name, folder in folders.items()}

    results = {name: push(folders[name], f"tester/sora-{name}-pipeline") for name in folders}
    for name, task, module in (
        ("qa", "question-answering", "question_answering"),
        ("sim", "sentence-similarity", "sentence_similarity"),
    ):
        result = results[name]
        files = online.repos[result.repo_id].commits[result.commit_sha].files
        assert {f"{module}.py", "_utils.py", "modeling_sora.py"} <= set(files)
        assert "text2text.py" not in files
        config = json.loads(files["config.json"])
        assert list(config["custom_pipelines"]) == [task]
        assert config["custom_pipelines"][task]["impl"].startswith(f"{module}.Sora")
        assert config["custom_pipelines"][task]["pt"][0] in config["auto_map"]
        assert "custom_pipelines" not in json.loads((folders[name] / "config.json").read_text())
    assert {name: folder_hash(folder) for name, folder in folders.items()} == before
    assert set(CUSTOM_PIPELINES["SoraForSeq2SeqLM"]) == {"summarization", "translation", "text2text-generation"}
    s2s_files = online.repos[results["s2s"].repo_id].commits[results["s2s"].commit_sha].files
    assert "text2text.py" in s2s_files
    assert set(json.loads(s2s_files["config.json"])["custom_pipelines"]) == set(CUSTOM_PIPELINES["SoraForSeq2SeqLM"])
    clf_files = online.repos[results["clf"].repo_id].commits[results["clf"].commit_sha].files
    assert "custom_pipelines" not in json.loads(clf_files["config.json"])  # transformers' own pipeline serves it

    question, context = "天气怎么样？", "今天天气很好 hello world 你好世界"
    source, other = "今天天气很好", "a bad day"
    cases = {
        "qa": {"repo": results["qa"].repo_id, "question": question, "context": context},
        "sim": {"repo": results["sim"].repo_id, "source": source, "sentences": [source, other]},
        "s2s": {"repo": results["s2s"].repo_id, "text": context},
        "clf": {"repo": results["clf"].repo_id, "text": context},
    }
    out = _run_child(tmp_path, online, "remote_code", cases, script=PIPELINE_CHILD)
    answer = json.loads(out.split("QA ", 1)[1].splitlines()[0])
    assert answer["answer"] == context[answer["start"] : answer["end"]] and answer["answer"]
    local = expected["qa"](question=question, context=context)
    assert (answer["start"], answer["end"]) == (local["start"], local["end"])
    assert answer["score"] == pytest.approx(local["score"], abs=1e-5)
    scores = json.loads(out.split("SIM ", 1)[1].splitlines()[0])
    assert len(scores) == 2 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores == pytest.approx(
        expected["sim"]({"source_sentence": source, "sentences": [source, other]}), abs=1e-5
    )
    summary = json.loads(out.split("S2S ", 1)[1].splitlines()[0])
    assert summary == expected["s2s"](context, max_new_tokens=6, do_sample=False)
    labels = json.loads(out.split("CLF ", 1)[1].splitlines()[0])
    local_labels = expected["clf"](context, top_k=None)
    assert [x["label"] for x in labels] == [x["label"] for x in local_labels]
    assert [x["score"] for x in labels] == pytest.approx([x["score"] for x in local_labels], abs=1e-5)


def test_pushed_embedding_model_carries_its_sentence_transformers_files(online, checkpoints, tmp_path):
    """Without modules.json on the Hub, SentenceTransformer(repo) falls back to mean pooling and drops the head."""
    from sora_hf import SoraForSentenceEmbedding

    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoints["root"] / "v1")
    SoraForSentenceEmbedding(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer)))).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    result = push(tmp_path, "tester/sora-embedding")
    files = online.repos["tester/sora-embedding"].commits[result.commit_sha].files
    assert json.loads(files["modules.json"])[0]["type"].endswith("SoraSentenceEmbeddingModule")


CONVERTED_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["sora_hf"] = None  # the pushed code alone must load it
    import torch, transformers
    cases = json.load(open(sys.argv[2]))
    for case in cases:
        auto = getattr(transformers, case["auto"])
        model = auto.from_pretrained(case["repo"], trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        inputs = torch.load(case["inputs"])
        with torch.no_grad():
            got = getattr(model(**inputs), case["key"])
        real = inputs["attention_mask"].bool()  # an encoder's outputs at the pads are zeros, not RoBERTa's
        torch.testing.assert_close(got[real], torch.load(case["expected"])[real], rtol=0, atol=1e-5, msg=case["repo"])
        print("ok", case["repo"], flush=True)
    """
)


def test_converted_checkpoints_push_and_load_back_as_remote_code(online, tmp_path):
    """A Qwen3 decoder (qk_norm, sliding layers) and a RoBERTa encoder converted into Sora, pushed, then loaded from
    the Hub in a process without sora_hf: the outputs are the source models'."""
    from transformers import Qwen3Config, Qwen3ForCausalLM, RobertaConfig, RobertaForMaskedLM

    from sora_hf.conversion import convert

    size = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    sources = {
        "qwen3": (
            Qwen3ForCausalLM(Qwen3Config(**size, num_key_value_heads=2, head_dim=16, use_sliding_window=True,
                                         sliding_window=3, max_window_layers=1)),
            "AutoModelForCausalLM", "logits",
        ),
        "roberta": (RobertaForMaskedLM(RobertaConfig(**size, pad_token_id=1)), "AutoModelForMaskedLM", "logits"),
    }  # fmt: skip
    inputs = {
        "input_ids": torch.tensor([[5, 7, 9, 11, 13, 15, 17], [5, 8, 10, 12, 1, 1, 1]])
    }  # padded with id 1, RoBERTa's padding_idx
    inputs["attention_mask"] = (torch.arange(7) < torch.tensor([[7], [4]])).long()
    torch.save(inputs, tmp_path / "inputs.pt")
    cases = []
    for name, (model, auto, key) in sources.items():
        torch.manual_seed(0)
        model.eval().save_pretrained(tmp_path / name)
        with torch.no_grad():
            torch.save(getattr(model(**inputs), key), tmp_path / f"{name}.pt")
        convert(tmp_path / name, tmp_path / f"{name}-sora")
        result = push(tmp_path / f"{name}-sora", f"tester/{name}-sora")
        assert "modeling_sora.py" in online.repos[f"tester/{name}-sora"].commits[result.commit_sha].files
        cases.append({"repo": f"tester/{name}-sora", "auto": auto, "key": key, "inputs": str(tmp_path / "inputs.pt"),
                      "expected": str(tmp_path / f"{name}.pt")})  # fmt: skip
    out = _run_child(tmp_path, online, "remote_code", cases, script=CONVERTED_CHILD)
    assert out.count("ok tester/") == 2
