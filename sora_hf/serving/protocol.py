"""uvicorn's h11 HTTP protocol with a header read timeout, and JSON for the errors it answers itself.

uvicorn (0.54) has `timeout_keep_alive` between requests but no limit on how long a request may take to arrive: a
client that connects and sends nothing, or sends its headers one byte a second, holds a socket (and a file
descriptor, and a slot in uvicorn's connection set) for ever; neither h11 nor uvicorn has a setting for it. This
subclass of `H11Protocol` arms a timer when a connection opens and when the first byte of a later request arrives,
and disarms it when h11 has parsed the request's headers; when it fires, a client that had sent part of a request
gets a JSON 408, and the connection is closed.

The body has its own limit, `body_timeout_s`, enforced in the ASGI layer (the app's guard answers a JSON 408 and
closes); the protocol only keeps a backstop a little later, closing a connection whose body is still incomplete
once nothing in the app is reading it (say a client that keeps sending after its request was refused).

uvicorn's own "Invalid HTTP request received." 400 is plain text; here it is `{"error": ...}` like every other
error of the server.

Graceful shutdown: uvicorn closes every idle keep-alive connection the moment it gets SIGTERM, and closes a busy
one silently after its response. A client that wrote its next request on such a connection a moment earlier (or
whose request is still in the socket buffer, unread) gets a reset and no answer. Here `shutdown()` leaves an idle
connection open (a request that comes on it is answered: 503 and `Connection: close` from the draining app), and
`close_if_idle()` closes it only once it has been quiet as long as a keep-alive connection may be and nothing is
arriving on it; `server.DrainingServer` calls it.
"""

from __future__ import annotations

import asyncio
import json
import select
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# seconds after `body_timeout_s` at which the protocol closes a connection whose body is still arriving
BODY_BACKSTOP_S = 2.0


def raw_json_response(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with a `{"error": message}` body that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class TimedH11Protocol(H11Protocol):
    """`H11Protocol` that closes connections whose request headers are not complete within `header_timeout_s`.

    The timeouts are class attributes: `timed_h11_protocol(header_timeout_s, body_timeout_s)` makes the subclass
    `serve()` hands to `uvicorn.Config(http=...)` (uvicorn builds one protocol object per connection).
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self.last_activity = self.loop.time()
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self._header_timer is None and self.conn.their_state is h11.IDLE:  # the first byte of a next request
            self._arm_header_timer()
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        self.last_activity = self.loop.time()
        super().on_response_complete()
        self._follow_state()  # a pipelined request may have been parsed from what was buffered

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Graceful shutdown begins: keep the connection open (see the module docstring); a response in progress
        carries `Connection: close` (the app adds it while draining), so h11 closes the connection after it."""

    @property
    def busy(self) -> bool:
        """A request is being read or answered on this connection."""
        return self.cycle is not None and not self.cycle.response_complete

    def close_if_idle(self, min_idle_s: float) -> bool:
        """Close the connection if it has been quiet for `min_idle_s` and nothing is arriving on it; True once it is
        closed or closing.

        `DrainingServer` passes uvicorn's `timeout_keep_alive`, the silence after which a connection is closed when
        the server is not stopping: a shutdown adds no race of its own between that close and a client's next
        request. (A client that closes its connections when done, as most do, does not make the shutdown wait.)

        A byte in the socket buffer (a request asyncio has not read yet, or the client's own close) keeps it open:
        closing a socket with unread data resets it, and the client would lose the answer it is owed.
        """
        if self.transport.is_closing():
            return True
        if self.busy or self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0]:
            return False
        if self.loop.time() - self.last_activity < min_idle_s:
            return False
        if _readable(self.transport):
            return False
        self._cancel_timers()
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass
        self.transport.close()
        return True

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers unparsable requests itself (plain text there); JSON here, then the connection closes."""
        self._cancel_timers()
        body = json.dumps({"error": f"invalid HTTP request: {msg.rstrip('.')}"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    # -------------------------------------------------------------------------------------------------- timers

    def _follow_state(self) -> None:
        state = self.conn.their_state
        if state is not h11.IDLE and self._header_timer is not None:  # the headers are in
            self._header_timer.cancel()
            self._header_timer = None
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout_s + BODY_BACKSTOP_S, self._body_timed_out)
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        received = len(self.conn.trailing_data[0])
        if received:  # part of a request arrived: say why the connection closes
            self.transport.write(
                raw_json_response(
                    408,
                    "Request Timeout",
                    f"the request headers were not complete within header_timeout_s={self.header_timeout_s:g} "
                    f"seconds ({received} bytes arrived)",
                )
            )
        self._cancel_timers()
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.SEND_BODY:
            self.transport.close()


def _readable(transport: asyncio.BaseTransport) -> bool:
    """Whether the connection's socket has bytes (or an end of file) that asyncio has not read yet."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def timed_h11_protocol(header_timeout_s: float, body_timeout_s: float) -> type[TimedH11Protocol]:
    """A `TimedH11Protocol` subclass with these timeouts, for `uvicorn.Config(http=...)`."""
    attributes: dict[str, Any] = {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s}
    return type("TimedH11Protocol", (TimedH11Protocol,), attributes)
