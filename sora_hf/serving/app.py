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

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..folders.checkpoints import CheckpointError
from .batching import BatchFunction, DynamicBatcher
from .errors import RequestError
from .metrics import ServingMetrics
from .schemas import ErrorResponse, HealthResponse, InfoResponse, PredictRequest, PredictResponse
from .settings import ServerSettings
from .tasks import TaskSpec, check_items, check_parameters, check_task, infer_task, item_texts, server_kwargs

logger = logging.getLogger(__name__)

PREDICT_PATHS = ("/v1/predict", "/predict")
KNOWN_PATHS = frozenset({*PREDICT_PATHS, "/v1/info", "/healthz", "/metrics", "/openapi.json", "/docs"})


def load_pipeline(checkpoint: str, task: str | None = None, device: str | int | None = None) -> tuple[Any, str]:
    """`transformers.pipeline` for a checkpoint folder or Hub repo id, with the task from its config if not given.

    Refused before anything is served (ValueError / FileNotFoundError, one line each): a task the server does not
    serve; a path that does not exist ("no such folder", never a Hub lookup; with HF_HUB_OFFLINE=1 a repo id must be
    in the local cache); a folder that is not a whole checkpoint; weights that do not fit the head the task loads
    (`--task fill-mask` on a classifier would otherwise answer from a randomly initialised LM head; a config whose
    model_type does not match its weights likewise); a tokenizer with more tokens than the model's vocabulary.
    """
    from transformers import AutoConfig, AutoTokenizer, pipeline

    from ..auto.registration import register
    from ..folders.checkpoints import check_checkpoint_folder, load_checked, resolve_checkpoint
    from ..tokenizer import check_tokenizer_fits

    register()  # idempotent (sora_hf registers when transformers is imported)
    if task is not None:
        check_task(task)
    source = resolve_checkpoint(checkpoint)
    if os.path.isdir(source):
        check_checkpoint_folder(source)  # config.json and whole weight files, each named when it is not
    try:  # trust_remote_code=False: never transformers' interactive "run the custom code? [y/N]" prompt
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except OSError as error:  # not in the cache (offline), or not a model: say which checkpoint
        raise FileNotFoundError(f"cannot load checkpoint {checkpoint!r}: {error}") from error
    except ValueError as error:  # e.g. a model_type transformers does not know
        raise CheckpointError(custom_code_refusal(checkpoint, error, "sora-hf serve")) from error
    head = ", ".join(getattr(config, "architectures", None) or []) or f"a {config.model_type!r} model"
    try:
        head_task = infer_task(config)
    except ValueError:
        if task is None:
            raise
        head_task = None
    task = task or check_task(head_task).name
    check_head_answers(head, head_task, task, checkpoint)
    model_class = task_model_class(task)
    try:
        model = load_checked(model_class, source, heads="complete", expected_model_type=None)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as error:  # CheckpointError is a ValueError; OSError: unreadable weights
        raise CheckpointError(
            f"cannot serve {checkpoint} for task {task}: {_name(model_class)} (the class the {task} pipeline "
            f"loads) does not fit its head {head}: {error}"
        ) from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as error:
        if _asks_for_custom_code(error):
            raise CheckpointError(custom_code_refusal(checkpoint, error, "sora-hf serve")) from error
        raise CheckpointError(f"cannot serve {checkpoint}: its tokenizer does not load ({error})") from error
    check_tokenizer_fits(tokenizer, _fit_view(model.config, tokenizer))
    kwargs = {} if device is None else {"device": device}
    try:
        return pipeline(task, model=model, tokenizer=tokenizer, **kwargs), task
    except (RuntimeError, AssertionError, ValueError) as error:  # e.g. device="cuda" on a machine without one
        where = "" if device is None else f" on device {device!r}"
        raise ValueError(f"cannot build the {task} pipeline for {checkpoint}{where}: {error}") from error


def _asks_for_custom_code(error: BaseException) -> bool:
    return "trust_remote_code" in str(error) or "custom code" in str(error)


def custom_code_refusal(checkpoint: str, error: BaseException, command: str) -> str:
    """One line for a checkpoint whose config or tokenizer needs code shipped with it (transformers would ask
    "run the custom code? [y/N]"; the command never runs a checkpoint's code); other load errors as they are."""
    if not _asks_for_custom_code(error):
        return f"cannot load checkpoint {checkpoint!r}: {' '.join(str(error).split())}"
    model_type = None
    config_path = os.path.join(checkpoint, "config.json")
    if os.path.isfile(config_path):
        try:
            with open(config_path, encoding="utf-8") as handle:
                model_type = json.load(handle).get("model_type")
        except (OSError, ValueError, AttributeError):
            pass
    what = f"model_type {model_type!r}, which transformers does not know" if model_type else "its config"
    return (
        f"cannot load checkpoint {checkpoint!r}: {what}, needs custom code shipped with the checkpoint (auto_map), "
        f"and {command} never runs a checkpoint's code; load it yourself with trust_remote_code=True if you trust it"
    )


