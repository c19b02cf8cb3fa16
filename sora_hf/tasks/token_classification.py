"""Token classification (NER, part of speech, BMES segmentation) over words (characters for Chinese).

Long sentences are split into overlapping windows (`doc_stride` tokens of overlap), as in transformers' examples,
and each word gets its prediction from the window where it sits farthest from an edge.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import load_metric
from .base import Features, Task, collect_outputs, evaluation_scores, first_output, label_names


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Words (characters for Chinese) back to a text, with each word's character span.

    Chinese characters are joined directly, and so are single Latin letters and digits (a character-level corpus
    splits `MBA` and `１９９８` into characters: the model must see them as written, as the pipeline will); a space
    separates two words that touch Latin letters or digits when one of them is a longer word, as in `New York`.
    """
    text, spans = "", []
    previous = ""
    for word in words:
        latin_neighbours = text and word and not _is_cjk(word[0]) and not _is_cjk(text[-1])
        if latin_neighbours and not text[-1].isspace() and (len(word) > 1 or len(previous) > 1):
            text += " "
        spans.append((len(text), len(text) + len(word)))
        text += word
        previous = word
    return text, spans


def _inside(suffix: str, labels: set[str]) -> str:
    return f"M{suffix}" if f"M{suffix}" in labels else f"I{suffix}"


def token_tag(tags: list[str], labels: set[str]) -> str:
    """The tag of one token that covers several words, from theirs (the inverse of `continuation_tags`): in BIOES /
    BMES a token that is a whole word is `S`, one that starts it `B`, ends it `E`; in BIO the first word's tag."""
    first, _, kind = tags[0].partition("-")
    last, _, last_kind = tags[-1].partition("-")
    suffix = f"-{kind}" if kind else ""
    if len(tags) == 1 or kind != last_kind or first == "O" or f"E{suffix}" not in labels:
        return tags[0]
    starts, ends = first in ("B", "S"), last in ("E", "S")
    tag = (f"S{suffix}" if ends else f"B{suffix}") if starts else (f"E{suffix}" if ends else _inside(suffix, labels))
    return tag if tag in labels else tags[0]


def continuation_tags(tag: str, count: int, labels: set[str]) -> list[str]:
    """The tags of the `count` words one token covers (`MBA` tagged as one token), from the token's tag, in the
    label set's scheme (BIO, BIOES or BMES; typed `B-ORG` or bare `B`): B-ORG -> B-ORG I-ORG I-ORG, S -> B M E."""
    if count == 1 or tag == "O":
        return [tag] * count
    position, dash, kind = tag.partition("-")
    suffix = dash + kind
    inside = _inside(suffix, labels)
    end = f"E{suffix}"
    if inside not in labels:
        return [tag] * count
    if end not in labels:  # BIO
        return [tag] + [inside] * (count - 1)
    first = f"B{suffix}" if position in ("B", "S") else inside
    last = end if position in ("E", "S") else inside
    return [first] + [inside] * (count - 2) + [last]


