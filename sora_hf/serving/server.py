"""Run the app under uvicorn: `sora-hf serve` calls `serve()`."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from .app import ServerSettings, begin_draining, create_app, load_pipeline

logger = logging.getLogger(__name__)


def serve(
    checkpoint: str,
    task: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
    device: str | int | None = None,
    threads: int | None = None,
    graceful_timeout_s: float = 30.0,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Load `checkpoint` (a folder, or a Hub repo id: cache-only under HF_HUB_OFFLINE=1) and serve it until
    SIGINT/SIGTERM.

    On a signal uvicorn stops accepting connections, lets in-flight requests finish (at most
    `graceful_timeout_s`), then the app's shutdown answers anything still queued before the process exits.
    `threads` sets torch's intra-op threads (on a shared CPU, leave cores to the HTTP side and the clients).
    Binds to 127.0.0.1 by default: pass host="0.0.0.0" deliberately to expose it.

    `settings.header_timeout_s` / `settings.body_timeout_s` bound how long a request may take to arrive (408 and
    the connection closed beyond; see `protocol.py`). Everything is checked before the port is bound: the arguments
    here (ValueError), the settings, and the checkpoint (`load_pipeline`: ValueError or FileNotFoundError).
    """
    check_serve_arguments(port=port, threads=threads, graceful_timeout_s=graceful_timeout_s)
    settings = settings or ServerSettings()
    import torch

    from .protocol import timed_h11_protocol

    if threads is not None:
        torch.set_num_threads(threads)
    pipe, task = load_pipeline(checkpoint, task=task, device=device)
    app = create_app(pipe, task=task, model_name=checkpoint, settings=settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=graceful_timeout_s,
        http=timed_h11_protocol(settings.header_timeout_s, settings.body_timeout_s),
    )
    logger.info("serving %s as %s on http://%s:%d", checkpoint, task, host, port)
    stopped_by = _run_exiting_cleanly(DrainingServer(config, on_drain=lambda: begin_draining(app)))
    if stopped_by:
        cancelled = app.state.metrics.cancelled_on_shutdown
        if cancelled:
            logger.warning(
                "stopped on %s: %d request(s) were still running when graceful_timeout_s=%g ran out and got a 503 "
                "instead of their answer",
                stopped_by,
                cancelled,
                graceful_timeout_s,
            )
        else:
            logger.warning(
                "stopped on %s after answering every request it had read (200, or 503 while draining)", stopped_by
            )


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a shutdown that answers or refuses every request, none cut.

    On SIGTERM/SIGINT: `on_drain()` (the app then answers new prediction requests 503 + `Connection: close`); the
    connections waiting in the listening socket's accept queue are taken in before it is closed (closing a
    listening socket resets them, after their clients sent a request); later clients are refused at connect.
    Idle keep-alive connections stay open, so a request already on its way over one is answered (503 and
    `Connection: close`), and are closed after `timeout_keep_alive` of silence as at any other time, once nothing
    is arriving on them (`TimedH11Protocol.close_if_idle`). Then uvicorn
    waits for the last responses (at most `timeout_graceful_shutdown`) and the app's shutdown drains the batcher.
    """

    def __init__(self, config: uvicorn.Config, on_drain: Callable[[], None] = lambda: None) -> None:
        super().__init__(config)
        self.on_drain = on_drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_drain()
        accepted = self._accept_waiting()
        for server in self.servers:
            server.close()  # now, before any await: uvicorn's own close below finds it closed
        loop = asyncio.get_running_loop()
        for sock in accepted:
            try:
                await loop.connect_accepted_socket(self._protocol, sock)
            except OSError:  # the client went away meanwhile
                sock.close()
        closer = loop.create_task(self._close_idle_connections())
        try:
            await super().shutdown(sockets)
        finally:
            closer.cancel()

    def _protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )

    def _accept_waiting(self) -> list[socket.socket]:
        """Every connection the kernel has completed but nobody accepted yet, from each listening socket."""
        accepted = []
        for server in self.servers:
            for listening in server.sockets or ():
                with socket.socket(fileno=os.dup(listening.fileno())) as sock:
                    sock.setblocking(False)
                    while True:
                        try:
                            connection, _ = sock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as error:  # e.g. too many open files: those clients are reset
                            logger.warning("could not take in waiting connections on shutdown: %s", error)
                            break
                        connection.setblocking(False)
                        accepted.append(connection)
        return accepted

    async def _close_idle_connections(self) -> None:
        """Close each keep-alive connection once it has been quiet a while and nothing is arriving on it."""
        while True:
            await asyncio.sleep(0.05)
            connections: list[Any] = list(self.server_state.connections)
            for connection in connections:
                close_if_idle = getattr(connection, "close_if_idle", None)
                if close_if_idle is not None:
                    close_if_idle(self.config.timeout_keep_alive)


def check_serve_arguments(port: int, threads: int | None = None, graceful_timeout_s: float = 30.0) -> None:
    """ValueError for a port outside 0..65535 (0: any free port), threads < 1, or a graceful timeout that is not a
    finite number of seconds >= 0."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535 (0: any free port), got {port!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    number = isinstance(graceful_timeout_s, (int, float)) and not isinstance(graceful_timeout_s, bool)
    if not number or not math.isfinite(graceful_timeout_s) or graceful_timeout_s < 0:
        raise ValueError(f"graceful_timeout_s must be a finite number of seconds >= 0, got {graceful_timeout_s!r}")


def _run_exiting_cleanly(server: object) -> str | None:
    """Run a uvicorn server; return the name of the signal that stopped it, if any.

    After its graceful shutdown uvicorn re-raises the signal it caught into the handler that was installed before
    it started, so that by default the process dies of SIGTERM (exit status -15) even though nothing was lost.
    Installing a handler that only records the signal makes a drained shutdown a normal return (exit status 0).
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        server.run()
        return None

    def record(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else None