# Tasks answered by the model body, whatever head the checkpoint was saved with.
BODY_TASKS = frozenset({"feature-extraction", "sentence-similarity"})
# Tasks one head answers: a sequence-to-sequence head summarizes and translates as well.
_TASK_FAMILY = {"summarization": "text2text-generation", "translation": "text2text-generation"}


def check_head_answers(head: str, head_task: str | None, task: str, checkpoint: str) -> None:
    """Refuse a task the checkpoint's head does not answer, before any weight is read.

    The weights alone cannot tell: a token classifier loads a sequence classifier's `classifier.*` weights when the
    shapes happen to agree. Only heads `infer_task` names specifically are judged (an architecture that is only
    known to end in `Model`, like `GPT2LMHeadModel`, is left to the weight check).
    """
    if head_task is None or head_task == "feature-extraction" or task in BODY_TASKS:
        return
    if _TASK_FAMILY.get(task, task) != _TASK_FAMILY.get(head_task, head_task):
        raise CheckpointError(
            f"cannot serve {checkpoint} for task {task}: its head {head} answers {head_task}, not {task} (serve it "
            f"without --task, or as {' or '.join(sorted(BODY_TASKS))}, which use the model body only)"
        )


def _name(model_class: Any) -> str:
    return getattr(model_class, "__name__", str(model_class))


def task_model_class(task: str) -> Any:
    """The Auto class `transformers.pipeline(task)` loads a checkpoint with (Sora's own for the tasks it registers)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    _, targeted, _ = PIPELINE_REGISTRY.check_task(task)
    classes = targeted.get("pt") or ()
    if not classes:
        raise ValueError(f"transformers names no PyTorch model class for the task {task!r}")
    return classes[0]


def _fit_view(config: Any, tokenizer: Any) -> Any:
    """What `check_tokenizer_fits` checks when serving: every token id must have an embedding row, and pad ids
    that both sides set must agree. The length limits are left out: the server truncates every text to the smaller
    of the two, so a tokenizer saved with model_max_length=1e30 (the default of a fast tokenizer) is no error here.
    """
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    pad = getattr(text_config, "pad_token_id", None)
    return SimpleNamespace(
        vocab_size=getattr(text_config, "vocab_size", None),
        pad_token_id=pad if getattr(tokenizer, "pad_token_id", None) is not None else None,
        max_position_embeddings=None,
    )


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


def _vocab_size(pipe: Any) -> int | None:
    """The rows of the model's output vocabulary (fill-mask's `top_k` cannot exceed it)."""
    config = getattr(getattr(pipe, "model", None), "config", None)
    if config is None:
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text_config, "vocab_size", None)
    return value if isinstance(value, int) and value > 0 else None


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
    served = _prepare_serving(pipe, task, model_name, settings, batch_function)
    batcher, metrics = served.batcher, served.metrics
    app = FastAPI(
        title="Sora-HF inference server",
        version="1",
        summary=f"transformers pipeline `{task}` over {model_name}, with dynamic batching",
        lifespan=_lifespan(served),
    )
    app.state.batcher, app.state.metrics, app.state.settings, app.state.draining = batcher, metrics, settings, False
    app.add_middleware(
        _HTTPGuard,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        is_draining=lambda: bool(getattr(app.state, "draining", False)),
    )
    _add_prediction_routes(app, served)
    _add_status_routes(app, served)
    _add_error_handlers(app, metrics)
    return app


@dataclass
class _Served:
    """What the routes of one app share: the task, the server's settings and limits, the batcher and the metrics."""

    task: str
    model_name: str
    settings: ServerSettings
    spec: TaskSpec
    max_length: int | None
    metrics: ServingMetrics
    batcher: DynamicBatcher
    mask_token: str | None
    vocab_size: int | None


def _prepare_serving(
    pipe: Any, task: str, model_name: str, settings: ServerSettings, batch_function: BatchFunction | None
) -> _Served:
    """Check the task, then build the metrics and the batcher over `batch_function` (default: the pipeline call)."""
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
    return _Served(task, model_name, settings, spec, max_length, metrics, batcher, mask_token, _vocab_size(pipe))


