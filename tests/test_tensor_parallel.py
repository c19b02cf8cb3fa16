"""Tensor-parallel loading: every LM head (tied or not) and a pooled encoder head load with `tp_plan="auto"` on two
CPU processes (torchrun, gloo) and give the single-process logits and greedy generations.

The tied heads used to crash ("aten.mm.default got mixed torch.Tensor and DTensor"): transformers shards the input
embedding on the vocabulary, so the output projection tied to it must be sharded the same way (`_tp_plan` of the head
class, as Llama's). This file is also the worker that torchrun starts (`python tests/test_tensor_parallel.py DIR`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs
from launch import free_port

import sora_hf
from sora_hf.training.distributed import gloo_available

# (folder, class, config overrides, whether generate() runs)
CASES = [
    ("causal_tied", "SoraForCausalLM", {}, True),
    ("causal_untied", "SoraForCausalLM", {"tie_word_embeddings": False}, True),
    ("masked_lm", "SoraForMaskedLM", {}, False),
    ("seq2seq", "SoraForSeq2SeqLM", {}, True),
    ("classifier", "SoraForSequenceClassification", {"num_labels": 3}, False),
]
WORLD_SIZE = 2
NEW_TOKENS = 4


def _inputs() -> dict:
    """A right-padded batch for the forward pass, unpadded prompts for greedy decoding."""
    input_ids, attention_mask = random_batch(batch=3, seq=10, seed=1, pad_rows={1: 3})
    prompts, _ = random_batch(batch=2, seq=6, seed=2)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "prompts": prompts}


def _outputs(model, inputs: dict, generates: bool) -> dict:
    with torch.no_grad():
        out = {"logits": model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits}
        if generates:
            out["generated"] = model.generate(inputs["prompts"], max_new_tokens=NEW_TOKENS, do_sample=False)
    return out


def test_parallel_plans_declared():
    """What vLLM's Transformers backend and transformers' pipeline split read: a base pp plan naming real modules
    around exactly one ModuleList of blocks, and each LM head's output projection in the tp and pp plans."""
    config = sora_hf.SoraConfig(**tiny_config_kwargs())
    base = sora_hf.SoraModel(config)
    assert base.supports_tp_plan and base.supports_pp_plan
    modules = [base.get_submodule(name) for name in base.pp_plan]
    assert [type(m) for m in modules].count(torch.nn.ModuleList) == 1 and base.pp_plan["layers"]
    for name, class_name, overrides, _ in CASES[:4]:
        model = getattr(sora_hf, class_name)(sora_hf.SoraConfig(**tiny_config_kwargs(**overrides)))
        head = next(n for n, m in model.named_modules() if m is model.get_output_embeddings())
        assert model.tp_plan[head] == "colwise_gather_output", name
        assert model.pp_plan[head] == (["hidden_states"], ["logits"]), name


@pytest.mark.skipif(not gloo_available(), reason="this torch build has no gloo backend for CPU processes")
def test_tp_auto_matches_single_process(tmp_path):
    inputs = _inputs()
    expected = {}
    for name, class_name, overrides, generates in CASES:
        torch.manual_seed(0)
        model = getattr(sora_hf, class_name)(sora_hf.SoraConfig(**tiny_config_kwargs(**overrides))).eval()
        model.save_pretrained(tmp_path / name)
        expected[name] = _outputs(model, inputs, generates)
    torch.save({"inputs": inputs, "expected": expected}, tmp_path / "expected.pt")

    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD_SIZE)),
        *("--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, str(tmp_path)),
    ]
    # one thread per process on the 2-core machine; CUDA hidden so the ranks pick gloo on CPU
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]

    for rank in range(WORLD_SIZE):
        report = json.loads((tmp_path / f"report-{rank}.json").read_text())
        assert report["world_size"] == WORLD_SIZE
        for name, _, _, generates in CASES:
            result = report["cases"][name]
            assert result["error"] is None, f"rank {rank}, {name}: {result['error']}"
            # really sharded: each rank holds half the rows of the attention and of the vocabulary projection
            assert result["q_proj_rows"] == [result["q_proj_full_rows"] // WORLD_SIZE] * WORLD_SIZE, (name, result)
            if "vocab_size" in result:
                assert result["head_rows"] == [result["vocab_size"] // WORLD_SIZE] * WORLD_SIZE, (name, result)
            assert result["max_abs_diff"] <= 1e-5, (rank, name, result["max_abs_diff"])
            if generates:
                assert result["generated_equal"], (rank, name, result)


def _worker(root: Path) -> None:
    """One torchrun rank: load each saved model with `tp_plan="auto"`, run it, write what it saw to a report."""
    import torch.distributed as dist
    from transformers import DistributedConfig

    torch.set_num_threads(1)
    saved = torch.load(root / "expected.pt")
    inputs, expected = saved["inputs"], saved["expected"]
    report = {"cases": {}}
    for name, class_name, _, generates in CASES:
        result = {"error": None}
        try:
            model = getattr(sora_hf, class_name).from_pretrained(
                root / name, distributed_config=DistributedConfig(tp_plan="auto")
            )
            model.eval()
            q_proj = next(m for n, m in model.named_modules() if n.endswith("layers.0.self_attn.q_proj"))
            result["q_proj_full_rows"] = q_proj.weight.shape[0]
            result["q_proj_rows"] = _local_rows(q_proj.weight)
            if (head := model.get_output_embeddings()) is not None:
                result["vocab_size"] = model.config.vocab_size
                result["head_rows"] = _local_rows(head.weight)
            got = _outputs(model, inputs, generates)
            result["max_abs_diff"] = (got["logits"] - expected[name]["logits"]).abs().max().item()
            if generates:
                result["generated_equal"] = torch.equal(got["generated"], expected[name]["generated"])
        except Exception as error:  # reported per case, so that one failure does not hide the others
            result["error"] = f"{type(error).__name__}: {error}"
        report["cases"][name] = result
    report["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
    (root / f"report-{os.environ['RANK']}.json").write_text(json.dumps(report, indent=1))


def _local_rows(weight) -> list[int]:
    """The rows of `weight` each rank holds (all of them on every rank when it is not sharded)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    local = weight.to_local() if isinstance(weight, DTensor) else weight
    rows = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, torch.tensor([local.shape[0]]))
    return [int(r) for r in rows]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
