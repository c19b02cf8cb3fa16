"""Vocabulary trimming (`sora_hf.conversion.trim_vocabulary`, `sora-hf trim-vocab`): the kept pieces encode the
corpus as before, the outputs on it are the untrimmed model's, and the saved folder reloads with both."""

import json
import random

import pytest
import torch
from helpers import tiny_config_kwargs

ZH = ["北京", "上海", "天气", "很好", "我们", "喜欢", "学习", "中国", "首都", "电脑", "手机", "质量", "不错", "服务"]
EN = ["good", "phone", "price", "service", "weather", "today", "quality", "the", "is", "very", "bad", "learning"]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
IDS = dict(pad_token_id=1, cls_token_id=0, sep_token_id=2, mask_token_id=4, bos_token_id=0, eos_token_id=2)


def _lines(count: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(ZH) for _ in range(rng.randint(2, 6)))
        + " "
        + " ".join(rng.choice(EN) for _ in range(rng.randint(1, 4)))
        for _ in range(count)
    ]


LINES = _lines()
# the corpus: a subset of the lines, so that some pieces are unused
CORPUS = [line for line in LINES if "北京" in line or "手机" in line][:60]


def _unigram_tokenizer():
    """An XLM-R-like SentencePiece Unigram tokenizer, trained with `tokenizers` on the synthetic lines."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=SPECIALS, unk_token="<unk>")
    backend.train_from_iterator(LINES, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
        model_max_length=64,
    )


def _sora(head: str, tokenizer, ids: dict | None = None):
    from sora_hf import modeling_sora
    from sora_hf.configuration_sora import SoraConfig

    extra = {"classifier_pooling": "mean"} if head == "SoraForSentenceEmbedding" else {}
    ids = IDS if ids is None else ids
    config = SoraConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), **ids, decoder_start_token_id=0, **extra))
    torch.manual_seed(0)
    return getattr(modeling_sora, head)(config).eval()


def _save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _outputs(model, tokenizer, texts, kept=None):
    """The model's float outputs on `texts` (one padded batch); vocabulary logits on the `kept` ids."""
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    found = {"last": out.hidden_states[-1]}
    if getattr(out, "logits", None) is not None:
        logits = out.logits
        found["logits"] = logits[..., kept] if kept is not None and logits.shape[-1] > len(kept) else logits
    if getattr(out, "embeddings", None) is not None:
        found["embeddings"] = out.embeddings
    return found


@pytest.fixture(scope="module")
def unigram():
    return _unigram_tokenizer()


