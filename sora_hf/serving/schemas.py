"""Request and response bodies; FastAPI turns them into the OpenAPI schema at /openapi.json."""

from __future__ import annotations

from typing import Any, Union

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