def _lifespan(served: _Served) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's startup (start the batcher) and shutdown (drain, then stop the batcher)."""
    batcher = served.batcher

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        app.state.draining = False
        logger.debug("serving %s (%s) with %s", served.model_name, served.task, served.settings)
        try:
            yield
        finally:
            # uvicorn gets here after the in-flight requests of a SIGTERM/SIGINT are answered; stop() still
            # answers whatever is queued before the worker thread goes.
            app.state.draining = True
            await batcher.stop()

    return lifespan


def _add_prediction_routes(app: FastAPI, served: _Served) -> None:
    """`POST /v1/predict` and its alias `/predict` (left out of the OpenAPI schema)."""
    task, model_name, spec = served.task, served.model_name, served.spec
    settings, batcher = served.settings, served.batcher
    errors = {status: {"model": ErrorResponse} for status in (400, 408, 413, 422, 500, 503)}

    async def predict(request: PredictRequest) -> PredictResponse:
        if request.task is not None and request.task != task:
            raise RequestError(422, f"unknown task {request.task!r}: this server serves {task!r} only")
        single = not isinstance(request.inputs, list)
        items = [request.inputs] if single else request.inputs
        items = [item if isinstance(item, str) else item.model_dump() for item in items]
        check_items(spec, items, settings.max_texts_per_request, settings.max_text_chars, served.mask_token)
        parameters = check_parameters(spec, request.parameters, settings.max_new_tokens, served.vocab_size)
        try:
            outputs = await batcher.submit(items, parameters)
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


