"""Sharing on the Hugging Face Hub: `push` a checkpoint or a LoRA adapter (`push.py`), with the files it collects and
checks (`files.py`)."""

from .files import CUSTOM_PIPELINES, PIPELINE_TAGS, CheckpointFiles, collect_checkpoint
from .push import HubPushError, PushResult, push

__all__ = [
    "CUSTOM_PIPELINES",
    "PIPELINE_TAGS",
    "CheckpointFiles",
    "HubPushError",
    "PushResult",
    "collect_checkpoint",
    "push",
]
