"""Trainer extensions, one package each, split as peft and trl split theirs: `config.py` holds the recipe section's
options (parsed once, when the recipe is read; it imports only `sora_hf.validation`), the mechanism modules hold
what the extension does, and `trainer.py` the `transformers.Trainer` subclass that switches it on.

- `adversarial/`: FGM / PGD / FreeLB perturbations of the embeddings (`AdversarialTrainer`).
- `distillation/`: a fine-tuned teacher's soft targets and hidden states (`DistillationTrainer`).
- `robustness/`: scores on character-perturbed copies of the test split (an evaluation: no Trainer).
- `lora/`: LoRA through peft for every head (`apply_lora`; the options only, no Trainer of its own).
- `multitask/`: one-task batches, the multi-task model and `MultiTaskTrainer` (the recipe: `sora_hf.recipes.multitask`).
"""
