"""`ServerSettings`: the batching and limits of one server, and the one source of `sora-hf serve`'s flags for them
(each field's default, help and range; `cli.py` builds the flags from these fields). Imports neither FastAPI nor
torch, so that `sora-hf serve --help` stays fast."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Range = Literal["positive", "non-negative"]


def _option(default: Any, help: str, *, at_least: Range = "positive", flag: str | None = None) -> Any:
    """A settings field: its default, its `--help` line, the values it takes and its flag (default `--<name>`)."""
    return field(default=default, metadata={"help": help, "range": at_least, "flag": flag})


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
    header_timeout_s: seconds a client has, from its connection (or the first byte of its next request) to the end
        of the request's headers; then it gets a 408 and the connection is closed (a client sending one header
        byte a second cannot hold a socket). Enforced by the HTTP protocol class `serve()` runs uvicorn with.
    body_timeout_s: seconds from the end of the headers to the end of the body: a Content-Length larger than what
        is sent, or a body trickling in, gets a 408 and the connection is closed.
    """

    max_batch_size: int = _option(32, "items per model call (1: no batching)")
    forward_batch_size: int = _option(8, "length-sorted items per forward")
    max_wait_ms: float = _option(2.0, "how long a batch waits to fill", at_least="non-negative")
    max_queue_size: int = _option(1024, "queued items before 503")
    max_text_chars: int = _option(4096, "characters per text before 413")
    max_texts_per_request: int = _option(64, "texts per request before 413")
    max_body_bytes: int = _option(1_000_000, "request body bytes before 413")
    max_new_tokens: int = _option(256, "cap on generation lengths")
    max_length: int | None = _option(None, "tokens per text (default: the model's limit)")
    header_timeout_s: float = _option(10.0, "seconds a client has to send its headers (408)", flag="--header-timeout")
    body_timeout_s: float = _option(30.0, "seconds a client has to send its body (408)", flag="--body-timeout")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            if f.type == "int":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"ServerSettings.{f.name} must be a positive integer, got {value!r}")
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if f.metadata["range"] == "non-negative" and (not number or value < 0):
                raise ValueError(f"ServerSettings.{f.name} must be a finite number >= 0, got {value!r}")
            if f.metadata["range"] == "positive" and (not number or value <= 0):
                unit = " of seconds" if f.name.endswith("_s") else ""
                raise ValueError(f"ServerSettings.{f.name} must be a finite number{unit} > 0, got {value!r}")


def settings_flags() -> list[tuple[str, str, dict[str, Any]]]:
    """(field name, flag, {type, default, help, range}) of each setting, in field order, for the command line."""
    found = []
    for f in fields(ServerSettings):
        kind = "int" if f.type in ("int", "int | None") else "float"
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        found.append((f.name, flag, {"type": kind, "default": f.default, **f.metadata}))
    return found
