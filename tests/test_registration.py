"""`import sora_hf` is cheap and behaves the same from Python and from the command line: no torch until transformers
is imported, then Sora is registered whichever import came first (each case in a fresh interpreter)."""

import json
import subprocess
import sys
import textwrap

import pytest

REPORT = """
import json, sys
import sora_hf.auto.registration as registration
from transformers import AutoConfig
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as lora
print(json.dumps({
    "registered": registration._registered,
    "config": type(AutoConfig.for_model("sora")).__name__,
    "lora": lora.get("sora"),
}))
"""

ORDERS = {
    "sora_hf, then transformers": "import sora_hf\nimport transformers",
    "transformers, then sora_hf": "import transformers\nimport sora_hf",
    "a model file directly": "from sora_hf.modeling_sora import SoraModel",
    "the multi-task model file directly": "from sora_hf.modeling_sora_multitask import SoraForMultiTask",
    "the config file directly": "from sora_hf.configuration_sora import SoraConfig",
    "the registration module directly (as the command line does)": "from sora_hf.auto.registration import register",
    "a class read from the package": "import sora_hf\nsora_hf.SoraForCausalLM",
    # the registration imports the pipelines, which import transformers half-way through their own import
    "the pipelines package directly": "import sora_hf.pipelines",
    "the server app directly": "import sora_hf.serving.app",
}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("order", ORDERS)
def test_sora_is_registered_whichever_import_comes_first(order):
    done = _run(ORDERS[order] + "\n" + REPORT)
    assert done.returncode == 0, done.stderr
    assert "registering Sora with transformers failed" not in done.stderr  # no half-imported module was read
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["registered"] and report["config"] == "SoraConfig"
    assert report["lora"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_import_sora_hf_alone_loads_neither_torch_nor_transformers():
    """What `sora-hf --help` and a refused recipe import: the package, the command line and the recipe schema."""
    code = "import sys\nimport sora_hf, sora_hf.cli, sora_hf.recipes\n"
    done = _run(code + "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
