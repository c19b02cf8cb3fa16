"""Adversarial training on the embedding output: each method's gradients against hand-derivable references, under
full fine-tuning, LoRA and gradient accumulation, and one recipe run end to end with a robustness section."""

import json

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs
from transformers import Trainer, TrainerCallback, TrainingArguments

from sora_hf import SoraConfig, SoraForSentenceEmbedding, SoraForSequenceClassification, SoraForTokenClassification
from sora_hf.recipes import RecipeError
from sora_hf.tasks.similarity import PairCollator, pair_loss
from sora_hf.training.adversarial import (
    AdversarialTrainer,
    EmbeddingPerturbation,
    normalise,
    parse_adversarial_options,
    project,
)


def _model(cls=SoraForSequenceClassification, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(SoraConfig(**tiny_config_kwargs(num_labels=3, **overrides)))


def _batch(kind="classification", batch=4, seq=10, seed=0):
    input_ids, attention_mask = random_batch(batch, seq, seed=seed, pad_rows={1: 3, 3: 5})
    g = torch.Generator().manual_seed(seed + 1)
    if kind == "token":
        labels = torch.randint(0, 3, (batch, seq), generator=g).masked_fill(attention_mask == 0, -100)
    elif kind == "pair":
        ids_b, mask_b = random_batch(batch, seq - 2, seed=seed + 7, pad_rows={0: 2})
        scores = torch.rand(batch, generator=g).tolist()
        rows = [
            {"input_ids": a[m.bool()].tolist(), "input_ids_b": b[mb.bool()].tolist(), "labels": score}
            for a, m, b, mb, score in zip(input_ids, attention_mask, ids_b, mask_b, scores, strict=True)
        ]
        return PairCollator(pad_token_id=0)(rows)
    else:
        labels = torch.randint(0, 3, (batch,), generator=g)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _trainer(model, tmp_path, adversarial=None, accumulation=1):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=True)
    # sentence pairs: the similarity task's loss, as fine-tuning gives it to Trainer
    kwargs = {"compute_loss_func": pair_loss} if isinstance(model, SoraForSentenceEmbedding) else {}
    if adversarial is None:
        trainer = Trainer(model=model, args=args, **kwargs)
    else:
        options = parse_adversarial_options(adversarial)
        trainer = AdversarialTrainer(model=model, args=args, adversarial=options, **kwargs)
    trainer.current_gradient_accumulation_steps = accumulation  # set by the training loop in Trainer.train
    return trainer


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _step(model, tmp_path, batch, adversarial=None, accumulation=1):
    model.zero_grad(set_to_none=True)
    trainer = _trainer(model, tmp_path, adversarial, accumulation)
    loss = trainer.training_step(trainer.model, dict(batch))
    return loss, _grads(model), trainer


@pytest.mark.parametrize(
    "cls,kind",
    [
        (SoraForSequenceClassification, "classification"),
        (SoraForTokenClassification, "token"),
        (SoraForSentenceEmbedding, "pair"),
    ],
)
def test_fgm_with_zero_epsilon_doubles_the_plain_gradient(cls, kind, tmp_path):
    """epsilon=0: the adversarial pass is a second clean pass, so every gradient is exactly twice the plain one
    (for sentence pairs too, whose loss is the task's, outside the model)."""
    batch = _batch(kind)
    plain_loss, plain, _ = _step(_model(cls), tmp_path, batch)
    fgm_loss, fgm, trainer = _step(_model(cls), tmp_path, batch, {"method": "fgm", "epsilon": 0.0})
    assert plain.keys() == fgm.keys() and len(plain) > 5
    torch.testing.assert_close(fgm_loss, plain_loss)
    for name in plain:
        torch.testing.assert_close(fgm[name], 2 * plain[name], rtol=1e-5, atol=1e-7, msg=name)
    assert trainer._adversarial_loss_sum == pytest.approx(float(plain_loss), rel=1e-5)