@pytest.mark.parametrize("head", ["SoraForMaskedLM", "SoraForSentenceEmbedding", "SoraForPreTraining"])
def test_unigram_trim_keeps_pieces_and_outputs(unigram, head, tmp_path):
    from transformers import AutoTokenizer

    from sora_hf import modeling_sora
    from sora_hf.conversion import trim_vocabulary

    model = _sora(head, unigram)
    source = _save(model, unigram, tmp_path / "source")
    report = trim_vocabulary(source, tmp_path / "trimmed", CORPUS)

    assert report.tokenizer_model == "Unigram"
    assert report.pieces_after < report.pieces_before == len(unigram)
    assert report.parameters_after < report.parameters_before
    assert report.file_bytes_after < report.file_bytes_before
    assert report.texts == report.texts_same_pieces == len(CORPUS)
    assert max(report.max_abs_difference.values()) <= 1e-5 and report.max_abs_difference
    assert json.loads((tmp_path / "trimmed" / "trim_report.json").read_text())["pieces_after"] == report.pieces_after

    trimmed_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    trimmed = getattr(modeling_sora, head).from_pretrained(tmp_path / "trimmed").eval()
    # same pieces, as strings, for every corpus text
    for text in CORPUS:
        assert trimmed_tokenizer.tokenize(text) == unigram.tokenize(text)
    # the unknown piece, the scores and the specials are kept; the vocabulary is smaller
    assert len(trimmed_tokenizer) == report.pieces_after == trimmed.config.vocab_size
    assert trimmed.get_input_embeddings().weight.shape[0] == report.pieces_after
    for name in ("pad", "cls", "sep", "mask", "bos", "unk"):
        token_id = getattr(trimmed_tokenizer, f"{name}_token_id")
        assert trimmed_tokenizer.convert_ids_to_tokens(token_id) == getattr(unigram, f"{name}_token")
        if name != "unk":
            assert getattr(trimmed.config, f"{name}_token_id") == token_id
    assert trimmed.get_input_embeddings().padding_idx == trimmed_tokenizer.pad_token_id
    pieces = json.loads((tmp_path / "trimmed" / "tokenizer.json").read_text())["model"]["vocab"]
    scores = dict(json.loads(unigram.backend_tokenizer.to_str())["model"]["vocab"])
    assert all(score == scores[piece] for piece, score in pieces)
    # save -> reload -> same outputs (vocabulary logits on the kept ids)
    kept = unigram.convert_tokens_to_ids(trimmed_tokenizer.convert_ids_to_tokens(list(range(len(trimmed_tokenizer)))))
    before = _outputs(model, unigram, CORPUS[:16], kept)
    after = _outputs(trimmed, trimmed_tokenizer, CORPUS[:16])
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-5, rtol=0)
    if head == "SoraForMaskedLM":  # the decoder stays tied to the (trimmed) embedding
        assert trimmed.get_output_embeddings().weight.data_ptr() == trimmed.get_input_embeddings().weight.data_ptr()
        assert trimmed.decoder.bias.shape[0] == report.pieces_after
        torch.testing.assert_close(trimmed.decoder.bias, model.decoder.bias[kept])
    if head == "SoraForPreTraining":  # the generator's vocabulary is trimmed with the discriminator's
        assert trimmed.generator.get_input_embeddings().weight.shape[0] == report.pieces_after
        assert trimmed.generator.config.vocab_size == report.pieces_after
        ids = unigram(CORPUS[:4], padding=True, return_tensors="pt")
        new_ids = trimmed_tokenizer(CORPUS[:4], padding=True, return_tensors="pt")
        with torch.no_grad():
            old = model.generator(input_ids=ids.input_ids, attention_mask=ids.attention_mask).logits[..., kept]
            new = trimmed.generator(input_ids=new_ids.input_ids, attention_mask=new_ids.attention_mask).logits
        torch.testing.assert_close(new, old, atol=1e-5, rtol=0)
    # a text outside the corpus still encodes: what the trimmed vocabulary lacks becomes <unk>
    outside = "上海天气 weather 猫"
    encoded = trimmed_tokenizer(outside)["input_ids"]
    assert trimmed_tokenizer.unk_token_id in encoded and max(encoded) < report.pieces_after
    assert "unknown token" in (tmp_path / "trimmed" / "README.md").read_text()


def test_project_tokenizer_bpe_trim(tmp_path):
    """sora_hf's own tokenizer (character-level BPE with [UNK]): merges whose parts and result are kept survive."""
    from transformers import AutoTokenizer

    from sora_hf import SoraForMaskedLM
    from sora_hf.conversion import trim_vocabulary
    from sora_hf.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(iter(LINES), vocab_size=300, min_frequency=1, model_max_length=64)
    assert json.loads(tokenizer.backend_tokenizer.to_str())["model"]["type"] == "BPE"
    ids = {key: tokenizer.convert_tokens_to_ids(token) for key, token in (
        ("pad_token_id", "[PAD]"), ("cls_token_id", "[CLS]"), ("sep_token_id", "[SEP]"), ("mask_token_id", "[MASK]"),
        ("bos_token_id", "[BOS]"), ("eos_token_id", "[EOS]"))}  # fmt: skip
    model = _sora("SoraForMaskedLM", tokenizer, ids)
    source = _save(model, tokenizer, tmp_path / "source")
    # the Chinese half of some lines and two English words: most English merges go
    corpus = [line.split(" ")[0] for line in LINES if "学习" in line][:50] + ["very good", "the weather"]
    report = trim_vocabulary(source, tmp_path / "trimmed", corpus)
    assert report.tokenizer_model == "BPE" and report.pieces_after < report.pieces_before
    trimmed_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    trimmed = SoraForMaskedLM.from_pretrained(tmp_path / "trimmed").eval()
    for text in corpus:
        assert trimmed_tokenizer.tokenize(text) == tokenizer.tokenize(text)
    merges = json.loads((tmp_path / "trimmed" / "tokenizer.json").read_text())["model"]["merges"]
    assert 0 < len(merges) < len(json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"])
    kept = tokenizer.convert_tokens_to_ids(
        trimmed_tokenizer.convert_ids_to_tokens(list(range(len(trimmed_tokenizer))))
    )
    before, after = _outputs(model, tokenizer, corpus[:16], kept), _outputs(trimmed, trimmed_tokenizer, corpus[:16])
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-5, rtol=0)
    for key in ids:
        token = tokenizer.convert_ids_to_tokens(ids[key])
        assert getattr(trimmed.config, key) == trimmed_tokenizer.convert_tokens_to_ids(token)


