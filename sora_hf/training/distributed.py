"""Multi-process training: which process this is, how many there are, and what this machine can run.

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
from typing import Any


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


def for_this_machine(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Without CUDA, a GPU recipe (bf16/fp16) still runs: on the CPU, in fp32."""
    import torch

    if not torch.cuda.is_available():
        kwargs = {k: v for k, v in kwargs.items() if k not in ("bf16", "fp16")}
        kwargs["use_cpu"] = True
    return kwargs


__all__ = ["env_rank", "env_world_size", "for_this_machine", "gloo_available", "is_main_process"]
