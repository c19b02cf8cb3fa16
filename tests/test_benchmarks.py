"""The prepared accelerator run (`benchmarks/gpu_all.sh`) must work the first time a GPU is lent: CI runs it at the
tiny preset on the CPU and checks that every question it asks has an answer in the one JSON it writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_all.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_gpu_all_script_answers_every_question_at_the_tiny_preset_on_cpu(tmp_path):
    out = tmp_path / "gpu_all.json"
    done = _run("--preset", "tiny", "--device", "cpu", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["settings"]["preset"] == "tiny" and report["settings"]["steps"] == 10
    unpadded, padded = report["encoder"]
    assert (unpadded["padding"], padded["padding"]) == (0.0, 0.25)
    assert padded["real_tokens"] < unpadded["real_tokens"]
    for row in (unpadded, padded):
        for name in ("sora", "bert", "modernbert"):
            assert row[name]["tokens_per_s"] > 0 and row[name]["loss"] > 0, (name, row[name])
    assert set(padded["ratios"]) >= {"sora_over_bert", "sora_over_modernbert", "sora_padding_free_over_bert"}
    assert report["decoder"]["ratios"]["sora_over_llama"] > 0
    for batch in ("batch_1", "batch_32"):
        for name in ("llama_dynamic_cache", "llama_static_cache", "sora_dynamic_cache", "sora_static_cache"):
            assert report["decode"][batch][name].get("tokens_per_s", 0) > 0, (batch, name, report["decode"][batch])


def test_gpu_all_script_names_an_unknown_argument(tmp_path):
    done = _run("--steps", "3")
    assert done.returncode == 2 and "unknown argument --steps" in done.stderr
