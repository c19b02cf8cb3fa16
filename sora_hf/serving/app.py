"""The FastAPI app over one transformers pipeline.

`create_app(pipe, task)` is all a test or an embedding application needs; `load_pipeline(checkpoint)` builds the
pipeline the way a user would (`import sora_hf` then `transformers.pipeline`), and `sora_hf.serving.serve` runs the
app under uvicorn.

Endpoints: `POST /v1/predict` (alias `/predict`), `GET /v1/info`, `GET /healthz`, `GET /metrics` (Prometheus),
`GET /openapi.json` and `/docs` (FastAPI). Every refused request gets a JSON `{"error": ...}` body with a 4xx status
(503 when the queue is full or the server is stopping); a refused request never reaches a batch, so it cannot fail
other requests.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batching import BatchFunction, DynamicBatcher
from .errors import RequestError
from .metrics import ServingMetrics
from .schemas import ErrorResponse, HealthResponse, InfoResponse, PredictRequest, PredictResponse
from .tasks import TaskSpec, check_items, check_parameters, check_task, infer_task, item_texts, server_kwargs

logger = logging.getLogger(__name__)

PREDICT_PATHS = ("/v1/predict", "/predict")
KNOWN_PATHS = frozenset({*PREDICT_PATHS, "/v1/info", "/healthz", "/metrics", "/openapi.json", "/docs"})


@dataclass(frozen=True)
class ServerSettings:
    """Batching and limits of one server (the CLI flags of `sora-hf serve` map one to one).

    max_batch_size: items collected per pipeline call (1 turns dynamic batching off).
    forward_batch_size: items per forward pass inside that call. The call sorts its items by length first, so
        each forward pass pads little: on a CPU a few similar-length texts per pass beat one wide padded pass.
    max_wait_ms: how long a batch's first item waits for others; the latency paid for batching when idle.
    max_queue_size: items waiting at most; more gets 503 (back-pressure instead of unbounded latency).
    max_text_chars: characters per text (413 beyond); texts are also truncated to the model's token limit.
    max_texts_per_request: strings per request, all inputs together (413 beyond).
    max_body_bytes: request body size (413 beyond), checked before the body is parsed.
    max_new_tokens: cap on `max_new_tokens` / `max_length` parameters of generation tasks.
    max_length: tokens per text for the tasks the server truncates (None: the tokenizer's and model's limit).
    """

    max_batch_size: int = 32
    forward_batch_size: int = 8
    max_wait_ms: float = 2.0
    max_queue_size: int = 1024
    max_text_chars: int = 4096
    max_texts_per_request: int = 64
    max_body_bytes: int = 1_000_000
    max_new_tokens: int = 256
    max_length: int | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "max_length" and value is None:
                continue
            if name == "max_wait_ms":
                if not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"ServerSettings.max_wait_ms must be >= 0, got {value!r}")
            elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ServerSettings.{name} must be a positive integer, got {value!r}")


def load_pipeline(checkpoint: str, task: str | None = None, device: str | int | None = None) -> tuple[Any, str]:
    """`transformers.pipeline` for a checkpoint folder or Hub repo id, with the task from its config if not given.

    With HF_HUB_OFFLINE=1 a repo id resolves from the local cache only.
    """
    # Importing this module imported sora_hf, which registered Sora with the Auto classes and its pipelines.
    from transformers import AutoConfig, pipeline

    if task is not None:
        check_task(task)
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except OSError as error:  # not a folder, not in the cache (offline), or not a model: say which checkpoint
        raise FileNotFoundError(f"cannot load checkpoint {checkpoint!r}: {error}") from error
    if task is None:
        task = infer_task(config)
        check_task(task)
    kwargs = {} if device is None else {"device": device}
    return pipeline(task, model=checkpoint, tokenizer=checkpoint, **kwargs), task


def to_jsonable(value: Any) -> Any:
    """Pipeline outputs hold numpy/torch scalars and arrays (token-classification scores are np.float32)."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        return value.tolist()
    return value


def pipeline_batch_function(
    pipe: Any, spec: TaskSpec, max_length: int | None, forward_batch_size: int = 8
) -> BatchFunction:
    """One pipeline call for a list of items, shortest first, `forward_batch_size` items per forward pass.

    transformers' pipeline pads each forward batch to its longest text; sorting by length keeps neighbours alike,
    so little compute goes to padding. Outputs come back in the callers' order.
    """
    fixed = server_kwargs(spec, max_length)

    def run(items: list[Any], parameters: dict[str, Any]) -> list[Any]:
        order = sorted(range(len(items)), key=lambda i: sum(len(text) for text in item_texts(items[i])))
        batch_size = max(1, min(len(items), forward_batch_size))
        outputs = pipe([items[i] for i in order], batch_size=batch_size, **fixed, **parameters)
        in_order: list[Any] = [None] * len(items)
        for position, index in enumerate(order):
            in_order[index] = to_jsonable(outputs[position])
        return in_order

    return run


def _model_max_length(pipe: Any) -> int | None:
    from ..pipelines._utils import default_max_length

    if getattr(pipe, "tokenizer", None) is None:
        return None
    return default_max_length(pipe.model, pipe.tokenizer, 512)


