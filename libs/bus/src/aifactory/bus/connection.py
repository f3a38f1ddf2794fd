"""A service's connection to the factory bus, and the pieces built on it.

``Bus`` holds one nats-py connection and its JetStream context, and builds the
kit's parts bound to the service's name and subject namespace: the direct event
publisher, the dead-letter publisher, durable consumers and the outbox relay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from aifactory.bus.consumer import BatchHandler, EventConsumer, EventHandler
from aifactory.bus.deadletter import DeadLetterPublisher
from aifactory.bus.publisher import EventPublisher
from aifactory.bus.settings import BusSettings
from aifactory.bus.topology import ConsumerSpec, ProvisionReport, factory_topology, provision
from aifactory.contracts.base import Contract
from aifactory.store.relay import OutboxRelay
from aifactory.store.store import Store

log = structlog.get_logger(__name__)


class BusUnavailable(ConnectionError):
    """NATS could not be reached at the configured URL."""


async def _on_error(exc: Exception) -> None:
    log.warning("nats_error", error=repr(exc))


async def _on_disconnected() -> None:
    log.warning("nats_disconnected")


async def _on_reconnected() -> None:
    log.info("nats_reconnected")


class Bus:
    """One service's NATS connection plus the bus kit bound to it."""

    def __init__(self, settings: BusSettings, *, service: str) -> None:
        self.settings = settings
        self.service = service
        self.namespace = settings.namespace
        self.source = f"/aifactory/{service}"
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def connect(self, *, connect_timeout: float = 5.0, **options: Any) -> Bus:
        """Connect (reconnecting forever afterwards); ``BusUnavailable`` if unreachable."""
        try:
            self._nc = await nats.connect(
                self.settings.nats_url,
                name=f"aifactory-{self.service}",
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                error_cb=_on_error,
                disconnected_cb=_on_disconnected,
                reconnected_cb=_on_reconnected,
                **options,
            )
        except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
            raise BusUnavailable(
                f"cannot reach NATS at {self.settings.nats_url}: {exc}. "
                "Start it with `aifactory up` or set AIFACTORY_NATS_URL."
            ) from exc
        self._js = self._nc.jetstream(publish_async_max_pending=8000)
        return self

    @property
    def nc(self) -> Client:
        """The nats-py client (after ``connect``)."""
        if self._nc is None:
            raise RuntimeError("Bus.connect() has not been awaited")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (after ``connect``)."""
        if self._js is None:
            raise RuntimeError("Bus.connect() has not been awaited")
        return self._js

    async def provision(self, consumers: Iterable[ConsumerSpec] = ()) -> ProvisionReport:
        """Create/update the factory streams and the given durable consumers."""
        return await provision(self.js, factory_topology(self.settings, consumers), self.namespace)

    @property
    def publisher(self) -> EventPublisher:
        """Direct publisher for stateless producers."""
        return EventPublisher(self.js, source=self.source, namespace=self.namespace)

    @property
    def dead_letters(self) -> DeadLetterPublisher:
        """This service's dead-letter publisher."""
        return DeadLetterPublisher(self.js, service=self.service, namespace=self.namespace)

    def relay(self, store: Store, **options: Any) -> OutboxRelay:
        """An outbox relay publishing ``store``'s outbox into this namespace."""
        return OutboxRelay(store, self.js, qualify=self.namespace.subject, **options)

    def consumer(
        self,
        spec: ConsumerSpec,
        store: Store,
        *,
        handlers: Mapping[type[Contract], EventHandler] | None = None,
        batch_handler: BatchHandler | None = None,
        **options: Any,
    ) -> EventConsumer:
        """A durable consumer applying events into ``store``."""
        return EventConsumer(
            js=self.js,
            store=store,
            spec=spec,
            dead_letters=self.dead_letters,
            namespace=self.namespace,
            handlers=handlers,
            batch_handler=batch_handler,
            **options,
        )

    async def close(self) -> None:
        """Flush and close the connection."""
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = None
        self._js = None
