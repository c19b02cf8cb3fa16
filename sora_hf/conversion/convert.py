"""`convert`: a transformers checkpoint (a folder, or a Hub id where the network is allowed) or a GGUF file
(llama.cpp's format, read and dequantised by transformers' own GGUF loader) into a Sora checkpoint with the same outputs, its tokenizer, generation config, a model card naming the source and its licence, and
`parity.json`. Refused before anything is written: an unsupported architecture or option, an output folder that
holds files (without `overwrite`), a source whose config.json does not describe its weights (its `architectures`
name another source's class; weights with no place in the model its `model_type` builds, parameters of that model
not in the weights beyond what the head table allows, other sizes), damaged or pickled weights, and a converted model
whose outputs differ from the source's by more than `tolerance`. Parity is measured against the source as its own
transformers class loads it, once that load is known to have taken every weight. No custom code of the source's runs
(`trust_remote_code=False`), so nothing is ever asked on the terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..auto.heads import convert_heads
from ..folders.checkpoints import check_weight_files, read_config_file, resolve_checkpoint
from ..folders.outputs import OutputFolder, check_output_folder, is_disk_full
from .parity import ParityReport, compare_causal_lms, compare_encoders
from .sources import (
    ConversionError,
    Head,
    Source,
    check_architectures,
    check_saved_config,
    encoder_key,
    named_like,
    sora_options,
    source_of,
)

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-5


@dataclass
class Conversion:
    """What `convert` wrote."""

    output_dir: Path
    source: str
    model_type: str
    head: Head
    parity: ParityReport
    licence: str | None


HEAD_CLASSES = convert_heads()  # `--head` name -> Sora class (heads.HEADS)
# what the source must have been saved with for a head to carry trained weights (others get a new head)
TRAINED_HEAD_PREFIXES = {"causal-lm": ("lm_head.",), "masked-lm": ("cls.predictions.", "lm_head.")}


def convert(
    source: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    head: Head | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
    gguf_file: str | None = None,
) -> Conversion:
    """Convert `source` into a Sora checkpoint at `output_dir`; returns what was written (and measured).

    `source` may be a `.gguf` file, or a folder with `gguf_file` naming one in it: config, tokenizer and weights come
    from the GGUF file (dequantised to float32, which parity is measured against).

    `head`: decoders become `causal-lm`; encoders `masked-lm` (when the source has its MLM head),
    `sentence-embedding` (the default for a sentence-transformers folder: pooling as its config says), or a new
    `sequence-classification` / `token-classification` head to fine-tune."""
    spec, gguf_file, config, found = _read_source_config(source, gguf_file)
    loading = {"gguf_file": gguf_file} if gguf_file else {}
    sentence = None if gguf_file else _sentence_transformers_modules(spec)
    head = _chosen_head(head, found, sentence)
    tokenizer = _tokenizer(spec, **loading)
    options = sora_options(config, tokenizer)
    if head == "sentence-embedding":
        options["classifier_pooling"] = _pooling(spec, sentence)
    check_output_folder(output_dir, inputs=[Path(spec) / gguf_file if gguf_file else spec], overwrite=overwrite)

    saved_dtype = _saved_dtype(config)  # a GGUF file's: float32, as dequantised
    with _reading_gguf(spec, gguf_file):
        source_model = _load_source(spec, head, found, **loading)
    model = _sora_model(spec, source_model, head, found, options)
    parity = _checked_parity(spec, source_model, model, tokenizer, head, tolerance)
    licence = _gguf_licence(Path(spec) / gguf_file) if gguf_file else _licence(spec)
    name = f"{Path(spec) / gguf_file}" if gguf_file else spec
    with no_space_is_an_error(output_dir), OutputFolder(output_dir, overwrite=overwrite) as out:
        if head == "causal-lm":
            model.generation_config = source_model.generation_config
        model.to(saved_dtype).save_pretrained(out.path)
        if tokenizer is not None:
            tokenizer.save_pretrained(out.path)
        if sentence and head == "sentence-embedding":
            _keep_sentence_modules(out.path, sentence, spec)
        (out.path / "parity.json").write_text(parity.to_json(), encoding="utf-8")
        (out.path / "README.md").write_text(_model_card(name, found.model_type, head, parity, licence), "utf-8")
        target = out.commit()
    logger.info("converted %s (%s) into %s", name, found.model_type, target)
    return Conversion(target, name, found.model_type, head, parity, licence)


def _read_source_config(source: str | os.PathLike[str], gguf_file: str | None) -> tuple[str, str | None, Any, Source]:
    """(folder or Hub id, GGUF file name, transformers config, Sora source entry) for `source`, with its saved config
    checked before transformers reads it (a GGUF file's config comes from the file)."""
    from transformers import AutoConfig

    spec, gguf_file = gguf_source(source, gguf_file)
    if gguf_file:
        with _reading_gguf(spec, gguf_file):
            config = AutoConfig.from_pretrained(spec, gguf_file=gguf_file)
        saved = config.to_dict()
        found = source_of(saved.get("model_type"))
    else:
        spec = resolve_checkpoint(source, what="source")
        saved = saved_config(spec)  # read as a file: no code of the source's runs, nothing is asked on a terminal
        found = source_of(saved.get("model_type"))
        check_saved_config(saved)
        check_architectures(saved, where=_config_file(spec))
        if Path(spec).is_dir():
            check_weight_files(spec)  # truncated or damaged weights: named here, not a safetensors traceback
        config = AutoConfig.from_pretrained(spec, trust_remote_code=False)
    return spec, gguf_file, config, found


def _chosen_head(head: Head | None, found: Source, sentence: list[dict] | None) -> Head:
    """The head asked for, or the source's default (sentence embeddings for a sentence-transformers folder)."""
    head = head or ("sentence-embedding" if sentence and "sentence-embedding" in found.heads else found.heads[0])
    if head not in found.heads:
        raise ConversionError(f"a {found.model_type} checkpoint converts to {', '.join(found.heads)}, not {head!r}")
    return head


def _saved_dtype(config: Any) -> Any:
    """The torch dtype the checkpoint is written in: the source's (float32 when its config names none)."""
    import torch

    saved_dtype = getattr(config, "dtype", None) or torch.float32
    return getattr(torch, saved_dtype) if isinstance(saved_dtype, str) else saved_dtype


def _sora_model(spec: str, source_model: Any, head: Head, found: Source, options: dict[str, Any]) -> Any:
    """The Sora `head` model holding the source's weights, refused when they do not fit it."""
    from .. import modeling_sora
    from ..configuration_sora import SoraConfig

    state = source_model.state_dict()
    trained = TRAINED_HEAD_PREFIXES.get(head)
    model = getattr(modeling_sora, HEAD_CLASSES[head])(SoraConfig(**options)).eval()
    if found.family == "encoder":
        renamed = {encoder_key(key): value for key, value in state.items()}
        state = {key: value for key, value in renamed.items() if key is not None}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if not trained:  # a new head (classification, token tagging) starts untrained; the body must be complete
        missing = [key for key in missing if key.startswith(f"{model.base_model_prefix}.")]
    if missing or unexpected:
        raise ConversionError(
            f"{spec}'s weights do not fit {type(model).__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model


def _checked_parity(
    spec: str, source_model: Any, model: Any, tokenizer: Any, head: Head, tolerance: float
) -> ParityReport:
    """The converted model's outputs against the source's, refused (nothing written) beyond `tolerance`."""
    if head == "causal-lm":
        parity = compare_causal_lms(source_model, model, tokenizer, tolerance)
    else:
        parity = compare_encoders(source_model, model, tokenizer, tolerance, head)
    if not parity.passed:
        raise ConversionError(
            f"the converted model differs from {spec} by more than {tolerance:g} (largest absolute differences: "
            f"{parity.figures()}); nothing was written"
        )
    return parity


def gguf_source(source: str | os.PathLike[str], gguf_file: str | None) -> tuple[str, str | None]:
    """(folder, GGUF file name) for a `.gguf` path or a folder plus `gguf_file`; (source, None) for the rest.
    A GGUF file that is not there is named here, before transformers looks for it on the Hub."""
    path = Path(os.fspath(source)).expanduser()
    if gguf_file is None and path.suffix.lower() == ".gguf":
        path, gguf_file = path.parent, path.name
    if gguf_file is None:
        return os.fspath(source), None
    if not (path / gguf_file).is_file():
        near = sorted(p.name for p in path.glob("*.gguf"))[:8] if path.is_dir() else []
        listed = f" ({path} holds: {', '.join(near)})" if near else f" ({path} holds no .gguf file)"
        raise FileNotFoundError(f"GGUF file {path / gguf_file}: no such file{listed}")
    return str(path), gguf_file


@contextlib.contextmanager
def _reading_gguf(folder: str, gguf_file: str | None) -> Iterator[None]:
    """transformers' GGUF errors, said as what to do: the `gguf` package missing, a file it cannot parse."""
    if gguf_file is None:
        yield
        return
    from transformers.utils import is_gguf_available

    if not is_gguf_available():
        raise ConversionError(
            f"reading {gguf_file} needs the gguf package (transformers' GGUF loader): pip install 'sora-hf[gguf]'"
        )
    try:
        yield
    except ConversionError:
        raise
    except (ValueError, KeyError, OSError, IndexError) as error:
        raise ConversionError(
            f"{Path(folder) / gguf_file} is not a GGUF file transformers can read ({type(error).__name__}: "
            f"{error}); a GGUF of a Llama, Mistral, Qwen2 or Qwen3 model, written whole by llama.cpp, converts"
        ) from None


def saved_config(spec: str) -> dict[str, Any]:
    """The checkpoint's config.json as saved (a local folder's, or the Hub repo's), before transformers reads it:
    what it names is checked first, and an unknown model_type never reaches transformers' remote-code prompt."""
    if Path(spec).is_dir():
        return read_config_file(spec)
    from transformers import PretrainedConfig

    saved, _ = PretrainedConfig.get_config_dict(spec)
    if "model_type" not in saved:
        raise ConversionError(f"{spec}'s config.json names no model_type: not a transformers config")
    return saved


def _config_file(spec: str) -> str:
    return str(Path(spec) / "config.json") if Path(spec).is_dir() else f"{spec}'s config.json"


# weights a source may hold that a Sora head does not take, and the parameters its transformers class may lack in
# the checkpoint (BERT's next-sentence pooler: Sora's pooled heads have their own); after the base model's prefix
_UNUSED_ENCODER_WEIGHTS = ("pooler.", "cls.", "lm_head.", "classifier.", "qa_outputs.")
_UNUSED_BY_MASKED_LM = ("pooler.", "cls.seq_relationship.", "classifier.", "qa_outputs.")


def _load_source(spec: str, head: Head, found: Source, **loading: Any):
    """The source in float32, as its own transformers class loads it, refused unless the checkpoint's weights are
    that model's: none of a different size, none without a place in it, and none of its parameters left to random
    initialisation (beyond what `head` drops or does not use). Parity is measured against this model."""
    model, info = _from_pretrained(spec, head, **loading)
    model.eval()
    _check_sizes(spec, info)
    _warn_dropped_head(spec, head, info)
    missing = _check_body_weights(spec, head, found, model, info)
    if missing:  # the head alone: transformers gave the source a random one, so there is nothing to convert
        raise _without_head(spec, head, found, model)
    return model


def _from_pretrained(spec: str, head: Head, **loading: Any) -> tuple[Any, dict[str, Any]]:
    """The source's own transformers class for `head`, loaded in float32 with its loading info; pickles that hold
    more than tensors and unreadable safetensors refused."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    auto = {"causal-lm": AutoModelForCausalLM, "masked-lm": AutoModelForMaskedLM}.get(head, AutoModel)
    try:
        with _quiet_loading():
            return auto.from_pretrained(
                spec,
                dtype=torch.float32,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
                trust_remote_code=False,
                **loading,
            )
    except pickle.UnpicklingError:
        pickled = next((p for p in sorted(Path(spec).glob("*.bin"))), None) if Path(spec).is_dir() else None
        raise ConversionError(
            f"refused to load {pickled or f'the weights of {spec}'}: the pickle holds objects other than tensors, and "
            "unpickling it could run code; nothing was loaded. Convert a copy saved as safetensors by someone you "
            "trust"
        ) from None
    except Exception as error:  # a Hub download that is not whole (a local folder's files were checked before)
        if type(error).__name__ != "SafetensorError":
            raise
        raise ConversionError(f"the weights of {spec} are not a readable safetensors file ({error})") from None


def _check_sizes(spec: str, info: dict[str, Any]) -> None:
    """Refuse weights whose sizes are not the config's (transformers would give them new random values)."""
    mismatched = sorted(info.get("mismatched_keys") or [], key=str)
    if mismatched:
        name, in_weights, by_config = (list(mismatched[0]) + [None, None])[:3]
        raise ConversionError(
            f"{_config_file(spec)} gives sizes the weights do not have: {len(mismatched)} weights differ, e.g. {name} "
            f"is {_shape(in_weights)} in the weights and {_shape(by_config)} by the config. Put back the config.json "
            "the model was saved with (hidden_size, intermediate_size, vocab_size...) and convert again"
        )


def _warn_dropped_head(spec: str, head: Head, info: dict[str, Any]) -> None:
    """A trained task head in the source is not converted: say so, as the Sora head starts new."""
    dropped = sorted(k for k in info.get("unexpected_keys") or [] if k.startswith(("classifier.", "qa_outputs.")))
    if dropped and head != "masked-lm":
        logger.warning(
            "%s holds a trained task head (%s...) that is not converted: the Sora %s head starts new, to fine-tune",
            spec,
            dropped[0],
            head,
        )


def _check_body_weights(spec: str, head: Head, found: Source, model: Any, info: dict[str, Any]) -> list[str]:
    """Refuse weights with no place in the model and body parameters the weights lack (config.json describes other
    weights); returns the parameters missing from the weights, which are then the head's alone."""
    prefix = f"{model.base_model_prefix}."
    unused = _UNUSED_BY_MASKED_LM if head == "masked-lm" else _UNUSED_ENCODER_WEIGHTS
    unused = unused if found.family == "encoder" else ()
    unexpected = sorted(
        key
        for key in info.get("unexpected_keys") or []
        if not key.removeprefix(prefix).startswith(unused) and not key.endswith("rotary_emb.inv_freq")
    )
    may_be_missing = ("pooler.",) if found.family == "encoder" else ()
    missing = sorted(
        k for k in info.get("missing_keys") or [] if not k.removeprefix(prefix).startswith(may_be_missing)
    )
    head_weights = TRAINED_HEAD_PREFIXES.get(head, ())
    body = [key for key in missing if not (head_weights and key.startswith(head_weights))]
    if unexpected or body:
        like = named_like(unexpected)
        raise ConversionError(
            f"{spec}'s weights are not a {found.model_type} model's ({type(model).__name__}): "
            f"{len(unexpected)} have no place in it{f' (e.g. {unexpected[0]})' if unexpected else ''} and "
            f"{len(body)} of its parameters are not in the weights{f' (e.g. {body[0]})' if body else ''}"
            f"{f'; the names are those of {like}' if like else ''}. {_config_file(spec)} does not describe these "
            "weights: put back the config.json they were saved with (its model_type and architectures) and convert "
            "again"
        )
    return missing


def _without_head(spec: str, head: Head, found: Source, model: Any) -> ConversionError:
    """The refusal of a source saved without the `head` it converts with, naming the heads it converts to instead."""
    others = [h for h in found.heads if h not in TRAINED_HEAD_PREFIXES]
    saved_as = ", ".join(getattr(model.config, "architectures", None) or []) or "another class"
    advice = (
        f"convert it with --head {others[0]} instead" + (f" (or --head {' / '.join(others[1:])})" * (len(others) > 1))
        if others
        else f"a {found.model_type} checkpoint converts only with its language-model head: convert the "
        f"checkpoint it came from, saved with its {head} head ({type(model).__name__})"
    )
    return ConversionError(f"{spec} was saved without its {head} head ({saved_as}); {advice}")


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """transformers' load report (a table of every unexpected and missing weight, on stderr) says less than the one
    line `_load_source` writes from the same loading info; it is kept at `-v` (INFO). Progress bars only where
    stderr is a terminal."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    if verbosity > logging.INFO:
        transformers_logging.set_verbosity_error()
    if bars and not sys.stderr.isatty():
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def _shape(shape: Any) -> str:
    return str(list(shape)) if shape is not None else "another shape"


@contextlib.contextmanager
def no_space_is_an_error(output_dir: str | os.PathLike[str]) -> Iterator[None]:
    """A full disk while writing: one line naming the folder; `OutputFolder` has removed the half-written staging
    folder by then, and an earlier output (when replacing one) is left as it was. What counts as a full disk is
    `outputs.is_disk_full`'s rule, the runs' own (ENOSPC, a quota, torch's write failure on a full disk)."""
    where = Path(output_dir).expanduser().absolute().parent
    try:
        yield
    except Exception as error:
        if not is_disk_full(error, where):
            raise
        kept = f"; {output_dir} was left as it was" if Path(output_dir).exists() else ""
        raise ConversionError(
            f"no space left on {where} while writing {output_dir}: nothing was written{kept}. Free some space (the "
            "output takes about the size of the model's weights) or choose a folder on another disk"
        ) from None


def _sentence_transformers_modules(spec: str) -> list[dict] | None:
    """The source's `modules.json` (a sentence-transformers folder), if it has one."""
    path = Path(spec) / "modules.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _pooling(spec: str, modules: list[dict] | None) -> str:
    """Sora's `classifier_pooling` for the source's sentence-transformers `Pooling` (mean when there is none)."""
    pooling = next((m for m in modules or [] if m.get("type", "").endswith("Pooling")), None)
    if pooling is None:
        return "mean"
    settings = json.loads((Path(spec) / pooling["path"] / "config.json").read_text(encoding="utf-8"))
    modes = [key for key, value in settings.items() if key.startswith("pooling_mode_") and value is True]
    chosen = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last"}
    if len(modes) != 1 or modes[0] not in chosen:
        raise ConversionError(f"{spec} pools with {modes}; Sora pools with one of mean, cls or last token")
    return chosen[modes[0]]


def _keep_sentence_modules(folder: Path, modules: list[dict], spec: str) -> None:
    """The Sora module first (it pools), then the source's modules after its Transformer and Pooling (Normalize,
    Dense...), so that sentence-transformers gives the source's vectors; and the source's prompts (E5's `query: ` /
    `passage: `) with its `config_sentence_transformers.json`, which `encode(..., prompt_name=...)` reads."""
    settings = Path(spec) / "config_sentence_transformers.json"
    if settings.is_file():
        (folder / settings.name).write_bytes(settings.read_bytes())
    written = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    after = [m for m in modules if not m.get("type", "").endswith(("Transformer", "Pooling"))]
    for index, module in enumerate(after, start=1):
        written.append({**module, "idx": index})
        (folder / module["path"]).mkdir(parents=True, exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(written, indent=2), encoding="utf-8")


def _tokenizer(spec: str, **loading: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec, trust_remote_code=False, **loading)
    except (OSError, ValueError) as error:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        logger.warning("%s has no tokenizer that loads (%s); the checkpoint is written without one", spec, first)
        return None


def _licence(spec: str) -> str | None:
    """The source's licence, from its model card's metadata (a local README.md, or the Hub's card)."""
    card = Path(spec) / "README.md"
    if card.is_file():
        match = re.search(r"^---\n(.*?)\n---", card.read_text(encoding="utf-8"), re.S)
        found = match and re.search(r"^license:\s*(\S+)", match.group(1), re.M)
        return found.group(1) if found else None
    if Path(spec).is_dir():
        return None
    try:
        from huggingface_hub import model_info

        return (model_info(spec).card_data or {}).get("license")
    except Exception:  # offline, gated, or no card: the card says the licence is unknown
        return None


def _gguf_licence(path: Path) -> str | None:
    """The licence a GGUF file's metadata states (`general.license`, as llama.cpp's converter writes it)."""
    from gguf import GGUFReader

    field = GGUFReader(path).get_field("general.license")
    return bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None and field.data else None


def _model_card(spec: str, model_type: str, head: Head, parity: ParityReport, licence: str | None) -> str:
    name = Path(spec).name if Path(spec).exists() else spec
    front = f"---\nlicense: {licence}\nlibrary_name: transformers\ntags:\n- sora\n---\n" if licence else ""
    return (
        f"{front}# Sora {head} converted from {name}\n\n"
        f"Converted with `sora-hf convert` from `{spec}` ({model_type}); licence: "
        f"{licence or 'not stated by the source: check its terms before use'}.\n\n"
        "Parity with the source, measured before writing (`parity.json`), largest absolute differences: "
        f"{parity.figures()}.\n\n"
        f"Loads as `{HEAD_CLASSES[head]}` through its Auto class after `import sora_hf`, or with "
        "`trust_remote_code=True` where sora_hf is not installed.\n"
    )


__all__ = ["DEFAULT_TOLERANCE", "Conversion", "convert", "gguf_source", "no_space_is_an_error", "saved_config"]
