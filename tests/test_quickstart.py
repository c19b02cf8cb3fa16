"""The README's main job, `sora-hf quickstart`, end to end with a tiny number of steps: it pre-trains, fine-tunes,
answers through both pipelines, and leaves the folders the README describes."""

import json

from sora_hf.cli import main as cli_main
from sora_hf.runs.quickstart import MASK_EXAMPLES, SENTIMENT_EXAMPLES


def test_quickstart_runs_end_to_end_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "quickstart"
    assert cli_main(["quickstart", "--output-dir", str(out), "--max-steps", "4", "--finetune-epochs", "0.01"]) == 0
    printed = capsys.readouterr().out
    assert "[1/3] pre-training" in printed and "[3/3] pipeline('text-classification')" in printed
    for sentence in (*MASK_EXAMPLES, *SENTIMENT_EXAMPLES):
        assert sentence in printed
    pretrain = json.loads((out / "pretrain" / "metrics.json").read_text())
    finetune = json.loads((out / "sentiment" / "metrics.json").read_text())
    assert pretrain["train_steps"] == 4 and finetune["train_steps"] >= 1
    # all weights fine-tuned by default (faster and better than LoRA on a CPU for the tiny encoder)
    assert finetune["trainable_parameters"] == finetune["total_parameters"]
    assert not (out / "sentiment" / "adapter_config.json").exists()
    assert 0.0 <= finetune["test_accuracy"] <= 1.0 and finetune["test_examples"] > 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "recipe.yaml", "loss_curve.png"):
        assert (out / "pretrain" / name).is_file(), name
        assert (out / "sentiment" / name).is_file(), name
    assert (out / "sentiment" / "confusion_matrix.png").is_file()
    # run again without --overwrite: refused, nothing lost
    before = (out / "sentiment" / "metrics.json").read_bytes()
    assert cli_main(["quickstart", "--output-dir", str(out), "--max-steps", "4"]) == 2
    assert (out / "sentiment" / "metrics.json").read_bytes() == before
