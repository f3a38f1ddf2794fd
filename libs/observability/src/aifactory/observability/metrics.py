"""Prometheus metrics of one service, in a registry of its own.

``ServiceMetrics(service)`` holds the bus-level series every service exports:
messages consumed, published, redelivered and dead-lettered, and handler latency.
Each object has its own ``CollectorRegistry`` (never the global default one), so a
process, or a test, can create as many as it likes. The hot path asks for a label
child once and keeps it (``consumed = metrics.consumed("scheduling-jobs")`` then
``consumed.inc()``); children are cached, so asking again is a dict lookup.
``start_metrics_server(metrics, port)`` serves ``/metrics`` over HTTP from a daemon
thread; ``render()`` gives the same exposition text in-process.

Label values are bounded sets: a consumer's durable name, a handler's name, a
subject *pattern* (``factory.example.v1.evt.widget_registered.{tenant}``), never a
subject with a tenant or node id in it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.process_collector import ProcessCollector

HANDLER_SECONDS_BUCKETS: Sequence[float] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Handler latency buckets: sub-millisecond handlers up to slow database work."""


class ServiceMetrics:
    """The bus-level Prometheus series of one service, in their own registry."""

    def __init__(self, service: str, *, process_metrics: bool = True) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=self.registry)
        self._consumed = Counter(
            "aifactory_messages_consumed",
            "Messages a consumer handled (acknowledged), by consumer.",
            ["service", "consumer"],
            registry=self.registry,
        )
        self._published = Counter(
            "aifactory_messages_published",
            "Messages published (acknowledged by JetStream or sent on core NATS), by subject.",
            ["service", "subject"],
            registry=self.registry,
        )
        self._redelivered = Counter(
            "aifactory_messages_redelivered",
            "Deliveries that were redeliveries of a message seen before, by consumer.",
            ["service", "consumer"],
            registry=self.registry,
        )
        self._dead_lettered = Counter(
            "aifactory_messages_dead_lettered",
            "Messages a consumer gave up on and sent to the dead-letter stream, by reason.",
            ["service", "consumer", "reason"],
            registry=self.registry,
        )
        self._handler_seconds = Histogram(
            "aifactory_handler_seconds",
            "Time spent in a message handler, by handler.",
            ["service", "handler"],
            buckets=HANDLER_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], Counter] = {}
        self._histogram_children: dict[str, Histogram] = {}

    def _child(self, family: str, counter: Counter, *labels: str) -> Counter:
        key = (family, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(self.service, *labels)
        return child

    def consumed(self, consumer: str) -> Counter:
        """The ``aifactory_messages_consumed_total`` counter of ``consumer``."""
        return self._child("consumed", self._consumed, consumer)

    def published(self, subject: str) -> Counter:
        """The ``aifactory_messages_published_total`` counter of a subject pattern."""
        return self._child("published", self._published, subject)

    def redelivered(self, consumer: str) -> Counter:
        """The ``aifactory_messages_redelivered_total`` counter of ``consumer``."""
        return self._child("redelivered", self._redelivered, consumer)

    def dead_lettered(self, consumer: str, reason: str) -> Counter:
        """The ``aifactory_messages_dead_lettered_total`` counter of ``consumer`` and ``reason``."""
        return self._child("dead_lettered", self._dead_lettered, consumer, reason)

    def handler_seconds(self, handler: str) -> Histogram:
        """The ``aifactory_handler_seconds`` histogram of ``handler``.

        ``with metrics.handler_seconds("place_job").time(): ...`` or ``.observe(s)``.
        """
        child = self._histogram_children.get(handler)
        if child is None:
            child = self._histogram_children[handler] = self._handler_seconds.labels(
                self.service, handler
            )
        return child

    def render(self) -> str:
        """The Prometheus text exposition of this registry (what ``/metrics`` serves)."""
        return generate_latest(self.registry).decode()


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP endpoint; ``stop()`` shuts it down."""

    server: WSGIServer
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        """The URL Prometheus scrapes."""
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    metrics: ServiceMetrics,
    port: int,
    *,
    host: str = "0.0.0.0",  # noqa: S104 - Prometheus scrapes from other hosts
) -> MetricsServer | None:
    """Serve ``metrics`` at ``http://host:port/metrics`` from a daemon thread.

    ``port=0`` means metrics are disabled: nothing is started and ``None`` returned.
    """
    if port == 0:
        return None
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server=server, thread=thread, host=host, port=port)
