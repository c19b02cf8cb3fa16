"""What the server accepts per pipeline task: the input shape, the request parameters a client may set, and the
keyword arguments the server always passes.

One table (`TASKS`) instead of per-task branches in the app, so adding a task is one entry. Parameters are an
allow-list because transformers' pipelines silently forward unknown keywords to the tokenizer (a misspelt `top_k`
would be ignored, not refused) and because some keywords (`batch_size`, `num_workers`, `device`) belong to the
server, not to a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..auto.heads import HEADS
from ..pipelines._utils import is_blank
from .errors import RequestError
from .schemas import (
    FillMaskParameters,
    GenerationParameters,
    NoParameters,
    QuestionAnsweringParameters,
    TextClassificationParameters,
    TextGenerationParameters,
    TokenClassificationParameters,
    TranslationParameters,
)

TEXT, QUESTION_ANSWERING, SIMILARITY = "text", "question-answering", "sentence-similarity"


@dataclass(frozen=True)
class TaskSpec:
    """How one pipeline task is served.

    `input_kind` is the shape of one item: a string (`"text"`), a `{question, context}` object or a
    `{source_sentence, sentences}` object. `parameter_model` types and bounds the keywords a request may pass to the
    pipeline (`parameters`: their names).
    `truncate` says whether the server passes tokenizer truncation to the model's limit (so an overlong text is cut,
    as in training, instead of running past the position table); `truncation_key` names the pipeline keyword that
    carries tokenizer arguments (None: the pipeline takes `truncation`/`max_length` directly).
    """

    name: str
    input_kind: str = TEXT
    parameter_model: type[BaseModel] = NoParameters
    truncate: bool = False
    truncation_key: str | None = None

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(self.parameter_model.model_fields)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("text-classification", parameter_model=TextClassificationParameters, truncate=True),
        TaskSpec("token-classification", parameter_model=TokenClassificationParameters),
        TaskSpec("fill-mask", parameter_model=FillMaskParameters, truncate=True, truncation_key="tokenizer_kwargs"),
        TaskSpec("feature-extraction", truncate=True, truncation_key="tokenize_kwargs"),
        TaskSpec("text-generation", parameter_model=TextGenerationParameters),
        TaskSpec("text2text-generation", parameter_model=GenerationParameters),
        TaskSpec("summarization", parameter_model=GenerationParameters),
        TaskSpec("translation", parameter_model=TranslationParameters),
        TaskSpec("question-answering", input_kind=QUESTION_ANSWERING, parameter_model=QuestionAnsweringParameters),
        TaskSpec("sentence-similarity", input_kind=SIMILARITY),
    )
}

# The pipeline task for a checkpoint's head, by the suffix of `config.architectures[0]`; the longest match wins
# (`ForPreTraining` has no pipeline, so it is refused with a message rather than guessed). Sora's heads give the
# suffixes (`heads.HEADS`: `SoraForMaskedLM` -> `ForMaskedLM`, `SoraModel` -> `Model`), which other families share;
# `ForConditionalGeneration` is the other families' name for a sequence-to-sequence head.
_OTHER_ARCHITECTURE_SUFFIXES = {"ForConditionalGeneration": "text2text-generation"}
_ARCHITECTURE_SUFFIXES = {
    **{row.name.removeprefix("Sora"): row.pipeline_task for row in HEADS if row.pipeline_task is not None},
    **_OTHER_ARCHITECTURE_SUFFIXES,
}


def check_task(task: str) -> TaskSpec:
    """The spec of `task`, or a ValueError that lists the served tasks."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} cannot be served; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[task]


def infer_task(config: Any) -> str:
    """The pipeline task for a checkpoint, from `config.architectures` (what `save_pretrained` wrote)."""
    architectures = list(getattr(config, "architectures", None) or [])
    if not architectures:
        raise ValueError("the checkpoint's config names no `architectures`: pass the task explicitly (--task ...)")
    architecture = architectures[0]
    matches = [suffix for suffix in _ARCHITECTURE_SUFFIXES if architecture.endswith(suffix)]
    if not matches:
        raise ValueError(
            f"no pipeline task is known for architecture {architecture!r}: pass the task explicitly (--task ...); "
            f"servable tasks: {', '.join(sorted(TASKS))}"
        )
    return _ARCHITECTURE_SUFFIXES[max(matches, key=len)]


def item_texts(item: Any) -> list[str]:
    """Every string in one input item (what the size limits apply to)."""
    if isinstance(item, str):
        return [item]
    if isinstance(item, dict) and "question" in item:
        return [item["question"], item["context"]]
    return [item["source_sentence"], *item["sentences"]]


def item_kind(item: Any) -> str:
    if isinstance(item, str):
        return TEXT
    return QUESTION_ANSWERING if "question" in item else SIMILARITY


