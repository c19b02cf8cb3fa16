"""Command lines that start a recipe on several local processes (torchrun, accelerate launch), for the tests of
multi-process training; the README gives the same commands to users."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from sora_hf.recipes import recipes_dir

ACCELERATE_CONFIGS = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3", "cpu_2proc")


def accelerate_config_path(name: str) -> Path:
    """`recipes/accelerate/<name>.yaml`, one of `ACCELERATE_CONFIGS`."""
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
