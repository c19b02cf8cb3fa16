"""`trim_vocabulary`: keep only the vocabulary pieces a corpus uses, so that a multilingual checkpoint whose word
embeddings are most of its weights (multilingual-e5-small: 96.0M of 117.5M parameters) shrinks to what a Chinese task
needs, with the same outputs on that corpus.

Every corpus text is encoded with the checkpoint's tokenizer; the pieces used, every special and added token and the
ids the config names are kept in their old order (Unigram pieces keep their scores, the unknown piece stays; WordPiece
keeps the `##` pieces used; BPE keeps the pieces a kept piece is merged from, and the merges whose parts and result are
kept). The embedding rows (and a tied or untied output projection with its bias, and an ELECTRA generator's) are
remapped to the new ids, and `vocab_size` and the special ids of the config and generation config follow.

Checked before anything is written: every corpus text encodes to the same pieces as before, and on a sample of the
corpus the outputs equal the untrimmed model's (vocabulary logits compared on the kept ids) within `tolerance`;
after writing, the saved folder is reloaded and compared once more. Texts outside the corpus still encode: a
character the trimmed vocabulary lacks becomes the unknown token.

`split_cjk_characters=True` first makes the tokenizer give every CJK character a piece of its own, as BERT's Chinese
tokenizers do (`tokenize_chinese_chars`): tagging characters (NER, BMES segmentation, POS) needs one token a
character, and a SentencePiece vocabulary such as XLM-R's joins `北京` or `中华人民共和国` into one piece, so that
word boundaries inside a piece cannot be tagged (on People's Daily, 13% of the segmentation tags). The split is one
more `Split` pre-tokenizer in `tokenizer.json`, saved with the generic `TokenizersBackend` class so that it is read as
written; the same-pieces and same-outputs checks then compare the character-split tokenizer before and after trimming.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..folders.checkpoints import load_checked, read_config_file, resolve_checkpoint
from ..folders.outputs import OutputFolder, check_output_folder
from .convert import _quiet_loading, _saved_dtype, no_space_is_an_error
from .sources import ConversionError

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-5
SPECIAL_ID_KEYS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "cls_token_id",
    "sep_token_id",
    "mask_token_id",
    "unk_token_id",
    "decoder_start_token_id",
)
TOKENIZER_MODELS = ("Unigram", "WordPiece", "BPE")
# files of a sentence-transformers folder that the trimmed checkpoint keeps (the Sora module pools; these follow it)
_SENTENCE_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")
_MODULE_FOLDER = re.compile(r"^\d+_\w+$")
# vocabulary files a tokenizer class could rebuild itself from instead of the trimmed tokenizer.json
_STALE_VOCAB_FILES = ("sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "vocab.txt", "vocab.json")
# CJK unified ideographs (with extension A and the compatibility block), as `_is_chinese_char` of BERT's tokenizer
# covers in the basic plane; a SentencePiece word-start marker stays with the character it precedes
_CJK_CHARACTER = "▁?[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


class TrimError(ConversionError):
    """A vocabulary that cannot be trimmed with the same pieces and outputs (nothing was written)."""


@dataclass
class TrimReport:
    """What `trim_vocabulary` kept, measured and wrote (`trim_report.json` beside the model)."""

    output_dir: str
    source: str
    tokenizer_model: str
    pieces_before: int
    pieces_after: int
    parameters_before: int
    parameters_after: int
    file_bytes_before: int
    file_bytes_after: int
    texts: int
    texts_same_pieces: int
    texts_compared: int
    tolerance: float
    max_abs_difference: dict[str, float]
    reloaded_max_abs_difference: float
    batch_size: int
    ms_per_batch_before: float
    ms_per_batch_after: float
    tokens_per_s_before: float
    tokens_per_s_after: float
    split_cjk_characters: bool = False
    unknown_characters: str = (
        "texts outside the corpus still encode: a character or piece the trimmed vocabulary lacks becomes the "
        "unknown token"
    )
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# the corpus


def corpus_texts(corpus: str | os.PathLike[str]) -> list[str]:
    """A corpus for trimming: a UTF-8 text file (one text a line, blank lines skipped), or embedded task names
    separated by commas (`sentiment,ner,pos,seg`: the texts of all their splits)."""
    path = Path(corpus).expanduser()
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise TrimError(f"corpus {path} is not UTF-8 text (byte {error.start})") from None
        texts = [line for line in lines if line.strip()]
        if not texts:
            raise TrimError(f"corpus {path} holds no text")
        return texts
    from ..data import EMBEDDED_TASKS

    names = [name.strip() for name in os.fspath(corpus).split(",") if name.strip()]
    unknown = [name for name in names if name not in EMBEDDED_TASKS]
    if not names or unknown:
        raise TrimError(
            f"corpus {os.fspath(corpus)!r} is neither a text file nor embedded task names (unknown: "
            f"{', '.join(unknown) or 'none given'}); embedded tasks: {', '.join(EMBEDDED_TASKS)}"
        )
    texts: list[str] = []
    for name in names:
        texts.extend(embedded_task_texts(name))
    return texts


def embedded_task_texts(name: str) -> list[str]:
    """Every text of an embedded task's splits as fine-tuning tokenizes it (a token task's words joined as
    `encode_token_classification` joins them)."""
    from ..data import load_embedded_task
    from ..tasks.token_classification import join_words

    splits, _ = load_embedded_task(name)
    texts = []
    for split in splits.values():
        for column, feature in split.features.items():
            values = split[column]
            if getattr(feature, "dtype", None) == "string":
                texts.extend(v for v in values if isinstance(v, str) and v)
            elif values and isinstance(values[0], list) and values[0] and isinstance(values[0][0], str):
                texts.extend(join_words(words)[0] for words in values if words)
    return texts


# ---------------------------------------------------------------------------------------------------------------
# the tokenizer


def _kept_ids(tokenizer: Any, data: dict[str, Any], used: Iterable[int], config: Any) -> list[int]:
    """The ids the trimmed vocabulary keeps: those used, the specials and added tokens, the ids the config names,
    the unknown piece, the byte pieces of a byte-level model, and (BPE) the pieces every kept piece is merged from."""
    model = data["model"]
    kept = set(used) | set(tokenizer.all_special_ids) | {item["id"] for item in data.get("added_tokens") or []}
    for key in SPECIAL_ID_KEYS:
        value = getattr(config, key, None)
        kept.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    vocab = _vocab_list(model)
    index = {piece: i for i, piece in enumerate(vocab)}
    if model["type"] == "Unigram":
        if model.get("unk_id") is not None:
            kept.add(model["unk_id"])
        if model.get("byte_fallback"):
            kept.update(i for i, piece in enumerate(vocab) if re.fullmatch(r"<0x[0-9A-F]{2}>", piece))
    elif model.get("unk_token") in index:
        kept.add(index[model["unk_token"]])
    if model["type"] == "BPE":
        if model.get("byte_fallback"):
            kept.update(i for i, piece in enumerate(vocab) if re.fullmatch(r"<0x[0-9A-F]{2}>", piece))
        if "ByteLevel" in json.dumps(data.get("pre_tokenizer")):
            kept.update(i for i, piece in enumerate(vocab) if len(piece) == 1)  # the byte alphabet
        made_from: dict[str, list[tuple[str, str]]] = {}
        for left, right in _merges(model):
            made_from.setdefault(_merged(model, left, right), []).append((left, right))
        todo = [vocab[i] for i in kept if i < len(vocab)]
        while todo:
            for pair in made_from.get(todo.pop(), []):
                for part in pair:
                    if part in index and index[part] not in kept:
                        kept.add(index[part])
                        todo.append(part)
    return sorted(i for i in kept if i >= 0)


def _remapped(ids: Sequence[int], remap: dict[int, int]) -> list[int]:
    return [remap[i] for i in ids]


def _vocab_list(model: dict[str, Any]) -> list[str]:
    """The model's pieces by id."""
    if model["type"] == "Unigram":
        return [piece for piece, _ in model["vocab"]]
    pieces = [""] * (max(model["vocab"].values(), default=-1) + 1)
    for piece, i in model["vocab"].items():
        pieces[i] = piece
    return pieces


