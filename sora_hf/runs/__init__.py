"""The runners: each command's run as a short list of steps (check, load, train, score, write), over the pieces
in `pretraining`, `training`, `tasks` and `outputs`; `finetune_steps` holds the steps fine-tuning and multi-task
runs share. Only the command line (and the quickstart) import
this package; everything it does is also one call in Python: `sora_hf.runs.run_finetuning(load_finetune_recipe(p))`.
"""

from .finetune import finetuning_inputs, run_finetuning
from .multitask import run_multitask
from .pretrain import pretraining_inputs, run_pretraining

__all__ = ["finetuning_inputs", "pretraining_inputs", "run_finetuning", "run_multitask", "run_pretraining"]
