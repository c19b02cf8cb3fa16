"""The CRF of `SoraForTokenClassification(use_crf=True)`: likelihood, Viterbi decoding and marginals against brute
force over every tag sequence (with the scheme's forbidden transitions and skipped positions), the head saved and
reloaded, LoRA training it, and the pipeline and fine-tuning predictions following its Viterbi path."""

import itertools

import pytest
import torch
from helpers import random_batch, tiny_config_kwargs

from sora_hf import SoraConfig, SoraForTokenClassification
from sora_hf.crf import SoraCRF, allowed_transitions

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BMES = ["B", "M", "E", "S"]


def _crf(labels, seed=0):
    torch.manual_seed(seed)
    crf = SoraCRF(SoraConfig(**tiny_config_kwargs(), num_labels=len(labels), id2label=dict(enumerate(labels))))
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


def _path_score(crf, emissions, path):
    start, transitions, end = crf._scores()
    score = start[path[0]] + emissions[0, path[0]] + end[path[-1]]
    for a, b, t in zip(path, path[1:], range(1, len(path)), strict=False):
        score = score + transitions[a, b] + emissions[t, b]
    return score


def _brute_force(crf, emissions, mask):
    """Every tag sequence over the masked positions: its probability, the best one, and each tag's marginal."""
    positions = mask.nonzero().flatten().tolist()
    e = emissions[positions]
    paths = list(itertools.product(range(e.shape[-1]), repeat=len(positions)))
    scores = torch.stack([_path_score(crf, e, p) for p in paths])
    log_z = torch.logsumexp(scores, 0)
    best = paths[int(scores.argmax())]
    marginals = torch.zeros(len(positions), e.shape[-1])
    for p, s in zip(paths, scores, strict=True):
        for t, tag in enumerate(p):
            marginals[t, tag] += torch.exp(s - log_z)
    return log_z, best, marginals, positions


@pytest.mark.parametrize("labels", [BIO, BMES], ids=["BIO", "BMES"])
def test_likelihood_viterbi_and_marginals_equal_brute_force(labels):
    crf = _crf(labels)
    torch.manual_seed(1)
    emissions = torch.randn(2, 6, len(labels))
    mask = torch.tensor([[0, 1, 1, 0, 1, 1], [1, 0, 1, 1, 0, 0]], dtype=torch.bool)  # skipped positions anywhere
    tags = torch.randint(0, len(labels), (2, 6))
    expected_nll = []
    decoded = crf.decode(emissions, mask)
    marginals = crf.log_marginals(emissions, mask).exp()
    for row in range(2):
        log_z, best, brute_marginals, positions = _brute_force(crf, emissions[row], mask[row])
        gold = tags[row, positions].tolist()
        expected_nll.append(log_z - _path_score(crf, emissions[row, positions], gold))
        assert decoded[row, positions].tolist() == list(best)
        assert (decoded[row, ~mask[row]] == -100).all()
        torch.testing.assert_close(marginals[row, positions], brute_marginals, rtol=1e-4, atol=1e-5)
    nll = crf.neg_log_likelihood(emissions, tags.masked_fill(~mask, -100), mask)
    # per tagged token: the sentences' negative log-likelihoods summed, over the tagged positions of the batch
    torch.testing.assert_close(nll, torch.stack(expected_nll).sum() / mask.sum(), rtol=1e-5, atol=1e-5)


def test_the_scheme_s_forbidden_transitions_are_never_decoded():
    allowed, start, end = allowed_transitions(BIO)
    assert not allowed[BIO.index("O"), BIO.index("I-PER")] and not allowed[BIO.index("B-LOC"), BIO.index("I-PER")]
    assert allowed[BIO.index("B-PER"), BIO.index("I-PER")] and not start[BIO.index("I-LOC")]
    allowed, start, end = allowed_transitions(BMES)
    assert not allowed[BMES.index("S"), BMES.index("M")] and not allowed[BMES.index("B"), BMES.index("S")]
    assert not end[BMES.index("B")] and not start[BMES.index("E")]
    # emissions that shout an invalid sequence (I-PER first, O then I-LOC): the decoded path is valid anyway
    crf = _crf(BIO)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.zero_()
    emissions = torch.full((1, 3, len(BIO)), -5.0)
    for t, tag in enumerate(["I-PER", "O", "I-LOC"]):
        emissions[0, t, BIO.index(tag)] = 5.0
    path = [BIO[i] for i in crf.decode(emissions, torch.ones(1, 3, dtype=torch.bool))[0].tolist()]
    assert path[0] != "I-PER" and not (path[1] == "O" and path[2] == "I-LOC")


