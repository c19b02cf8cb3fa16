"""Request and response bodies; FastAPI turns them into the OpenAPI schema at /openapi.json."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class QuestionAnsweringInput(BaseModel):
    """One extractive question for a question-answering server."""

    model_config = ConfigDict(extra="forbid")
    question: str
    context: str


class SimilarityInput(BaseModel):
    """One source sentence and the sentences to compare it with (sentence-similarity)."""

    model_config = ConfigDict(extra="forbid")
    source_sentence: str
    sentences: list[str]


PredictInput = Union[str, QuestionAnsweringInput, SimilarityInput]  # noqa: UP007 - pydantic reads it at runtime


class PredictRequest(BaseModel):
    """A prediction request: one input or a list, and optional pipeline parameters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": "质量不错，推荐购买！"},
                {"inputs": ["物流太慢了，很失望。", "质量不错"], "parameters": {"top_k": None}},
                {"inputs": {"question": "会议在哪里举行？", "context": "会议在上海举行。"}},
            ]
        },
    )
    inputs: PredictInput | list[PredictInput] = Field(
        description="A string (text tasks), a {question, context} object (question-answering), a "
        "{source_sentence, sentences} object (sentence-similarity), or a list of one of these."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Pipeline keywords allowed for the served task, e.g. top_k for text-classification, "
        "max_new_tokens for generation. GET /v1/info lists them.",
    )
    task: str | None = Field(
        default=None, description="Optional: the task the client expects; a request for another task is refused."
    )


class PredictResponse(BaseModel):
    """The pipeline's output per input: one output for a single input, a list for a list of inputs."""

    task: str
    model: str
    outputs: Any = Field(description="What `transformers.pipeline(task)` returns for the input(s).")


class ErrorResponse(BaseModel):
    """Every refused or failed request gets this body."""

    error: str = Field(description="What is wrong; for a limit, the limit's name and value.")


class HealthResponse(BaseModel):
    status: str = Field(description="`ok`, or `draining` while the server shuts down (then with status 503).")
    task: str
    model: str
    queue_depth: int


class InfoResponse(BaseModel):
    """What the server serves and the limits it enforces."""

    task: str
    model: str
    parameters: list[str]
    limits: dict[str, float | int]


# ------------------------------------------------------------------------------------------------- request parameters
# One model per task family: strict types (no "3" for 3, no true for 1, no 2.0 for an integer), finite numbers and
# ranges, so that a bad value is a 422 naming the parameter instead of a 200 with the value ignored or a 500 from
# deep inside the pipeline. `null` is accepted only where the pipeline gives it a meaning (text-classification
# top_k: every label).

MAX_COUNT = 2**31 - 1  # integers beyond this overflow the C longs of torch and numpy (a 500, not a 422)
MAX_SEQUENCES = 16  # num_beams and num_return_sequences: each multiplies the work of one input

Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
NonNegativeCount = Annotated[int, Field(ge=0, le=MAX_COUNT)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Label = Annotated[str, Field(min_length=1, max_length=256)]
Sequences = Annotated[int, Field(ge=1, le=MAX_SEQUENCES)]


class _Parameters(BaseModel):
    """A parameter left out gets the pipeline's (or the model's generation config's) default."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NoParameters(_Parameters):
    """Tasks that take no request parameters."""


class TextClassificationParameters(_Parameters):
    top_k: Count | None = Field(
        default=None, description="How many labels to return, as a list; null: every label; unset: the best one."
    )
    function_to_apply: Literal["softmax", "sigmoid", "none"] = None


class TokenClassificationParameters(_Parameters):
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = None
    ignore_labels: list[Label] = Field(default=None, max_length=1024)


class FillMaskParameters(_Parameters):
    top_k: Count = Field(default=None, description="Predictions per mask (at most the vocabulary size).")
    targets: Label | Annotated[list[Label], Field(min_length=1, max_length=1024)] = Field(
        default=None, description="Restrict the predictions to these tokens."
    )


class QuestionAnsweringParameters(_Parameters):
    top_k: Count = None
    max_answer_len: Count = None
    handle_impossible_answer: bool = None


class GenerationParameters(_Parameters):
    max_new_tokens: Count = Field(default=None, description="Capped by the server's max_new_tokens.")
    min_new_tokens: NonNegativeCount = None
    do_sample: bool = None
    temperature: PositiveFloat = None
    top_k: NonNegativeCount = Field(default=None, description="0: no top-k filtering.")
    top_p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = None
    num_beams: Sequences = None
    repetition_penalty: PositiveFloat = None
    no_repeat_ngram_size: NonNegativeCount = None
    num_return_sequences: Sequences = None


class TextGenerationParameters(GenerationParameters):
    return_full_text: bool = None
    max_length: Count = Field(default=None, description="Capped by the server's max_new_tokens.")
    min_length: NonNegativeCount = None


class TranslationParameters(GenerationParameters):
    src_lang: Annotated[str, Field(min_length=1, max_length=64)] = None
    tgt_lang: Annotated[str, Field(min_length=1, max_length=64)] = None