def create_app(
    pipe: Any,
    task: str,
    model_name: str = "model",
    settings: ServerSettings | None = None,
    batch_function: BatchFunction | None = None,
) -> FastAPI:
    """The app serving `pipe` for `task`.

    `batch_function` replaces the pipeline call (items, parameters) -> outputs; the default calls `pipe`. The app's
    `state` holds `batcher`, `metrics` and `settings` for callers that embed it.
    """
    settings = settings or ServerSettings()
    spec = check_task(task)
    max_length = settings.max_length or _model_max_length(pipe)
    metrics = ServingMetrics()
    batcher = DynamicBatcher(
        batch_function or pipeline_batch_function(pipe, spec, max_length, settings.forward_batch_size),
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue_size=settings.max_queue_size,
        observer=metrics,
    )
    metrics.track_queue(lambda: batcher.queue_depth)
    tokenizer = getattr(pipe, "tokenizer", None)
    mask_token = getattr(tokenizer, "mask_token", None) if task == "fill-mask" else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        app.state.draining = False
        logger.info("serving %s (%s) with %s", model_name, task, settings)
        try:
            yield
        finally:
            # uvicorn gets here after the in-flight requests of a SIGTERM/SIGINT are answered; stop() still
            # answers whatever is queued before the worker thread goes.
            app.state.draining = True
            await batcher.stop()

    app = FastAPI(
        title="Sora-HF inference server",
        version="1",
        summary=f"transformers pipeline `{task}` over {model_name}, with dynamic batching",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.metrics, app.state.settings, app.state.draining = batcher, metrics, settings, False
    app.add_middleware(_HTTPGuard, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    errors = {status: {"model": ErrorResponse} for status in (400, 413, 422, 500, 503)}

    async def predict(request: PredictRequest) -> PredictResponse:
        if request.task is not None and request.task != task:
            raise RequestError(422, f"unknown task {request.task!r}: this server serves {task!r} only")
        single = not isinstance(request.inputs, list)
        items = [request.inputs] if single else request.inputs
        items = [item if isinstance(item, str) else item.model_dump() for item in items]
        check_items(spec, items, settings.max_texts_per_request, settings.max_text_chars, mask_token)
        check_parameters(spec, request.parameters, settings.max_new_tokens)
        try:
            outputs = await batcher.submit(items, request.parameters)
        except RequestError:
            raise
        except (ValueError, TypeError, KeyError) as error:  # the pipeline refused this input or these parameters
            raise RequestError(422, f"the {task} pipeline refused the input: {error}", kind="pipeline") from error
        except Exception as error:
            if type(error).__name__ == "PipelineException":  # transformers' own refusal (e.g. no mask token)
                raise RequestError(422, f"the {task} pipeline refused the input: {error}", kind="pipeline") from error
            logger.exception("prediction failed")
            raise RequestError(500, f"prediction failed: {type(error).__name__}: {error}", kind="internal") from error
        return PredictResponse(task=task, model=model_name, outputs=outputs[0] if single else outputs)

    for path in PREDICT_PATHS:
        app.add_api_route(
            path,
            predict,
            methods=["POST"],
            response_model=PredictResponse,
            responses=errors,
            summary=f"Run the {task} pipeline on one input or a list",
            include_in_schema=path == PREDICT_PATHS[0],
        )

    @app.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def healthz() -> JSONResponse:
        """200 while serving; 503 once shutdown has begun (take the server out of rotation)."""
        ok = batcher.running and not app.state.draining
        body = HealthResponse(
            status="ok" if ok else "draining", task=task, model=model_name, queue_depth=batcher.queue_depth
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/v1/info", response_model=InfoResponse)
    async def info() -> InfoResponse:
        """The served task, the parameters a request may set, and the server's limits."""
        limits = {key: value for key, value in asdict(settings).items() if value is not None}
        if max_length is not None:
            limits["max_length"] = max_length
        return InfoResponse(task=task, model=model_name, parameters=sorted(spec.parameters), limits=limits)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency histogram, batch sizes, errors, queue depth."""
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, error: RequestError) -> JSONResponse:
        metrics.error(error.kind)
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        status, kind, message = describe_validation_errors(error.errors())
        metrics.error(kind)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    return app


_INPUTS_SHAPES = (
    "a string, a {question, context} object, a {source_sentence, sentences} object, or a non-empty list of one kind"
)


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[int, str, str]:
    """(status, error kind, message) for pydantic's errors on a request body, in one sentence a person can act on.

    Pydantic reports a bad `inputs` once per member of the union; those collapse into one message.
    """
    for error in errors:
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "")
            return 400, "invalid_json", f"the request body is not valid JSON ({detail})".replace(" ()", "")
    messages = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        if not loc:
            if error.get("type") == "missing":
                messages.append('the request needs a JSON body like {"inputs": "..."}')
            else:
                messages.append('the request body must be a JSON object like {"inputs": "..."}')
        elif loc[0] == "inputs" and error.get("type") != "missing":
            messages.append(f"inputs must be {_INPUTS_SHAPES}")
        else:
            messages.append(f"{'.'.join(loc)}: {error.get('msg', 'invalid')}")
    unique = list(dict.fromkeys(messages))
    return 422, "invalid", "invalid request: " + "; ".join(unique)


class _HTTPGuard:
    """ASGI middleware: counts and times every request, and refuses bodies over `max_body_bytes` with a 413 before
    they are parsed (by Content-Length when sent, else by counting the streamed chunks)."""

    def __init__(self, app: Any, metrics: ServingMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"

        async def send_and_record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, receive)
                if body is None:
                    self.metrics.error("too_large")
                    await self._refuse(send_and_record)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(path, scope["method"], status, time.perf_counter() - start)

    async def _read_body(self, scope: dict, receive: Any) -> bytes | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see an empty body
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {"error": f"the request body is over the limit max_body_bytes={self.max_body_bytes}"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the app the body already read, then defers to the real one (for disconnects)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
