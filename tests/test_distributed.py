"""Multi-process training: the accelerate configs load with accelerate's own loader, and a recipe really runs on two
CPU processes (gloo) under torchrun and under `accelerate launch` with `cpu_2proc.yaml`, recording world_size 2 and
consuming twice the examples per step of a one-process run."""

import json
import os
import subprocess

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType
from helpers import tiny_config_kwargs
from launch import ACCELERATE_CONFIGS, accelerate_command, accelerate_config_path, torchrun_command
from test_pretraining import LINES, tiny_recipe

from sora_hf.recipes import parse_pretrain_recipe
from sora_hf.runs import run_pretraining
from sora_hf.training.distributed import gloo_available

EXPECTED_TYPE = {
    "ddp": DistributedType.MULTI_GPU,
    "fsdp": DistributedType.FSDP,
    "deepspeed_zero2": DistributedType.DEEPSPEED,
    "deepspeed_zero3": DistributedType.DEEPSPEED,
    "cpu_2proc": DistributedType.MULTI_GPU,  # + use_cpu: the launcher path that really starts N CPU processes
}


@pytest.mark.parametrize("name", ACCELERATE_CONFIGS)
def test_accelerate_config_loads(name):
    path = accelerate_config_path(name)
    config = load_config_from_file(str(path))  # raises on keys accelerate does not know
    assert config.distributed_type == EXPECTED_TYPE[name]
    assert config.num_processes == 2 and config.num_machines == 1
    assert config.use_cpu == (name == "cpu_2proc")
    assert config.mixed_precision == ("no" if name == "cpu_2proc" else "bf16")
    # the nested sections are not checked by the loader: each key must be an `accelerate launch` option
    launch_options = {action.dest for action in launch_command_parser()._actions}
    nested = {**config.fsdp_config, **config.deepspeed_config}
    assert set(nested) <= launch_options, sorted(set(nested) - launch_options)
    if name == "fsdp":
        fsdp = config.fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True  # FSDP2 full shard
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp  # the model's `_no_split_modules` name the blocks
        assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the output folder loads with from_pretrained
    if name.startswith("deepspeed"):
        ds = config.deepspeed_config
        assert ds["zero_stage"] == int(name[-1])
        # left to "auto" so DeepSpeed takes them from the recipe's training section
        assert "gradient_accumulation_steps" not in ds and "gradient_clipping" not in ds
        if ds["zero_stage"] == 3:
            assert ds["zero3_save_16bit_model"] is True


@pytest.fixture(scope="module")
def two_process_setup(tmp_path_factory):
    """A tiny recipe (228 training texts, batch 6: 38 batches on one process, 19 steps per epoch on two) and the
    epoch a one-process run reaches after its 6 steps."""
    if not gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    root = tmp_path_factory.mktemp("distributed")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"{line}第{i}条。" for i in range(40) for line in LINES) + "\n", encoding="utf-8")
    raw = tiny_recipe(corpus, root / "single", per_device_train_batch_size=6, save_steps=6)
    recipe_path = root / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    single = run_pretraining(parse_pretrain_recipe(raw))
    assert single["world_size"] == 1
    return root, recipe_path, _final_epoch(root / "single")


def _final_epoch(output_dir) -> float:
    state = json.loads((output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    return state["epoch"]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_cpu_processes(launcher, two_process_setup):
    root, recipe_path, single_epoch = two_process_setup
    out = root / launcher
    cli_args = ["pretrain", str(recipe_path), "--output-dir", str(out)]
    command = torchrun_command(cli_args, nproc=2) if launcher == "torchrun" else accelerate_command(cli_args)
    # one thread each on the 2-core machine; the Hub stays offline; CUDA hidden so both launchers pick gloo on CPU
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["train_steps"] == 6
    # independent of how world_size is computed: each of the 6 steps consumed twice the examples, so the same 6 steps
    # covered twice the fraction of an epoch that the one-process run covered
    epoch = _final_epoch(out)
    print(
        f"{launcher}: world_size {metrics['world_size']}, epoch after 6 steps {epoch:.4f} vs {single_epoch:.4f} on 1"
    )
    assert epoch == pytest.approx(2 * single_epoch, rel=1e-6)
    # the main process wrote the run's extras (metrics, plot, card, recipe) and the model
    for name in ("metrics.json", "loss_curve.png", "README.md", "recipe.yaml", "config.json", "tokenizer.json"):
        assert (out / name).exists(), name


@pytest.mark.parametrize("layout", [{}, {"norm_position": "post"}, {"num_decoder_layers": 1}])
def test_fsdp_wraps_every_block_class_the_model_holds(layout):
    """fsdp.yaml names no class: Accelerate wraps the `_no_split_modules` the model holds, whatever its layout."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    from sora_hf import SoraConfig, SoraForMaskedLM, SoraForSeq2SeqLM

    model_class = SoraForSeq2SeqLM if "num_decoder_layers" in layout else SoraForMaskedLM
    model = model_class(SoraConfig(**tiny_config_kwargs(**layout)))
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(model)
    blocks = {type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Layer")} - {"SoraLayerNorm"}
    assert set(plugin.transformer_cls_names_to_wrap) == blocks