def _tagger(**overrides):
    torch.manual_seed(0)
    config = SoraConfig(**tiny_config_kwargs(), num_labels=len(BIO), id2label=dict(enumerate(BIO)), use_crf=True)
    return SoraForTokenClassification(config)


def test_the_crf_head_trains_saves_and_reloads(tmp_path):
    model = _tagger()
    input_ids, attention_mask = random_batch(3, 8, pad_rows={1: 3})
    labels = torch.randint(0, len(BIO), (3, 8)).masked_fill(attention_mask == 0, -100)
    labels[:, 0] = -100
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.crf.transitions.grad.abs().sum() > 0
    assert out.crf_tags is None  # training mode: no decoding
    model.eval()
    with torch.no_grad():
        tags = model(input_ids=input_ids, attention_mask=attention_mask).crf_tags
    assert (tags[attention_mask == 0] == -100).all() and (tags[attention_mask == 1] >= 0).all()
    model.save_pretrained(tmp_path)
    reloaded = SoraForTokenClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.use_crf and torch.equal(reloaded.crf.transitions, model.crf.transitions)
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=input_ids, attention_mask=attention_mask).crf_tags, tags)


def test_the_pipeline_follows_the_viterbi_path_and_reports_marginals(tokenizer):
    from transformers import pipeline

    torch.manual_seed(0)
    config = SoraConfig(
        **tiny_config_kwargs(vocab_size=len(tokenizer)), num_labels=len(BIO), id2label=dict(enumerate(BIO)),
        label2id={x: i for i, x in enumerate(BIO)}, use_crf=True,
    )  # fmt: skip
    model = SoraForTokenClassification(config).eval()
    with torch.no_grad():
        model.crf.transitions.normal_(std=3.0)  # transitions strong enough to overrule the emissions somewhere
    text = "江泽民在北京发表新年讲话"
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer)
    found = tagger(text)
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits
    mask = torch.ones(logits.shape[:2], dtype=torch.bool)
    mask[:, 0] = mask[:, -1] = False  # [CLS], [SEP]
    path = model.crf.decode(logits, mask)[0]
    marginals = model.crf.log_marginals(logits, mask)[0].exp()
    expected = [(t, BIO[int(path[t])]) for t in range(1, logits.shape[1] - 1) if BIO[int(path[t])] != "O"]
    assert [(e["index"], e["entity"]) for e in found] == expected
    for e in found:
        top = marginals[e["index"]].max()
        if marginals[e["index"], BIO.index(e["entity"])] == top:  # Viterbi and the marginals agree: its marginal
            assert e["score"] == pytest.approx(float(top), rel=1e-4)
    assert expected != [
        (t, BIO[int(logits[0, t].argmax())])
        for t in range(1, logits.shape[1] - 1)
        if BIO[int(logits[0, t].argmax())] != "O"
    ]  # fmt: skip  (the CRF changed some tags)


def test_lora_trains_the_crf_and_onnx_export_refuses_it(tmp_path):
    from sora_hf.deploy import OnnxExportError, export_onnx
    from sora_hf.training.lora import LoraOptions, apply_lora

    model = _tagger()
    peft_model = apply_lora(model, LoraOptions(r=4))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("crf" in n and "transitions" in n for n in trainable)
    with pytest.raises(OnnxExportError, match="use_crf=True: its tags come from the CRF's Viterbi decoding"):
        export_onnx(_tagger(), tmp_path / "onnx")


def test_fine_tuning_with_a_crf_predicts_only_valid_tag_sequences(encoder_checkpoint, tmp_path):
    import json

    from sora_hf.data.tasks import validate_tags
    from sora_hf.recipes import parse_finetune_recipe
    from sora_hf.runs import run_finetuning

    raw = {
        "name": "ner-crf", "checkpoint": str(encoder_checkpoint), "output_dir": str(tmp_path / "run"),
        "method": "lora", "max_length": 48, "doc_stride": 8, "model": {"use_crf": True},
        "data": {"embedded": "ner", "max_train_examples": 48, "max_eval_examples": 24},
        "training": {"max_steps": 4, "per_device_train_batch_size": 8, "learning_rate": 3e-3, "disable_tqdm": True},
    }  # fmt: skip
    metrics = run_finetuning(parse_finetune_recipe(raw))
    assert "test_overall_f1" in metrics
    saved = SoraForTokenClassification.from_pretrained(tmp_path / "run")
    assert saved.config.use_crf and saved.crf is not None and saved.crf.transitions.abs().sum() > 0  # trained
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(validate_tags(row["predictions"], "BIO") is None for row in rows)
