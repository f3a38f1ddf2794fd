"""A service's connection to the factory bus, and the pieces built on it.

``Bus`` holds one nats-py connection and its JetStream context, and builds the
kit's parts bound to the service's name and subject namespace: the direct event
publisher, the dead-letter publisher, durable consumers and the outbox relay.

``AIFACTORY_NATS_URL`` may list every server of a cluster; the client connects to one
and, when it goes away (crash, SIGKILL, lame-duck shutdown, partition), reconnects to
another within about a second and re-creates its subscriptions there (``RECONNECT``).
Nothing is lost meanwhile: publishes are buffered and flushed after the reconnect,
the outbox relay re-sends any batch whose acknowledgements did not come back
(JetStream drops the copies by ``Nats-Msg-Id``), and an unacknowledged delivery is
redelivered to the consumer, whose inbox applies it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

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


RECONNECT: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "allow_reconnect": True,
        # Forever: a service outlives any NATS outage and carries on when a server is back.
        "max_reconnect_attempts": -1,
        # Pause before retrying the same server (nats-py: 2 s); other servers of the
        # list are tried at once, so a lost server costs well under a second.
        "reconnect_time_wait": 0.5,
        # A server that stops answering without closing the connection (a partition, a
        # hung host) is given up after 3 missed pings 10 s apart (nats-py: 2 x 120 s).
        "ping_interval": 10,
        "max_outstanding_pings": 3,
        # Publishes buffered while reconnecting (nats-py: 2 MiB); a full relay batch fits.
        "pending_size": 16 * 1024 * 1024,
    }
)
"""nats-py reconnect options every service connection uses (see the module docstring)."""


class BusUnavailable(ConnectionError):
    """NATS could not be reached at the configured URL."""


class UnsupportedServer(RuntimeError):
    """The NATS server lacks a feature the service's consumers need."""


MULTI_FILTER_VERSION: Final = (2, 10)
"""The first nats-server release that honours a consumer's ``filter_subjects`` list."""


def check_server_supports(version: tuple[int, int], consumers: Iterable[ConsumerSpec]) -> None:
    """Refuse a server older than 2.10 when a consumer filters on several subjects.

    Older servers accept the consumer but ignore ``filter_subjects``: every event of the
    stream would be delivered, and the service would dead-letter the ones it does not
    handle.
    """
    needing = [spec.durable for spec in consumers if len(spec.filter_subjects) > 1]
    if needing and version < MULTI_FILTER_VERSION:
        raise UnsupportedServer(
            f"nats-server {version[0]}.{version[1]} ignores a consumer's filter_subjects "
            f"list, which {', '.join(needing)} need: use nats-server >= 2.10 "
            "(or let `aifactory up` start its embedded server)"
        )


async def _on_error(exc: Exception) -> None:
    log.warning("nats_error", error=repr(exc))


async def _on_disconnected() -> None:
    log.warning("nats_disconnected")


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
        """Connect to one of the configured servers (reconnecting forever afterwards).

        ``BusUnavailable`` when none of them answers. ``options`` override ``RECONNECT``
        and the other nats-py options.
        """
        try:
            self._nc = await nats.connect(
                servers=self.settings.servers,
                **{
                    "name": f"aifactory-{self.service}",
                    "connect_timeout": connect_timeout,
                    "error_cb": _on_error,
                    "disconnected_cb": _on_disconnected,
                    "reconnected_cb": self._on_reconnected,
                    **RECONNECT,
                    **options,
                },
            )
        except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
            raise BusUnavailable(
                f"cannot reach NATS at {self.settings.display_url}: {exc}. "
                "Start it with `aifactory up` or set AIFACTORY_NATS_URL."
            ) from exc
        self._js = self._nc.jetstream(publish_async_max_pending=8000)
        return self

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url if self._nc is not None else None
        server = f"{url.hostname}:{url.port}" if url is not None else None  # no credentials
        log.info("nats_reconnected", server=server)

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
        """Create/update the factory streams and the given durable consumers.

        ``UnsupportedServer`` when the server is too old for these consumers.
        """
        consumers = list(consumers)
        server = self.nc.connected_server_version
        check_server_supports((server.major, server.minor), consumers)
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
