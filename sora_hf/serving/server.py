"""Run the app under uvicorn: `sora-hf serve` calls `serve()`."""

from __future__ import annotations

import logging
import signal
import threading

from .app import ServerSettings, create_app, load_pipeline

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
    """
    import torch
    import uvicorn

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
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
    )
    logger.info("serving %s as %s on http://%s:%d", checkpoint, task, host, port)
    stopped_by = _run_exiting_cleanly(uvicorn.Server(config))
    if stopped_by:
        logger.warning("stopped on %s after answering every accepted request", stopped_by)


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
