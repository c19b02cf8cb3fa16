"""Multi-process training: which process this is, how many there are, and how to launch them.

A recipe runs unchanged on several processes; only the launcher changes:

    torchrun --nproc_per_node 2 -m sora_hf.cli pretrain recipes/pretrain/zh-tiny-mlm.yaml
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m sora_hf.cli pretrain recipes/pretrain/zh-tiny-mlm.yaml

`recipes/accelerate/` holds configs for DDP, FSDP2, DeepSpeed ZeRO-2/3 and two CPU processes. The global batch is
`per_device_train_batch_size x world_size x gradient_accumulation_steps`; `metrics.json` records `world_size`.

On CPU, `accelerate launch --cpu --num_processes 2` starts ONE process (without an MPI hostfile the flag is ignored):
use `torchrun --nproc_per_node 2` or `accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml`.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ACCELERATE_CONFIGS = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3", "cpu_2proc")


def env_rank() -> int:
    """This process's global rank as the launcher (torchrun, accelerate, deepspeed) set it; 0 when not launched.

    Readable before `torch.distributed` is initialised, e.g. to let only one process clear an output folder.
    """
    return int(os.environ.get("RANK", "0") or 0)


def env_world_size() -> int:
    """How many processes the launcher started; 1 when not launched."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """True on global rank 0 (and in a plain, single-process run)."""
    return env_rank() == 0


def gloo_available() -> bool:
    """Whether this torch build can run CPU processes together (the gloo backend)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


def accelerate_config_path(name: str) -> Path:
    """`recipes/accelerate/<name>.yaml`, one of `ACCELERATE_CONFIGS`."""
    from .recipes import recipes_dir

    if name not in ACCELERATE_CONFIGS:
        raise ValueError(f"unknown accelerate config {name!r}; choose one of {', '.join(ACCELERATE_CONFIGS)}")
    return recipes_dir() / "accelerate" / f"{name}.yaml"


def free_port() -> int:
    """A TCP port free on this machine right now, for the rendezvous of a local multi-process run."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(cli_args: list[str], nproc: int = 2, port: int | None = None) -> list[str]:
    """`python -m torch.distributed.run --nproc_per_node N ... -m sora_hf.cli <cli_args>` for this interpreter."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port or free_port()),
        "-m",
        "sora_hf.cli",
        *cli_args,
    ]


def accelerate_command(cli_args: list[str], config: str = "cpu_2proc", port: int | None = None) -> list[str]:
    """`python -m accelerate.commands.launch --config_file recipes/accelerate/<config>.yaml -m sora_hf.cli ...`."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config_path(config)),
        "--main_process_port",
        str(port or free_port()),
        "-m",
        "sora_hf.cli",
        *cli_args,
    ]


__all__ = [
    "ACCELERATE_CONFIGS",
    "accelerate_command",
    "accelerate_config_path",
    "env_rank",
    "env_world_size",
    "free_port",
    "gloo_available",
    "is_main_process",
    "torchrun_command",
]