def test_transformers_bert_wordpiece_trim(tmp_path):
    """A transformers BERT with a WordPiece tokenizer: the MLM decoder bias (cls.predictions.bias) is trimmed too."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    from sora_hf.conversion import trim_vocabulary

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend.train_from_iterator(LINES, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    backend.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=64,
    )  # fmt: skip
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, pad_token_id=0,
    )  # fmt: skip
    model = BertForMaskedLM(config).eval()
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    source = _save(model, tokenizer, tmp_path / "source")
    corpus = [line for line in LINES if "电脑" in line][:40] + ["goodness phones learned"]
    report = trim_vocabulary(source, tmp_path / "trimmed", corpus)
    assert report.tokenizer_model == "WordPiece" and report.pieces_after < report.pieces_before
    trimmed_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    trimmed = BertForMaskedLM.from_pretrained(tmp_path / "trimmed").eval()
    continuations = {piece for text in corpus for piece in tokenizer.tokenize(text) if piece.startswith("##")}
    assert continuations and continuations <= set(trimmed_tokenizer.get_vocab())
    for text in corpus:
        assert trimmed_tokenizer.tokenize(text) == tokenizer.tokenize(text)
    kept = tokenizer.convert_tokens_to_ids(
        trimmed_tokenizer.convert_ids_to_tokens(list(range(len(trimmed_tokenizer))))
    )
    before, after = _outputs(model, tokenizer, corpus[:16], kept), _outputs(trimmed, trimmed_tokenizer, corpus[:16])
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-5, rtol=0)
    assert trimmed.cls.predictions.bias.shape[0] == report.pieces_after


def test_refused_when_outputs_differ_and_nothing_written(unigram, tmp_path, monkeypatch):
    """A trimmed model whose outputs differ from the source's is refused before anything is written."""
    from sora_hf.conversion import TrimError, trim, trim_vocabulary

    source = _save(_sora("SoraForMaskedLM", unigram), unigram, tmp_path / "source")
    real = trim._trim_model

    def broken(model, kept, size):  # a remapping that drops one row too many: another id's embedding
        real(model, kept, size)
        with torch.no_grad():
            model.get_input_embeddings().weight[5:] = model.get_input_embeddings().weight[5:].roll(1, 0)

    monkeypatch.setattr(trim, "_trim_model", broken)
    with pytest.raises(TrimError, match="differ .* by more than 1e-05"):
        trim_vocabulary(source, tmp_path / "trimmed", CORPUS)
    assert not (tmp_path / "trimmed").exists()
    assert not any(p.name.endswith(".sora-hf-new") for p in tmp_path.iterdir())