def _add_status_routes(app: FastAPI, served: _Served) -> None:
    """`GET /healthz`, `/v1/info` and `/metrics`."""
    task, model_name, batcher, metrics = served.task, served.model_name, served.batcher, served.metrics

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
        limits = {key: value for key, value in asdict(served.settings).items() if value is not None}
        if served.max_length is not None:
            limits["max_length"] = served.max_length
        return InfoResponse(task=task, model=model_name, parameters=sorted(served.spec.parameters), limits=limits)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency histogram, batch sizes, errors, queue depth."""
        return Response(metrics.render(), media_type=metrics.content_type)


def _add_error_handlers(app: FastAPI, metrics: ServingMetrics) -> None:
    """Answer refused and failed requests with a JSON `{"error": ...}` body instead of FastAPI's plain defaults."""

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
        message = describe_body_error(error.__cause__) if error.status_code == 400 else None
        if message is not None:
            metrics.error("invalid_json")
            return JSONResponse({"error": message}, status_code=400)
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def on_unhandled_error(request: Request, error: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware (outside every other middleware) answers with this instead of its
        # plain-text 500; the guard normally answers first
        return JSONResponse({"error": f"internal server error: {type(error).__name__}"}, status_code=500)


def begin_draining(app: FastAPI) -> None:
    """Start a graceful shutdown's drain: from now on a prediction request the server reads is refused with a 503
    and `Connection: close` (it is answered, not cut), every response closes its connection, and /healthz says
    `draining`; what was read before keeps its place in the queue and is answered. `serve()` calls it on SIGTERM."""
    app.state.draining = True


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


def describe_body_error(cause: BaseException | None) -> str | None:
    """What FastAPI's one "There was an error parsing the body" stands for, for the causes a client can fix: bytes
    that are not UTF-8 (a GBK or Latin-1 body) and JSON nested deeper than the parser goes. None for other causes."""
    if isinstance(cause, UnicodeDecodeError):
        bad = cause.object[cause.start : cause.start + 1]
        byte = f"byte 0x{bad.hex()} at position {cause.start}" if bad else f"at position {cause.start}"
        return (
            f"the body is not valid {cause.encoding.upper()} JSON ({byte}: {cause.reason}); "
            "send the JSON encoded as UTF-8 (a GBK or other legacy encoding is not accepted)"
        )
    if isinstance(cause, RecursionError):
        return (
            "the JSON body is nested too deeply to parse (more levels of [ or { than the parser allows); "
            'a request is {"inputs": ...} with a string, an object or a list of them'
        )
    return None


def json_error_message(status: int, message: str, close: bool = False) -> tuple[dict, dict]:
    """The two ASGI messages of a `{"error": message}` response; `close` asks the server to close the connection
    after it (the request body was not read, so the connection cannot carry another request)."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class _Exchange:
    """What one request's response has done so far, as the guard saw it go out."""

    def __init__(self) -> None:
        self.status: int | None = None  # set once http.response.start went out
        self.sent = False  # the last body message went out while the client was still there
        self.gone = asyncio.Event()  # the client disconnected before the response was complete


class _HTTPGuard:
    """ASGI middleware around the app: reads every request body itself, then counts what was really sent.

    - A body over `max_body_bytes` is a 413 before it is parsed (by Content-Length when sent, else by counting the
      streamed chunks); a body that is not whole `body_timeout_s` seconds after the headers (a Content-Length
      larger than what is sent, a client trickling bytes) is a 408. Both close the connection.
    - `requests_total` and the latency histogram count a response once its last byte was handed to the server
      with the client still connected, under the status the client got; a client that went away first is counted
      in `client_disconnects_total` instead.
    - Whatever goes wrong below it answers JSON: an unhandled exception is a 500, a request cancelled by the server
      (uvicorn's graceful-shutdown timeout) a 503, an app that returned without answering a 500.
    """

    def __init__(
        self,
        app: Any,
        metrics: ServingMetrics,
        max_body_bytes: int,
        body_timeout_s: float,
        is_draining: Any = lambda: False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.is_draining = is_draining

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        exchange = _Exchange()

        async def send_checked(message: dict) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                if self.is_draining():  # tell the client this connection ends here, so it sends nothing more on it
                    headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            if exchange.gone.is_set():  # nothing reaches a client that left (uvicorn drops it silently)
                return
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                exchange.sent = True

        listener, outcome = None, None
        try:
            outcome, body = await self._read_body(scope, receive)
            if outcome == "disconnected":
                exchange.gone.set()
                self.metrics.client_disconnected(path, "body")
                return
            if outcome != "ok":
                self.metrics.error(outcome)
                await self._answer(send_checked, *self._refusal(outcome, body), close=True)
                return
            if self.is_draining() and scope["path"] in PREDICT_PATHS:
                # read whole (closing on an unread body would reset the connection and lose this answer)
                self.metrics.error("shutting_down")
                await self._answer(
                    send_checked,
                    503,
                    "the server is shutting down and takes no new requests; retry on another instance",
                    close=True,
                )
                return
            listener = asyncio.ensure_future(_watch_disconnect(receive, exchange))
            await self._run_app(scope, _replay(body, exchange), send_checked, exchange)
        finally:
            if listener is not None:
                listener.cancel()
            if exchange.sent:
                self.metrics.observe_request(path, scope["method"], exchange.status, time.perf_counter() - start)
            elif exchange.gone.is_set() and outcome != "disconnected":
                self.metrics.client_disconnected(path, "response")

    async def _run_app(self, scope: dict, receive: Any, send: Any, exchange: _Exchange) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when its graceful-shutdown timeout runs out; answer them
            # (instead of uvicorn's plain-text 500) and end the request normally: the task has nothing left to do
            if exchange.status is not None:
                raise
            logger.warning("%s %s cancelled by the server before it was answered", scope["method"], scope["path"])
            self.metrics.error("shutting_down")
            self.metrics.cancelled_on_shutdown += 1
            await self._answer(
                send,
                503,
                "the server is shutting down and stopped this request before it was "
                "answered (its graceful-shutdown timeout ran out); retry",
                close=True,
            )
        except Exception as error:
            if exchange.status is not None:
                raise
            logger.exception("%s %s failed", scope["method"], scope["path"])
            self.metrics.error("internal")
            await self._answer(send, 500, f"internal server error: {type(error).__name__}: {error}")
        else:
            if exchange.status is None and not exchange.gone.is_set():
                logger.error("%s %s: the app returned without answering", scope["method"], scope["path"])
                self.metrics.error("internal")
                await self._answer(send, 500, "internal server error: the request got no response")

    async def _read_body(self, scope: dict, receive: Any) -> tuple[str, Any]:
        """("ok", body), ("too_large", None), ("timeout", bytes received so far) or ("disconnected", None)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return "too_large", None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return "timeout", size
            if message["type"] != "http.request":  # the client went away
                return "disconnected", None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return "too_large", None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return "ok", b"".join(chunks)

    def _refusal(self, outcome: str, received: Any) -> tuple[int, str]:
        if outcome == "too_large":
            return 413, f"the request body is over the limit max_body_bytes={self.max_body_bytes}"
        return 408, (
            f"the request body was not complete within body_timeout_s={self.body_timeout_s:g} seconds "
            f"({received} bytes arrived)"
        )

    @staticmethod
    async def _answer(send: Any, status: int, message: str, close: bool = False) -> None:
        for part in json_error_message(status, message, close=close):
            await send(part)


async def _watch_disconnect(receive: Any, exchange: _Exchange) -> None:
    """Wait for the server's `http.disconnect` (the guard owns `receive` once the body is read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not exchange.sent:  # after a complete response, uvicorn reports the end of the cycle the same way
                exchange.gone.set()
            return


def _replay(body: bytes, exchange: _Exchange) -> Any:
    """A `receive` that hands the app the body already read, then waits for the client to go away."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await exchange.gone.wait()
        return {"type": "http.disconnect"}

    return replay
