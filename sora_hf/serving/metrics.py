"""Prometheus metrics of one server, in a registry of its own.

A private `CollectorRegistry` per app (instead of prometheus_client's global one) lets several apps live in one
process, as they do in tests, without "Duplicated timeseries" errors, and makes `/metrics` show only this server.

Exposed (all prefixed `sora_serving_`):
- `requests_total{path, method, status}` and `request_latency_seconds{path}` (histogram): every HTTP response
  sent whole, by the status the client received.
- `client_disconnects_total{path, stage}`: requests whose client went away before its response was sent
  (`stage`: `body` while sending the request body, `response` before the response was written); these are not in
  `requests_total`, since no status reached anyone.
- `errors_total{kind}`: refused or failed requests (`invalid_json`, `invalid`, `too_large`, `timeout`,
  `queue_full`, `shutting_down`, `pipeline`, `internal`).
- `batch_size` (histogram): items per pipeline call, the figure that shows whether dynamic batching batches.
- `batch_seconds` (histogram): time of each pipeline call; `items_total`: items answered.
- `queue_depth` (gauge): items waiting for a batch.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .batching import BatchObserver

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics(BatchObserver):
    """The server's counters and histograms; also the batcher's observer."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, namespace: str = "sora_serving") -> None:
        self.registry = CollectorRegistry()
        kw = {"namespace": namespace, "registry": self.registry}
        self.requests = Counter(
            "requests", "HTTP requests by path, method and status", ["path", "method", "status"], **kw
        )
        self.latency = Histogram(
            "request_latency_seconds", "HTTP request latency", ["path"], buckets=LATENCY_BUCKETS, **kw
        )
        self.disconnects = Counter(
            "client_disconnects",
            "Requests whose client went away before the response was sent",
            ["path", "stage"],
            **kw,
        )
        self.errors = Counter("errors", "Refused or failed requests by kind", ["kind"], **kw)
        self.batch_size = Histogram("batch_size", "Items per pipeline call", buckets=BATCH_SIZE_BUCKETS, **kw)
        self.batch_seconds = Histogram("batch_seconds", "Seconds per pipeline call", buckets=LATENCY_BUCKETS, **kw)
        self.items = Counter("items", "Items answered by the pipeline", **kw)
        self.queue_depth = Gauge("queue_depth", "Items waiting for a batch", **kw)
        # requests uvicorn cancelled when the graceful-shutdown timeout ran out (answered 503, not by the model):
        # what `serve()` reports on exit instead of claiming every request was answered
        self.cancelled_on_shutdown = 0

    def track_queue(self, depth: Callable[[], float]) -> None:
        """Read the queue depth at scrape time instead of updating it on every change."""
        self.queue_depth.set_function(depth)

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(path=path, method=method, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)

    def client_disconnected(self, path: str, stage: str) -> None:
        self.disconnects.labels(path=path, stage=stage).inc()

    def error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    # BatchObserver
    def batch_done(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.items.inc(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