def check_items(spec: TaskSpec, items: list[Any], max_texts: int, max_chars: int, mask_token: str | None) -> None:
    """Refuse, with a message naming the item and the limit, what the pipeline would fail on or should not run.

    Called before queueing, so a bad request never reaches a batch shared with other requests.
    """
    if not items:
        raise RequestError(422, "inputs is empty: send at least one input")
    kinds = {item_kind(item) for item in items}
    if kinds != {spec.input_kind}:
        wanted = {
            TEXT: "a string or a list of strings",
            QUESTION_ANSWERING: 'a {"question": ..., "context": ...} object or a list of them',
            SIMILARITY: 'a {"source_sentence": ..., "sentences": [...]} object or a list of them',
        }[spec.input_kind]
        raise RequestError(422, f"task {spec.name} takes {wanted} as inputs; got {', '.join(sorted(kinds))} inputs")
    n_texts = sum(len(item_texts(item)) for item in items)
    if n_texts > max_texts:
        raise RequestError(413, f"the request has {n_texts} texts; the limit is max_texts_per_request={max_texts}")
    for i, item in enumerate(items):
        if spec.input_kind == SIMILARITY and not item["sentences"]:
            raise RequestError(422, f"inputs[{i}].sentences is empty: give at least one sentence to compare")
        for text in item_texts(item):
            if is_blank(text):  # whitespace, or only zero-width/format characters (U+200B, U+FEFF, ...)
                invisible = sorted({f"U+{ord(char):04X}" for char in text if not char.isspace()})
                detail = f" (only invisible format characters: {', '.join(invisible)})" if invisible else ""
                raise RequestError(
                    422, f"inputs[{i}] has an empty text{detail}: every text must have a visible character"
                )
            if len(text) > max_chars:
                raise RequestError(
                    413, f"inputs[{i}] has a text of {len(text)} characters; the limit is max_text_chars={max_chars}"
                )
        if spec.name == "fill-mask" and mask_token and mask_token not in item:
            raise RequestError(422, f"inputs[{i}] has no mask token {mask_token!r}: fill-mask needs one")


def check_parameters(
    spec: TaskSpec, parameters: dict[str, Any], max_new_tokens: int, vocab_size: int | None = None
) -> dict[str, Any]:
    """The request's parameters, type and range checked: a 422 names the first bad parameter of each name.

    Refused: keywords the task does not take, values of the wrong type (strict: no "3" or 3.0 for 3, no true for 1),
    NaN and infinite numbers, values out of range, generation lengths beyond the server's cap and, for fill-mask,
    a top_k beyond the vocabulary. Returns the parameters the client set (nothing else), ready for the pipeline.
    """
    unknown = sorted(set(parameters) - spec.parameters)
    if unknown:
        allowed = ", ".join(sorted(spec.parameters)) or "none"
        raise RequestError(422, f"parameters {unknown} are not accepted for task {spec.name}; allowed: {allowed}")
    try:
        checked = spec.parameter_model.model_validate(parameters).model_dump(exclude_unset=True)
    except ValidationError as error:
        raise RequestError(422, "invalid request: " + describe_parameter_errors(error.errors())) from None
    for key in ("max_new_tokens", "max_length", "min_new_tokens", "min_length"):
        value = checked.get(key)
        if value is not None and value > max_new_tokens:
            raise RequestError(
                422, f"parameters.{key}={value} is over the server's limit max_new_tokens={max_new_tokens}"
            )
    top_k = checked.get("top_k")
    if spec.name == "fill-mask" and vocab_size is not None and top_k is not None and top_k > vocab_size:
        raise RequestError(422, f"parameters.top_k={top_k} is over the model's vocabulary size {vocab_size}")
    return checked


def describe_parameter_errors(errors: list[dict[str, Any]]) -> str:
    """One clause per bad parameter, naming it, e.g. `parameters.top_k: Input should be a valid integer (got 'x')`.

    A union type (fill-mask `targets`: a string or a list) reports once per member: the member the value had the
    type of speaks (`parameters.targets.1: String should have at least 1 character`); a value of neither type gets
    both type errors in one clause.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        loc = error.get("loc") or ("?",)
        groups.setdefault(str(loc[0]), []).append(error)
    clauses = []
    for name, group in groups.items():
        fitting = [error for error in group if not str(error.get("type", "")).endswith("_type")]
        chosen = fitting[0] if fitting else group[0]
        # list positions stay in the name (targets.2); union member tags such as `str` or `list[...]` do not
        where = ".".join([name, *(str(part) for part in chosen.get("loc", ())[1:] if isinstance(part, int))])
        message = chosen.get("msg", "invalid") if fitting else " or ".join(dict.fromkeys(e["msg"] for e in group))
        got = repr(chosen.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        clauses.append(f"parameters.{where}: {message} (got {got})")
    return "; ".join(clauses)


def server_kwargs(spec: TaskSpec, max_length: int | None) -> dict[str, Any]:
    """Keyword arguments the server adds to every pipeline call of this task."""
    if not spec.truncate or max_length is None:
        return {}
    tokenizer_kwargs = {"truncation": True, "max_length": max_length}
    if spec.truncation_key is None:
        return tokenizer_kwargs
    return {spec.truncation_key: tokenizer_kwargs}
