"""System contracts, version 1: every service answers ``service_status`` about itself.

The bus kit's ``Service`` serves ``factory.system.v1.qry.service_status.<service>``
from the moment it is connected to NATS, so a supervisor (``aifactory up``), a
readiness probe or an operator can ask one service by name whether it is up and
fully started. ``ready`` turns true once the service has provisioned its streams and
consumers, subscribed its commands and started its background work (a service that
starts more after the kit's start says so itself); until then it answers
``ready: false``. Several replicas share the subject in a queue group: any one
answers.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from aifactory.contracts.base import Contract, Timestamp
from aifactory.contracts.registry import message

ServiceName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
]


class ServiceStatus(Contract, frozen=True, kw_only=True):
    """Reply to ``GetServiceStatus``: one running instance of a service, as it sees itself."""

    service: ServiceName
    instance: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """This process's instance id (``<host>-<pid>-<random>``), unique per start."""
    pid: Annotated[int, msgspec.Meta(ge=0)]
    version: Annotated[str, msgspec.Meta(max_length=64)] = ""
    """The version of the service's package, when installed as one."""
    started_at: Timestamp
    """When the process began starting (before it connected to NATS)."""
    ready: bool
    ready_at: Timestamp | None = None
    metrics_url: Annotated[str, msgspec.Meta(max_length=256)] = ""
    """Where Prometheus scrapes this instance (empty: metrics are off)."""
    consumers: list[str] = msgspec.field(default_factory=list)
    """The durable consumers it runs."""
    commands: list[str] = msgspec.field(default_factory=list)
    """The command and query subjects it serves."""


@message(
    domain="system",
    name="service_status",
    version=1,
    kind="qry",
    scope="service",
    reply=ServiceStatus,
)
class GetServiceStatus(Contract, frozen=True, kw_only=True):
    """Ask one service (the subject's scope token is its name) whether it is up and ready."""