def test_freelb_with_zero_epsilon_is_the_plain_step(tmp_path):
    """FreeLB averages K passes; inside a ball of radius 0 each pass is the clean one."""
    batch = _batch()
    plain_loss, plain, _ = _step(_model(), tmp_path, batch)
    options = {"method": "freelb", "epsilon": 0.0, "alpha": 0.1, "steps": 3, "init_magnitude": 0.0}
    loss, freelb, _ = _step(_model(), tmp_path, batch, options)
    torch.testing.assert_close(loss, plain_loss)
    for name in plain:
        torch.testing.assert_close(freelb[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fgm_raises_the_loss_and_changes_the_gradient(tmp_path):
    batch = _batch()
    plain_loss, plain, _ = _step(_model(), tmp_path, batch)
    loss, fgm, trainer = _step(_model(), tmp_path, batch, {"method": "fgm", "epsilon": 1.0})
    adversarial_loss = trainer._adversarial_loss_sum
    assert adversarial_loss > float(loss) + 1e-3  # the step goes uphill
    name = "classifier.out_proj.weight"
    assert not torch.allclose(fgm[name], 2 * plain[name], rtol=1e-3, atol=1e-6)


def test_pgd_stays_in_the_epsilon_ball_and_climbs(tmp_path, monkeypatch):
    seen = []
    original = EmbeddingPerturbation.start

    def spy(self, deltas=None, random_magnitude=0.0):
        if deltas is not None:
            seen.append([d.detach().clone() for d in deltas])
        return original(self, deltas, random_magnitude)

    monkeypatch.setattr(EmbeddingPerturbation, "start", spy)
    batch = _batch()
    options = {"method": "pgd", "epsilon": 0.5, "alpha": 0.3, "steps": 4}
    loss, _, trainer = _step(_model(), tmp_path, batch, options)
    assert len(seen) == 4  # K-1 intermediate passes and the final one
    for deltas in seen:
        norms = deltas[0].flatten(1).norm(dim=1)
        assert (norms <= 0.5 + 1e-5).all(), norms
        pads = batch["attention_mask"] == 0
        assert deltas[0][pads].abs().max() == 0  # padding is never perturbed
    torch.testing.assert_close(seen[-1][0].flatten(1).norm(dim=1), torch.full((4,), 0.5))  # 4 x 0.3 reaches the rim
    assert trainer._adversarial_loss_sum > float(loss)


def test_lora_fgm_is_not_a_no_op(tmp_path):
    """Weight-based FGM does nothing under LoRA (the embedding weight is frozen); the output hook does."""
    from sora_hf.training.lora import LoraOptions, apply_lora

    batch = _batch()

    def lora_model():
        return apply_lora(_model(), LoraOptions(r=4, alpha=8, dropout=0.0))

    _, plain, _ = _step(lora_model(), tmp_path, batch)
    _, fgm, _ = _step(lora_model(), tmp_path, batch, {"method": "fgm", "epsilon": 1.0})
    lora = [n for n in plain if "lora_B" in n]  # lora_A has no gradient yet: B starts at zero
    assert lora and not any("embed_tokens" in n for n in fgm)
    changed = [n for n in lora if not torch.allclose(fgm[n], 2 * plain[n], rtol=1e-3, atol=1e-7)]
    assert changed == lora


@pytest.mark.parametrize("method", ["fgm", "pgd", "freelb"])
def test_gradient_accumulation_over_half_batches_equals_the_full_batch(method, tmp_path, monkeypatch):
    """Per-example normalisation makes each example's attack independent of its batch, so two half batches with
    accumulation 2 give the full batch's gradient (FreeLB's random start replays the full batch's rows)."""
    batch = _batch(batch=4)
    options = {"method": method, "epsilon": 0.5}
    noise = torch.rand(4, 10, 32, generator=torch.Generator().manual_seed(3))
    draws = iter([noise, *noise.split(2)])  # FreeLB's random start: the full batch's rows, then the same per half
    monkeypatch.setattr(torch, "rand", lambda shape, device=None: next(draws).to(device))
    _, full, _ = _step(_model(), tmp_path, batch, options)
    model = _model()
    model.zero_grad(set_to_none=True)
    trainer = _trainer(model, tmp_path, options, accumulation=2)
    for i in (0, 2):
        trainer.training_step(trainer.model, {k: v[i : i + 2] for k, v in batch.items()})
    accumulated = _grads(model)
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=1e-6)


def test_geometry_helpers():
    grad = torch.tensor([[[3.0, 4.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 2.0]]])
    mask = torch.tensor([[[1.0], [0.0]], [[1.0], [1.0]]])
    unit = normalise(grad, mask)
    torch.testing.assert_close(unit[0], torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    torch.testing.assert_close(unit[1], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(normalise(torch.zeros(1, 2, 2), torch.ones(1, 2, 1)), torch.zeros(1, 2, 2))
    big, small = torch.full((1, 2, 2), 3.0), torch.full((1, 2, 2), 0.1)
    torch.testing.assert_close(project(big, 1.5).flatten(1).norm(dim=1), torch.tensor([1.5]))
    torch.testing.assert_close(project(small, 1.5), small)


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"method": "fgn"}, "adversarial.method='fgn' must be one of fgm, pgd, freelb"),
        ({"method": "pgd", "epsilon": -1}, "adversarial.epsilon=-1.0 must be >= 0"),
        ({"method": "pgd", "steps": 0}, "adversarial.steps=0 must be a whole number"),
        ({"method": "pgd", "steps": 2.5}, "adversarial.steps=2.5"),
        ({"method": "freelb", "alpha": 0}, "adversarial.alpha=0.0 must be > 0"),
        ({"method": "fgm", "steps": 3}, "adversarial.steps does not apply to fgm"),
        ({"method": "freelb", "epsilon": 0.2, "init_magnitude": 0.5}, "adversarial.init_magnitude=0.5 must be in"),
        ({"method": "pgd", "epsilom": 0.5}, "did you mean 'epsilon'"),
    ],
)
def test_bad_settings_are_named(raw, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_adversarial_options(raw)


def test_defaults():
    pgd = parse_adversarial_options({"method": "pgd"})
    assert (pgd.epsilon, pgd.steps, pgd.alpha) == (0.1, 3, pytest.approx(0.05))
    freelb = parse_adversarial_options({"method": "freelb", "epsilon": 0.6, "steps": 2})
    assert (freelb.alpha, freelb.init_magnitude) == (pytest.approx(0.3), pytest.approx(0.3))


def test_recipe_run_trains_adversarially_and_scores_perturbed_text(tmp_path):
    """A recipe with `adversarial:` and `robustness:` through run_finetuning: the loss under attack is logged and
    metrics.json holds clean and perturbed scores."""
    from sora_hf import SoraForMaskedLM
    from sora_hf.data import load_pretraining_text
    from sora_hf.recipes import parse_finetune_recipe
    from sora_hf.runs import run_finetuning
    from sora_hf.tokenizer import train_tokenizer

    texts = load_pretraining_text("reviews")["text"][:1500]
    tokenizer = train_tokenizer(iter(texts), vocab_size=1500, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    checkpoint = tmp_path / "encoder"
    SoraForMaskedLM(SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer)))).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    out = tmp_path / "run"
    recipe = parse_finetune_recipe(
        {
            "name": "adv",
            "checkpoint": str(checkpoint),
            "output_dir": str(out),
            "method": "lora",
            "max_length": 48,
            "doc_stride": 8,
            "data": {"embedded": "sentiment", "max_train_examples": 32, "max_eval_examples": 24},
            "training": {"max_steps": 3, "per_device_train_batch_size": 8, "logging_steps": 1, "disable_tqdm": True},
            "adversarial": {"method": "pgd", "epsilon": 0.5, "steps": 2},
            "robustness": {"rate": 0.2, "kinds": ["homophone", "delete"], "seed": 1},
        }
    )
    logs = []

    class Keep(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs_seen.append(dict(logs or {}))

    logs_seen = logs
    metrics = run_finetuning(recipe, callbacks=[Keep()])
    steps = [row for row in logs if "loss" in row]
    assert len(steps) == 3 and all(row["adversarial_loss"] > 0 for row in steps)
    robustness = metrics["robustness"]
    assert robustness["metric"] == "test_accuracy" and robustness["clean"] == metrics["test_accuracy"]
    assert set(robustness["per_kind"]) == {"homophone", "delete"}
    assert 0.1 < robustness["edited_fraction"] < 0.3
    assert robustness["drop"] == pytest.approx(robustness["clean"] - robustness["perturbed"])
    rows = [json.loads(line) for line in (out / "robustness_examples.jsonl").read_text().splitlines()]
    assert rows and sum(r["text"] != r["perturbed_text"] for r in rows) > len(rows) / 2
    assert json.loads((out / "metrics.json").read_text())["robustness"]["kinds"] == ["homophone", "delete"]


def test_mixed_precision_step_follows_the_fp32_step(tmp_path):
    """bf16 autocast (the CPU mixed precision accelerate offers): the same step within bf16 tolerance."""
    batch = _batch()
    options = {"method": "pgd", "epsilon": 0.5, "steps": 2}
    _, reference, _ = _step(_model(), tmp_path, batch, options)
    model = _model()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=True, disable_tqdm=True)
    trainer = AdversarialTrainer(model=model, args=args, adversarial=parse_adversarial_options(options))
    trainer.current_gradient_accumulation_steps = 1
    model.zero_grad(set_to_none=True)
    trainer.training_step(trainer.accelerator.prepare_model(model), dict(batch))  # as Trainer.train prepares it
    mixed = _grads(model)
    name = "classifier.out_proj.weight"
    assert torch.isfinite(mixed[name]).all()
    cosine = torch.nn.functional.cosine_similarity(mixed[name].flatten(), reference[name].flatten(), dim=0)
    assert cosine > 0.99
    assert not torch.equal(mixed[name], reference[name])  # autocast did run in bf16
