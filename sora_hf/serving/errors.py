"""The one exception the server turns into a JSON error response."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses: `status` is the HTTP status (4xx, or 503 when the server cannot take it now),
    `message` says what is wrong and, for a limit, names the limit and its value."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # the `kind` label of the errors counter: what went wrong, in a word
        self.kind = kind or {413: "too_large", 503: "unavailable"}.get(status, "invalid")