def _merges(model: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]


def _merged(model: dict[str, Any], left: str, right: str) -> str:
    prefix = model.get("continuing_subword_prefix") or ""
    return left + (right[len(prefix) :] if prefix and right.startswith(prefix) else right)


def trimmed_tokenizer_json(data: dict[str, Any], kept: Sequence[int]) -> dict[str, Any]:
    """`tokenizer.json` (parsed) with only the `kept` ids, renumbered in their old order."""
    remap = {old: new for new, old in enumerate(kept)}
    data = copy.deepcopy(data)
    model = data["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in kept if i < len(model["vocab"])]
        if model.get("unk_id") is not None:
            model["unk_id"] = remap[model["unk_id"]]
    else:
        vocab = _vocab_list(model)
        model["vocab"] = {vocab[i]: remap[i] for i in kept if i < len(vocab)}
    if model["type"] == "BPE":
        pieces = model["vocab"]
        string_merges = bool(model.get("merges")) and isinstance(model["merges"][0], str)
        merges = [
            (left, right)
            for left, right in _merges(model)
            if left in pieces and right in pieces and _merged(model, left, right) in pieces
        ]
        model["merges"] = [f"{a} {b}" if string_merges else [a, b] for a, b in merges]
    for item in data.get("added_tokens") or []:
        item["id"] = remap[item["id"]]
    if isinstance(data.get("padding"), dict) and data["padding"].get("pad_id") in remap:
        data["padding"]["pad_id"] = remap[data["padding"]["pad_id"]]
    data["post_processor"] = _remap_processor(data.get("post_processor"), remap)
    return data


def _remap_processor(processor: Any, remap: dict[int, int]) -> Any:
    """A post-processor's special-token ids (Template, Bert, Roberta, Sequence) in the new numbering."""
    if not isinstance(processor, dict):
        return processor
    processor = dict(processor)
    for key in ("sep", "cls"):
        if isinstance(processor.get(key), list) and len(processor[key]) == 2:
            processor[key] = [processor[key][0], remap[processor[key][1]]]
    for special in (processor.get("special_tokens") or {}).values():
        special["ids"] = [remap[i] for i in special["ids"]]
    if isinstance(processor.get("processors"), list):
        processor["processors"] = [_remap_processor(p, remap) for p in processor["processors"]]
    return processor


def split_cjk_characters(tokenizer: Any) -> None:
    """Make `tokenizer` (a `tokenizers` backend) give every CJK character its own piece, after its own
    pre-tokenization; in place (a tokenizer that splits them already is left as it is). Raises `TrimError` when it
    has no `tokenizers` backend."""
    from tokenizers import Regex, pre_tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TrimError(
            f"{type(tokenizer).__name__} has no tokenizers backend (tokenizer.json) to split CJK characters"
        )
    if _CJK_CHARACTER in backend.to_str():
        return
    split = pre_tokenizers.Split(Regex(_CJK_CHARACTER), behavior="isolated")
    current = backend.pre_tokenizer
    backend.pre_tokenizer = split if current is None else pre_tokenizers.Sequence([current, split])


def _write_tokenizer(
    tokenizer: Any, data: dict[str, Any], remap: dict[int, int], folder: Path, generic: bool = False
) -> Any:
    """Save `tokenizer` into `folder` with the trimmed `tokenizer.json` and ids, and load it back as a user will.
    `generic`: name the `TokenizersBackend` class, which reads `tokenizer.json` as written (a model's own class may
    rebuild its pre-tokenizer and drop a split added to it)."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(folder)
    for name in _STALE_VOCAB_FILES:
        (folder / name).unlink(missing_ok=True)
    (folder / "merges.txt").unlink(missing_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        settings = json.loads(config_file.read_text(encoding="utf-8"))
        if isinstance(settings.get("added_tokens_decoder"), dict):
            settings["added_tokens_decoder"] = {
                str(remap[int(i)]): value for i, value in settings["added_tokens_decoder"].items()
            }
        settings.pop("vocab_file", None)
        settings.pop("merges_file", None)
        if generic:
            settings["tokenizer_class"] = "TokenizersBackend"
        config_file.write_text(json.dumps(settings, indent=2, ensure_ascii=False), encoding="utf-8")
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


# ---------------------------------------------------------------------------------------------------------------
# the model


def _model_class(config: dict[str, Any], spec: str) -> Any:
    import transformers

    from .. import modeling_sora

    names = config.get("architectures") or []
    for name in names:
        found = getattr(modeling_sora, name, None) or getattr(transformers, name, None)
        if found is not None:
            return found
    raise TrimError(f"{spec}'s config.json names no model class that loads here (architectures: {names})")


def _vocab_parameters(model: Any, size: int) -> dict[int, Any]:
    """The parameters indexed by the vocabulary (by id(), so tied ones are found once): word embeddings, output
    projections and their biases, in the model and its sub-models (an ELECTRA generator)."""
    from torch import nn
    from transformers import PreTrainedModel

    found: dict[int, Any] = {}
    for name, module in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Embedding) and module.num_embeddings == size:
            if "position" not in last and "token_type" not in last:
                found[id(module.weight)] = module.weight
        if isinstance(module, PreTrainedModel):
            output = module.get_output_embeddings()
            if isinstance(output, nn.Linear) and output.out_features == size:
                found[id(output.weight)] = output.weight
                if output.bias is not None:
                    found[id(output.bias)] = output.bias
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if name.endswith("bias") and parameter.dim() == 1 and parameter.shape[0] == size and "predictions" in name:
            found[id(parameter)] = parameter  # BERT's cls.predictions.bias (tied to the decoder's)
    return found


def _trim_model(model: Any, kept: Sequence[int], size: int) -> None:
    """Keep the rows of `kept` in every vocabulary-indexed parameter of `model` (ties stay ties), in place."""
    import torch
    from torch import nn
    from transformers import PreTrainedModel

    index = torch.tensor(list(kept), dtype=torch.long)
    remap = {old: new for new, old in enumerate(kept)}
    replaced = {
        key: nn.Parameter(p.detach().index_select(0, index).clone(), requires_grad=p.requires_grad)
        for key, p in _vocab_parameters(model, size).items()
    }
    if not replaced:
        raise TrimError(f"{type(model).__name__} has no word embedding of {size} rows to trim")
    configs: dict[int, Any] = {}  # each config once: the base model shares its head's
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            configs[id(module.config)] = (module.config, len(kept))
            if getattr(module, "generation_config", None) is not None:
                configs[id(module.generation_config)] = (module.generation_config, None)
        for name, parameter in list(module._parameters.items()):
            if parameter is not None and id(parameter) in replaced:
                module._parameters[name] = replaced[id(parameter)]
        if isinstance(module, nn.Embedding) and module.weight.shape[0] != module.num_embeddings:
            module.num_embeddings = module.weight.shape[0]
            if module.padding_idx is not None:
                module.padding_idx = remap.get(module.padding_idx)
        if isinstance(module, nn.Linear) and module.weight.shape[0] != module.out_features:
            module.out_features = module.weight.shape[0]
    for config, vocab_size in configs.values():
        _remap_ids(config, remap, vocab_size)


def _remap_ids(config: Any, remap: dict[int, int], vocab_size: int | None) -> None:
    """Special ids in the new numbering (smaller than or equal to the old ones), then the new vocabulary size."""
    for key in SPECIAL_ID_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, list):
            setattr(config, key, [remap.get(v, v) for v in value])
        elif isinstance(value, int):
            setattr(config, key, remap.get(value, value))
    if vocab_size is not None and hasattr(config, "vocab_size"):
        config.vocab_size = vocab_size


def _parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())  # tied parameters once


def _weight_bytes(folder: str) -> int:
    if not Path(folder).is_dir():
        return 0
    names = ("*.safetensors", "pytorch_model*.bin")
    return sum(p.stat().st_size for pattern in names for p in Path(folder).glob(pattern))


def _max_length(config: Any, tokenizer: Any) -> int:
    positions = getattr(config, "max_position_embeddings", None) or 512
    offset = getattr(config, "position_offset", 0) or 0
    if "roberta" in (getattr(config, "model_type", "") or "") or getattr(config, "model_type", "") == "camembert":
        offset = (config.pad_token_id or 0) + 1
    return max(8, min(int(tokenizer.model_max_length or positions), positions - offset))


def _run(model: Any, batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import torch

    outputs = []
    with torch.inference_mode():
        for batch in batches:
            result = {}
            for key, value in model(**batch, return_dict=True, output_hidden_states=True).items():
                if isinstance(value, torch.Tensor):
                    result[key] = value
                elif isinstance(value, tuple):  # hidden_states: one tensor a layer
                    result.update({f"{key}.{i}": v for i, v in enumerate(value) if isinstance(v, torch.Tensor)})
            generator = getattr(model, "generator", None)
            if generator is not None and hasattr(generator, "get_output_embeddings"):
                result["generator_logits"] = generator(**batch, return_dict=True).logits
            outputs.append(result)
    return outputs


def _differences(before: list[dict], after: list[dict], kept: Any, size: int) -> dict[str, float]:
    """Largest absolute difference per output; vocabulary logits compared on the kept ids."""
    differences: dict[str, float] = {}
    for old, new in zip(before, after, strict=True):
        for key, value in old.items():
            if not value.is_floating_point() or key not in new:
                continue
            if value.shape[-1] == size and new[key].shape[-1] == len(kept):
                value = value.index_select(-1, kept)
            if value.shape != new[key].shape:
                differences[key] = float("inf")
                continue
            gap = (value - new[key]).abs().max().item() if value.numel() else 0.0
            differences[key] = max(differences.get(key, 0.0), gap)
    return differences


def _time(model: Any, batches: list[dict[str, Any]], repeats: int) -> float:
    """Median seconds to run all `batches` (one warm-up pass first)."""
    import torch

    times = []
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            for batch in batches:
                model(**batch)
            if repeat:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _batches(tokenizer: Any, texts: list[str], batch_size: int, max_length: int) -> list[dict[str, Any]]:
    batches = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batches.append({k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    return batches


def _sample(texts: list[str], size: int) -> list[str]:
    """`size` texts spread evenly over the corpus (the same every run)."""
    if len(texts) <= size:
        return list(texts)
    step = len(texts) / size
    return [texts[int(i * step)] for i in range(size)]


# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """The checkpoint as read for trimming: its configs, tokenizer and parsed `tokenizer.json`, and the corpus."""

    spec: str
    texts: list[str]
    saved: dict[str, Any]
    config: Any
    tokenizer: Any
    data: dict[str, Any]
    kind: str


@dataclass
class _Vocabulary:
    """The ids kept (in their old order) and the trimmed tokenizer that numbers them from 0."""

    size: int
    pieces_before: int
    kept: list[int]
    tokenizer: Any
    same: int  # corpus texts that encode to the same pieces as before


@dataclass
class _Comparison:
    """The corpus sample as both tokenizers batch it, and the trimmed model's outputs against the untrimmed one's."""

    sample: list[str]
    batch_size: int
    max_length: int
    old_batches: list[dict[str, Any]]
    new_batches: list[dict[str, Any]]
    after: list[dict[str, Any]]
    differences: dict[str, float]
    worst: float


@dataclass
class _Costs:
    """Parameters of both models and their CPU time on the sample's batches."""

    parameters_before: int
    parameters_after: int
    tokens: int
    seconds_before: float
    seconds_after: float


def trim_vocabulary(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    texts: Iterable[str],
    *,
    overwrite: bool = False,
    sample_size: int = 200,
    batch_size: int = 32,
    repeats: int = 3,
    tolerance: float = DEFAULT_TOLERANCE,
    cjk_characters: bool = False,
) -> TrimReport:
    """Write `checkpoint` with only the vocabulary `texts` use into `output_dir`; returns the report (also in
    `trim_report.json`). Refused, with nothing written, when a text would encode to other pieces or the outputs on
    the sample differ by more than `tolerance`. `cjk_characters`: split every CJK character into a piece of its own
    first (`split_cjk_characters`), for character tagging."""
    source = _read_source(checkpoint, output_dir, texts, overwrite=overwrite, cjk_characters=cjk_characters)
    vocabulary = _trim_tokenizer(source, generic=cjk_characters)
    model_class = _model_class(source.saved, source.spec)
    original, model = _load_and_trim(model_class, source.spec, vocabulary)
    saved_dtype = _saved_dtype(source.config)
    comparison = _compare_outputs(
        source, vocabulary, original, model, sample_size=sample_size, batch_size=batch_size, tolerance=tolerance
    )
    costs = _measure_costs(original, model, comparison, repeats)
    del original

    with no_space_is_an_error(output_dir), OutputFolder(output_dir, overwrite=overwrite) as out:
        model.to(saved_dtype).save_pretrained(out.path)
        vocabulary.tokenizer.save_pretrained(out.path)
        _keep_sentence_files(source.spec, out.path)
        reloaded_gap = _check_reloaded(out.path, model_class, vocabulary, comparison, tolerance)
        report = TrimReport(
            output_dir=str(Path(output_dir)),
            source=source.spec,
            tokenizer_model=source.kind,
            pieces_before=vocabulary.pieces_before,
            pieces_after=len(vocabulary.kept),
            parameters_before=costs.parameters_before,
            parameters_after=costs.parameters_after,
            file_bytes_before=_weight_bytes(source.spec),
            file_bytes_after=_weight_bytes(str(out.path)),
            texts=len(source.texts),
            texts_same_pieces=vocabulary.same,
            texts_compared=len(comparison.sample),
            tolerance=tolerance,
            max_abs_difference=comparison.differences,
            reloaded_max_abs_difference=reloaded_gap,
            batch_size=batch_size,
            ms_per_batch_before=1000 * costs.seconds_before / len(comparison.old_batches),
            ms_per_batch_after=1000 * costs.seconds_after / len(comparison.new_batches),
            tokens_per_s_before=costs.tokens / costs.seconds_before,
            tokens_per_s_after=costs.tokens / costs.seconds_after,
            split_cjk_characters=cjk_characters,
        )
        (out.path / "trim_report.json").write_text(report.to_json(), encoding="utf-8")
        (out.path / "README.md").write_text(_model_card(report), encoding="utf-8")
        out.commit()
    _log_trimmed(report, comparison.worst)
    return report


def _read_source(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    texts: Iterable[str],
    *,
    overwrite: bool,
    cjk_characters: bool,
) -> _Source:
    """The checkpoint's config and tokenizer (CJK characters split when asked) and the corpus' texts; refused, before
    the model is loaded, for an empty corpus, an output folder in the way, or a tokenizer trimming cannot handle."""
    spec = resolve_checkpoint(checkpoint, what="checkpoint")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise TrimError("the corpus holds no text: nothing to decide which pieces to keep")
    check_output_folder(output_dir, inputs=[spec], overwrite=overwrite)
    saved = read_config_file(spec) if Path(spec).is_dir() else {}
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(spec, trust_remote_code=False)
    if not saved:
        saved = config.to_dict()
    tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=False)
    if cjk_characters:
        split_cjk_characters(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    data = json.loads(backend.to_str()) if backend is not None else {}
    kind = (data.get("model") or {}).get("type")
    if kind not in TOKENIZER_MODELS:
        raise TrimError(
            f"{spec}'s tokenizer is a {kind or type(tokenizer).__name__} model; trimming handles a `tokenizers` "
            f"{', '.join(TOKENIZER_MODELS)} model (tokenizer.json)"
        )
    return _Source(spec, texts, saved, config, tokenizer, data, kind)


def _trim_tokenizer(source: _Source, *, generic: bool) -> _Vocabulary:
    """The ids the corpus needs and the tokenizer trimmed to them (written to a scratch folder and loaded back),
    refused unless every corpus text encodes to the same pieces as before."""
    size = int(source.config.vocab_size)
    pieces_before = len(_vocab_list(source.data["model"]))
    encoded = source.tokenizer(source.texts, add_special_tokens=True, verbose=False)["input_ids"]
    kept = _kept_ids(source.tokenizer, source.data, (i for ids in encoded for i in ids), source.config)
    if kept[-1] >= size:
        raise TrimError(f"{source.spec}'s tokenizer gives id {kept[-1]}, outside the model's vocabulary ({size})")
    remap = {old: new for new, old in enumerate(kept)}
    new_data = trimmed_tokenizer_json(source.data, kept)

    with tempfile.TemporaryDirectory(prefix="sora-hf-trim-") as scratch:
        trimmed_tokenizer = _write_tokenizer(source.tokenizer, new_data, remap, Path(scratch), generic=generic)
        same = _check_same_pieces(source, trimmed_tokenizer, encoded, kept, remap)
    return _Vocabulary(size, pieces_before, kept, trimmed_tokenizer, same)


def _check_same_pieces(
    source: _Source, trimmed_tokenizer: Any, encoded: list[list[int]], kept: list[int], remap: dict[int, int]
) -> int:
    """Refuse a trimmed tokenizer that numbers the kept pieces otherwise or encodes a corpus text to other pieces;
    the number of texts that encode the same (all of them)."""
    texts = source.texts
    if len(trimmed_tokenizer) != len(kept):
        raise TrimError(f"the trimmed tokenizer has {len(trimmed_tokenizer)} tokens, not the {len(kept)} kept")
    old_pieces = source.tokenizer.convert_ids_to_tokens(kept)
    if trimmed_tokenizer.convert_ids_to_tokens(list(range(len(kept)))) != old_pieces:
        raise TrimError("the trimmed tokenizer numbers its pieces differently from the kept order")
    new_encoded = trimmed_tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    same = sum(1 for old, new in zip(encoded, new_encoded, strict=True) if _remapped(old, remap) == new)
    if same != len(texts):
        first = next(i for i, (o, n) in enumerate(zip(encoded, new_encoded, strict=True)) if _remapped(o, remap) != n)
        raise TrimError(
            f"{len(texts) - same} of {len(texts)} corpus texts encode to other pieces after trimming (the first: "
            f"text {first}, {texts[first][:40]!r}); nothing was written"
        )
    return same


def _load_and_trim(model_class: Any, spec: str, vocabulary: _Vocabulary) -> tuple[Any, Any]:
    """The untrimmed model in float32 (what the trimmed one is compared with) and a copy trimmed to the kept ids."""
    import torch

    with _quiet_loading():
        original = load_checked(model_class, spec, heads="complete", expected_model_type=None, dtype=torch.float32)
    original.eval()
    model = copy.deepcopy(original)
    _trim_model(model, vocabulary.kept, vocabulary.size)
    model.eval()
    return original, model


def _compare_outputs(
    source: _Source,
    vocabulary: _Vocabulary,
    original: Any,
    model: Any,
    *,
    sample_size: int,
    batch_size: int,
    tolerance: float,
) -> _Comparison:
    """Both models' outputs on a sample of the corpus, refused unless the batches hold the same ids and the outputs
    agree within `tolerance`."""
    import torch

    sample = _sample(source.texts, sample_size)
    max_length = _max_length(source.config, source.tokenizer)
    old_batches = _batches(source.tokenizer, sample, batch_size, max_length)
    new_batches = _batches(vocabulary.tokenizer, sample, batch_size, max_length)
    index = torch.tensor(vocabulary.kept, dtype=torch.long)
    for old, new in zip(old_batches, new_batches, strict=True):
        if not torch.equal(index[new["input_ids"]], old["input_ids"]):
            raise TrimError("the sample's padded batches differ in their ids after trimming; nothing was written")
    before = _run(original, old_batches)
    after = _run(model, new_batches)
    differences = _differences(before, after, index, vocabulary.size)
    worst = max(differences.values(), default=float("inf"))
    if not differences or not worst <= tolerance:
        raise TrimError(
            f"the trimmed model's outputs differ from {source.spec}'s by more than {tolerance:g} on the corpus sample "
            f"({', '.join(f'{k}: {v:.3g}' for k, v in differences.items()) or 'nothing compared'}); nothing was "
            "written"
        )
    return _Comparison(sample, batch_size, max_length, old_batches, new_batches, after, differences, worst)


def _measure_costs(original: Any, model: Any, comparison: _Comparison, repeats: int) -> _Costs:
    """Time both models on the sample's batches (the report's speed-up) and count their parameters."""
    tokens = sum(int(batch["attention_mask"].sum()) for batch in comparison.old_batches)
    seconds_before = _time(original, comparison.old_batches, repeats)
    seconds_after = _time(model, comparison.new_batches, repeats)
    return _Costs(_parameters(original), _parameters(model), tokens, seconds_before, seconds_after)


def _check_reloaded(
    folder: Path, model_class: Any, vocabulary: _Vocabulary, comparison: _Comparison, tolerance: float
) -> float:
    """Reload the saved model and tokenizer as a user will and compare them once more on the sample's first batch;
    the largest difference."""
    import torch
    from transformers import AutoTokenizer

    with _quiet_loading():
        reloaded = load_checked(model_class, folder, heads="complete", expected_model_type=None, dtype=torch.float32)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    batch_size = comparison.batch_size
    check = _batches(reloaded_tokenizer, comparison.sample[:batch_size], batch_size, comparison.max_length)
    if not torch.equal(check[0]["input_ids"], comparison.new_batches[0]["input_ids"]):
        raise TrimError("the saved tokenizer encodes the sample otherwise once reloaded; nothing was written")
    kept = vocabulary.kept
    again = _differences(_run(reloaded.eval(), check), comparison.after[:1], torch.arange(len(kept)), len(kept))
    reloaded_gap = max(again.values(), default=float("inf"))
    if not reloaded_gap <= tolerance:
        raise TrimError(f"the saved trimmed model differs once reloaded ({again}); nothing was written")
    return reloaded_gap


def _log_trimmed(report: TrimReport, worst: float) -> None:
    """One line of what was trimmed, checked and measured."""
    logger.info(
        "trimmed %s: %d -> %d pieces, %d -> %d parameters, %d -> %d weight bytes; %d corpus texts encode to the same "
        "pieces; outputs on %d texts within %.3g; %.1f -> %.1f ms per batch of %d (CPU)",
        report.source,
        report.pieces_before,
        report.pieces_after,
        report.parameters_before,
        report.parameters_after,
        report.file_bytes_before,
        report.file_bytes_after,
        report.texts_same_pieces,
        report.texts_compared,
        worst,
        report.ms_per_batch_before,
        report.ms_per_batch_after,
        report.batch_size,
    )


def _keep_sentence_files(spec: str, folder: Path) -> None:
    """A sentence-transformers checkpoint keeps its modules (pooling, normalisation) beside the trimmed model."""
    source = Path(spec)
    if not source.is_dir():
        return
    for path in source.iterdir():
        if path.name in _SENTENCE_FILES and path.is_file():
            shutil.copy2(path, folder / path.name)
        elif path.is_dir() and _MODULE_FOLDER.match(path.name):
            shutil.copytree(path, folder / path.name, dirs_exist_ok=True)


def _model_card(report: TrimReport) -> str:
    name = Path(report.source).name if Path(report.source).is_dir() else report.source
    return (
        f"# {name}, vocabulary trimmed\n\n"
        f"Written by `sora-hf trim-vocab` from `{report.source}`: {report.pieces_before} -> {report.pieces_after} "
        f"vocabulary pieces, {report.parameters_before:,} -> {report.parameters_after:,} parameters.\n\n"
        + (
            "The tokenizer gives every CJK character a piece of its own (as BERT's Chinese tokenizers do), for "
            "tagging characters; the source's tokenizer joins several into one piece.\n\n"
            if report.split_cjk_characters
            else ""
        )
        + f"All {report.texts} corpus texts encode to the same pieces as before; on {report.texts_compared} of them the "
        f"outputs equal the untrimmed model's within {report.tolerance:g} (`trim_report.json`).\n\n"
        f"Texts outside the corpus still encode, but a character or piece the trimmed vocabulary lacks becomes the "
        "unknown token: check the model on your own texts before use.\n"
    )


__all__ = [
    "TrimError",
    "TrimReport",
    "corpus_texts",
    "embedded_task_texts",
    "split_cjk_characters",
    "trim_vocabulary",
]