def test_cli_trim_vocab(unigram, tmp_path, capsys):
    from sora_hf.cli import main

    source = _save(_sora("SoraForSentenceEmbedding", unigram), unigram, tmp_path / "source")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n\n", encoding="utf-8")
    assert main(["trim-vocab", str(source), str(tmp_path / "out"), "--corpus", str(corpus)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["texts"] == len(CORPUS) and report["pieces_after"] < report["pieces_before"]
    # an existing output is not replaced without --overwrite; an unknown corpus is one line
    before = (tmp_path / "out" / "trim_report.json").read_text()
    assert main(["trim-vocab", str(source), str(tmp_path / "out"), "--corpus", str(corpus)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (tmp_path / "out" / "trim_report.json").read_text() == before
    assert main(["trim-vocab", str(source), str(tmp_path / "other"), "--corpus", "sentiment,nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sora-hf: error: ") and "nope" in err and err.count("\n") == 1
    assert not (tmp_path / "other").exists()
    # a missing checkpoint is named before the corpus is read; an output folder holding the corpus is refused
    assert main(["trim-vocab", str(tmp_path / "nope"), str(tmp_path / "x"), "--corpus", "no-such-task"]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    (tmp_path / "data").mkdir()
    kept = corpus.rename(tmp_path / "data" / "corpus.txt")
    args = ["trim-vocab", str(source), str(tmp_path / "data"), "--corpus", str(kept), "--overwrite"]
    assert main(args) == 2
    assert "contains an input of this run" in capsys.readouterr().err and kept.is_file()


def test_embedded_task_corpus_joins_token_task_words():
    """A token task's texts are its words joined as fine-tuning joins them (what the model will be given)."""
    from sora_hf.conversion import corpus_texts
    from sora_hf.data import load_embedded_task

    texts = corpus_texts("seg")
    splits, _ = load_embedded_task("seg")
    assert len(texts) == sum(len(split) for split in splits.values())
    assert texts[0] == "".join(splits["train"][0]["tokens"])


def test_lora_step_on_trimmed_model(unigram, tmp_path):
    """LoRA fine-tuning works on a trimmed checkpoint: one optimizer step, finite loss that changes."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from sora_hf import SoraForSequenceClassification
    from sora_hf.conversion import trim_vocabulary

    source = _save(_sora("SoraForMaskedLM", unigram), unigram, tmp_path / "source")
    trim_vocabulary(source, tmp_path / "trimmed", CORPUS)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    torch.manual_seed(0)
    model = SoraForSequenceClassification.from_pretrained(tmp_path / "trimmed", num_labels=2)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8))
    model.train()
    batch = tokenizer(CORPUS[:8], padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1] * 4)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(2):
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.isfinite(torch.tensor(losses))) and losses[1] != losses[0]


def test_xlm_roberta_tokenizer_class_trim(unigram, tmp_path):
    """An `XLMRobertaTokenizer` (what multilingual-e5 ships: the class rebuilds its Unigram from tokenizer.json's
    pieces and scores) reloads trimmed, with `<mask>` last as in XLM-R, and the same pieces and outputs."""
    from transformers import AutoTokenizer, XLMRobertaTokenizer

    from sora_hf import SoraForSentenceEmbedding
    from sora_hf.conversion import trim_vocabulary

    pieces = [tuple(p) for p in json.loads(unigram.backend_tokenizer.to_str())["model"]["vocab"]]
    tokenizer = XLMRobertaTokenizer(vocab=[p for p in pieces if p[0] != "<mask>"] + [("<mask>", 0.0)])
    ids = dict(IDS, mask_token_id=tokenizer.mask_token_id)
    model = _sora("SoraForSentenceEmbedding", tokenizer, ids)
    source = _save(model, tokenizer, tmp_path / "source")
    report = trim_vocabulary(source, tmp_path / "trimmed", CORPUS)
    trimmed_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    trimmed = SoraForSentenceEmbedding.from_pretrained(tmp_path / "trimmed").eval()
    assert isinstance(trimmed_tokenizer, XLMRobertaTokenizer)
    assert trimmed_tokenizer.mask_token_id == report.pieces_after - 1 == trimmed.config.mask_token_id
    for text in CORPUS:
        assert trimmed_tokenizer.tokenize(text) == tokenizer.tokenize(text)
    before, after = _outputs(model, tokenizer, CORPUS[:16]), _outputs(trimmed, trimmed_tokenizer, CORPUS[:16])
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-5, rtol=0)


def test_refused_when_pieces_differ_and_nothing_written(unigram, tmp_path, monkeypatch):
    """A trimmed tokenizer that encodes a corpus text otherwise (here: scores changed) is refused, naming it."""
    from sora_hf.conversion import TrimError, trim, trim_vocabulary

    source = _save(_sora("SoraForMaskedLM", unigram), unigram, tmp_path / "source")
    real = trim.trimmed_tokenizer_json

    def rescored(data, kept):
        data = real(data, kept)
        data["model"]["vocab"] = [
            [p, -50.0 if len(p) > 1 and p not in SPECIALS else s] for p, s in data["model"]["vocab"]
        ]
        return data

    monkeypatch.setattr(trim, "trimmed_tokenizer_json", rescored)
    with pytest.raises(TrimError, match=rf"\d+ of {len(CORPUS)} corpus texts encode to other pieces.*first: text 0"):
        trim_vocabulary(source, tmp_path / "trimmed", CORPUS)
    assert not (tmp_path / "trimmed").exists()


def test_split_cjk_characters_gives_one_piece_a_character(unigram, tmp_path, capsys):
    """`--split-cjk-characters` (character tagging): an XLM-R tokenizer that joins `北京` into one piece gives `北`
    and `京` once trimmed, the split survives a reload (the generic class reads tokenizer.json as written; the model's
    own class would rebuild its pre-tokenizer), and the outputs equal the untrimmed model's under the same split."""
    import copy

    from transformers import AutoTokenizer, XLMRobertaTokenizer

    from sora_hf import SoraForSentenceEmbedding
    from sora_hf.cli import main
    from sora_hf.conversion import split_cjk_characters

    pieces = [tuple(p) for p in json.loads(unigram.backend_tokenizer.to_str())["model"]["vocab"]]
    tokenizer = XLMRobertaTokenizer(vocab=[p for p in pieces if p[0] != "<mask>"] + [("<mask>", 0.0)])
    assert any(
        len(piece.strip("▁")) > 1 and "\u4e00" <= piece.strip("▁")[0] <= "\u9fff"
        for piece in tokenizer.tokenize(CORPUS[0])
    )
    ids = dict(IDS, mask_token_id=tokenizer.mask_token_id)
    model = _sora("SoraForSentenceEmbedding", tokenizer, ids)
    source = _save(model, tokenizer, tmp_path / "source")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    args = ["trim-vocab", str(source), str(tmp_path / "chars"), "--corpus", str(corpus), "--split-cjk-characters"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split_cjk_characters"] is True and report["texts_same_pieces"] == len(CORPUS)

    split = copy.deepcopy(tokenizer)
    split_cjk_characters(split)
    trimmed_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "chars")
    assert not isinstance(trimmed_tokenizer, XLMRobertaTokenizer)
    for text in CORPUS:
        chars = trimmed_tokenizer.tokenize(text)
        assert chars == split.tokenize(text) != tokenizer.tokenize(text)
        cjk = [c for c in text if "\u4e00" <= c <= "\u9fff"]
        assert [p.lstrip("▁") for p in chars if p.lstrip("▁") and "\u4e00" <= p.lstrip("▁")[0] <= "\u9fff"] == cjk
    trimmed = SoraForSentenceEmbedding.from_pretrained(tmp_path / "chars").eval()
    before, after = _outputs(model, split, CORPUS[:16]), _outputs(trimmed, trimmed_tokenizer, CORPUS[:16])
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-5, rtol=0)
    assert "piece of its own" in (tmp_path / "chars" / "README.md").read_text()
    # without the option, the same source keeps XLM-R's joined pieces
    assert main(["trim-vocab", str(source), str(tmp_path / "pieces"), "--corpus", str(corpus)]) == 0
    capsys.readouterr()
    assert AutoTokenizer.from_pretrained(tmp_path / "pieces").tokenize(CORPUS[0]) == tokenizer.tokenize(CORPUS[0])
