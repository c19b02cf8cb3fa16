"""LoRA for every Sora head through peft, split as peft splits its tuners: `config.py` holds the recipe's `lora:`
options (parsed once, when the recipe is read; no torch), `model.py` builds the peft `LoraConfig` of a head and wraps
the model."""

from ..._lazy import lazy_exports

# the public names of each module, imported on first use (so that `config` loads without torch)
__getattr__, __all__ = lazy_exports(
    __name__,
    config=("LoraOptions", "parse_lora_options"),
    model=("HEAD_TASK_TYPES", "apply_lora", "count_parameters", "lora_config_for"),
)
