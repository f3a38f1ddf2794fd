"""Provisioning the factory's JetStream streams from the contracts registry.

``aifactory up`` calls ``provision_factory`` once NATS answers: it loads every
contract module (so the registry is complete), derives the streams with
``factory_topology`` and makes the server match, inside the settings' namespace
(``AIFACTORY_SUBJECT_PREFIX``). Running it against an already provisioned server
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.errors import Error as NatsError

from aifactory.bus.settings import BusSettings
from aifactory.bus.topology import factory_topology, provision
from aifactory.cli.connection import connect
from aifactory.cli.console import CliError
from aifactory.contracts.catalog import load_all


@dataclass(frozen=True, slots=True)
class ProvisionSummary:
    """What provisioning did: streams created and updated, and every stream it manages."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    streams: tuple[str, ...]

    def describe(self) -> str:
        """A one-line progress message, e.g. ``2 created, 0 updated (A, B)``."""
        return (
            f"{len(self.created)} created, {len(self.updated)} updated ({', '.join(self.streams)})"
        )


RETRY_FOR_S = 15.0
"""How long ``up`` retries a JetStream API call that fails as if the cluster were still
forming; a server without JetStream fails the same way, so not for long."""


async def provision_factory(settings: BusSettings) -> ProvisionSummary:
    """Create or update the factory's streams on the server ``settings`` point at."""
    registry = load_all()
    topology = factory_topology(settings, registry=registry)
    nc = await connect(settings.nats_url)
    try:
        report = await provision(
            nc.jetstream(), topology, settings.namespace, retry_for_s=RETRY_FOR_S
        )
    except NatsError as error:
        raise CliError(
            f"cannot provision streams at {settings.display_url}: {error or type(error).__name__}; "
            "is JetStream enabled on that server (nats-server -js)?"
        ) from None
    finally:
        await nc.close()
    return ProvisionSummary(
        created=report.created_streams,
        updated=report.updated_streams,
        streams=tuple(settings.namespace.stream(s.name) for s in topology.streams),
    )