def encode_token_classification(
    dataset, tokenizer, max_length: int, doc_stride: int, names: list[str] | None = None
) -> Features:
    """Words -> text -> overlapping windows; the first sub-token of each word carries its tag, the rest -100.

    A token that covers several words (`MBA` over the characters of a character-level corpus) carries `token_tag`
    of their tags (with the label `names`; without them, the first word's tag)."""
    from datasets import Dataset

    label_set = set(names or [])
    ids = {name: i for i, name in enumerate(names or [])}

    rows: dict[str, list] = defaultdict(list)
    meta = []
    for example_index, example in enumerate(dataset):
        words, tags = example["tokens"], example["tags"]
        text, spans = join_words(words)
        char_to_word = np.full(len(text) + 1, -1, dtype=np.int64)
        for w, (start, end) in enumerate(spans):
            char_to_word[start:end] = w
        enc = tokenizer(
            text,
            truncation=True,
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for window in range(len(enc["input_ids"])):
            offsets = enc["offset_mapping"][window]
            special = enc.encodings[window].special_tokens_mask
            labels, word_of_token, words_in_token, seen = [], [], [], set()
            for t, (start, end) in enumerate(offsets):
                if special[t] or start == end:
                    labels.append(-100)
                    word_of_token.append(-1)
                    words_in_token.append(0)
                    continue
                # skip the leading space a Metaspace token may cover
                while start < end and text[start].isspace():
                    start += 1
                w = int(char_to_word[start]) if start < end else -1
                if w < 0 or w in seen:
                    labels.append(-100)
                    word_of_token.append(-1)
                    words_in_token.append(0)
                else:
                    last = w + 1  # the words whose first character this token also covers
                    while last < len(spans) and spans[last][0] < end:
                        last += 1
                    seen.update(range(w, last))
                    tag = int(tags[w])
                    if last - w > 1 and names:
                        tag = ids[token_tag([names[int(t)] for t in tags[w:last]], label_set)]
                    labels.append(tag)
                    word_of_token.append(w)
                    words_in_token.append(last - w)
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if key in enc:
                    rows[key].append(enc[key][window])
            rows["labels"].append(labels)
            meta.append(
                {
                    "example": example_index,
                    "word_of_token": word_of_token,
                    "words_in_token": words_in_token,
                    "num_words": len(words),
                }
            )
    return Features(Dataset.from_dict(dict(rows)), meta)


def decode_token_classification(
    logits: np.ndarray,
    features: Features,
    num_examples: int,
    id2label: dict[int, str] | None = None,
    sequence_decoder=None,
) -> list[list[int]]:
    """Per example, the predicted tag of every word, from the window where the word sits farthest from an edge.

    A token that covers several words (`MBA` over the characters M, B, A) gives them its tag continued in the
    scheme of `id2label` (`continuation_tags`); without `id2label` each of them gets the token's tag.
    `sequence_decoder(sentences) -> tags` (a CRF's Viterbi) picks the tags of each whole sentence from its words'
    scores (one `(words, labels)` array per sentence, stitched from their windows), instead of each word's best score;
    it is given all sentences at once, to decode them in batches."""
    best: list[dict[int, tuple[int, np.ndarray, int]]] = [{} for _ in range(num_examples)]
    for row, meta in enumerate(features.meta):
        positions = [t for t, w in enumerate(meta["word_of_token"]) if w >= 0]
        length = len(meta["word_of_token"])
        covered = meta.get("words_in_token") or [1] * length
        for t in positions:
            w = meta["word_of_token"][t]
            margin = min(t, length - 1 - t)
            previous = best[meta["example"]].get(w)
            if previous is None or margin > previous[0]:
                best[meta["example"]][w] = (margin, logits[row][t], covered[t])
    ids = {name: i for i, name in (id2label or {}).items()}
    sizes = {m["example"]: m["num_words"] for m in features.meta}
    sentences = [sorted(best[example].items()) for example in range(num_examples)]
    if sequence_decoder is not None:
        decoded = iter(sequence_decoder([np.stack([s for _, (_, s, _) in words]) for words in sentences if words]))
        choices = [next(decoded) if words else [] for words in sentences]
    else:
        choices = [[int(np.argmax(scores)) for _, (_, scores, _) in words] for words in sentences]
    predictions = []
    for example, (words, chosen) in enumerate(zip(sentences, choices, strict=True)):
        tags = [0] * sizes.get(example, 0)
        for (w, (_, _, count)), tag in zip(words, chosen, strict=True):
            run = [tag] * count
            if count > 1 and id2label:
                run = [ids[name] for name in continuation_tags(id2label[tag], count, set(ids))]
            for k, value in enumerate(run):
                if w + k < len(tags) and (k == 0 or w + k not in best[example]):
                    tags[w + k] = value
        predictions.append(tags)
    return predictions


def write_entity_report(path: Path, per_type: dict[str, dict[str, Any]]) -> None:
    """seqeval's per-type precision, recall, f1 and support as a text table."""
    lines = [f"{'type':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, values in sorted(per_type.items()):
        lines.append(
            f"{name:<12}{values.get('precision', 0):>10.4f}{values.get('recall', 0):>10.4f}"
            f"{values.get('f1', 0):>10.4f}{values.get('number', values.get('support', 0)):>10}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _decoding(model) -> tuple[dict[int, str] | None, Any]:
    """The model's `id2label` and, with a CRF, its Viterbi decoder of a whole sentence from its words' emissions."""
    labels = getattr(getattr(model, "config", None), "id2label", None) or {}
    id2label = {int(i): name for i, name in labels.items()} or None
    crf = getattr(model, "crf", None)
    if crf is None:
        return id2label, None

    def viterbi(sentences: list[np.ndarray], batch_size: int = 256) -> list[list[int]]:
        import torch

        device = crf.transitions.device
        tags: list[list[int]] = []
        for start in range(0, len(sentences), batch_size):
            batch = sentences[start : start + batch_size]
            width = max(len(s) for s in batch)
            emissions = torch.zeros(len(batch), width, batch[0].shape[-1], dtype=torch.float32, device=device)
            mask = torch.zeros(len(batch), width, dtype=torch.bool, device=device)
            for row, scores in enumerate(batch):
                emissions[row, : len(scores)] = torch.as_tensor(scores, dtype=torch.float32)
                mask[row, : len(scores)] = True
            paths = crf.decode(emissions, mask).tolist()
            tags.extend(path[: len(scores)] for path, scores in zip(paths, batch, strict=True))
        return tags

    return id2label, viterbi


class TokenClassificationTask(Task):
    name = "token_classification"
    auto_class_name = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    perturbed_columns = ("tokens",)
    perturbs_tagged_tokens = True
    headline = "test_overall_f1"
    distillable = True
    has_label_names = True

    def encode(self, recipe, info, dataset, tokenizer, name: str = "data") -> Features:
        return encode_token_classification(dataset, tokenizer, recipe.max_length, recipe.doc_stride, label_names(info))

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def _predict(self, model, features, collator, tokenizer, dataset, batch_size, recipe):
        logits = collect_outputs(model, features, collator, batch_size)["logits"]
        return decode_token_classification(logits, features, len(dataset), *_decoding(model))

    def eval_metrics(self, info, dataset, features, model):
        def compute_metrics(prediction) -> dict[str, Any]:
            import torch

            with torch.no_grad():
                tags = decode_token_classification(prediction.predictions, features, len(dataset), *_decoding(model))
            return evaluation_scores(self.score(info, dataset, tags))

        return compute_metrics, lambda outputs, labels: first_output(outputs)

    def score(self, info, test, predictions) -> dict[str, Any]:
        names = label_names(info)
        refs = [[names[t] for t in tags] for tags in test["tags"]]
        preds = [[names[t] for t in tags] for tags in predictions]
        flat = [p == r for pr, rr in zip(preds, refs, strict=True) for p, r in zip(pr, rr, strict=True)]
        options = {"scheme": "BMES"} if info.tag_scheme == "BMES" else {}
        result = load_metric("seqeval").compute(predictions=preds, references=refs, **options)
        metrics = {f"test_{k}": v for k, v in result.items() if not isinstance(v, dict)}
        metrics["test_token_accuracy"] = float(np.mean(flat)) if flat else 0.0
        metrics["test_per_type"] = {k: v for k, v in result.items() if isinstance(v, dict)}
        return metrics

    def prediction_row(self, example, prediction, names: list[str], info) -> dict[str, Any]:
        return {
            "tokens": example["tokens"],
            "tags": [names[t] for t in example["tags"]],
            "predictions": [names[t] for t in prediction],
        }

    def write_task_reports(self, output_dir: Path, info, test, predictions, metrics: dict[str, Any]) -> None:
        if "test_per_type" in metrics:
            write_entity_report(output_dir / "entity_report.txt", metrics["test_per_type"])


TASK = TokenClassificationTask()
