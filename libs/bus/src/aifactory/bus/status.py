"""Readiness over NATS: every service answers ``service_status`` about itself.

``StatusEndpoint`` is what a ``Service`` runs: from the moment it is connected it
answers ``factory.system.v1.qry.service_status.<service>`` (queue group: the service
name) with a ``ServiceStatus`` whose ``ready`` is false until the service's owner
calls ``mark_ready()``. The reply follows the kit's request/reply convention
(``ce-type: <query>.reply``), so the kit's ``request`` (or ``service_status`` below)
reads it. No database is touched: asking is cheap and never blocks on a busy store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from aifactory.bus.rpc import request
from aifactory.bus.settings import ROOT_NAMESPACE, Namespace
from aifactory.contracts.cloudevents import CONTENT_TYPE, H_CONTENT_TYPE, H_TYPE
from aifactory.contracts.envelope import encode_body
from aifactory.contracts.registry import spec_of
from aifactory.contracts.system.v1 import GetServiceStatus, ServiceStatus

log = structlog.get_logger(__name__)
STATUS_SPEC = spec_of(GetServiceStatus)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _version_of(service: str) -> str:
    try:
        return package_version(f"aifactory-{service}")[:64]
    except PackageNotFoundError:
        return ""


class StatusEndpoint:
    """Answers ``service_status`` for one running service instance."""

    def __init__(
        self,
        nc: Client,
        *,
        service: str,
        namespace: Namespace,
        started_at: dt.datetime,
        describe: Callable[[], tuple[str, Sequence[str], Sequence[str]]],
    ) -> None:
        """``describe()`` gives the metrics URL, consumer names and command subjects now."""
        self.nc = nc
        self.service = service
        self.namespace = namespace
        self.started_at = started_at
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"[-128:]
        self.ready_at: dt.datetime | None = None
        self._describe = describe
        self._version = _version_of(service)
        self._subscription: Subscription | None = None
        self._reply_headers = {
            H_TYPE: STATUS_SPEC.reply_ce_type or "",
            H_CONTENT_TYPE: CONTENT_TYPE,
        }

    @property
    def subject(self) -> str:
        """The subject this instance answers on."""
        return self.namespace.subject(STATUS_SPEC.subject(self.service))

    @property
    def ready(self) -> bool:
        """Whether ``mark_ready`` was called."""
        return self.ready_at is not None

    def mark_ready(self) -> None:
        """From now on, answer ``ready: true`` (idempotent)."""
        if self.ready_at is None:
            self.ready_at = _utcnow()
            log.info("service_ready", service=self.service, instance=self.instance)

    def status(self) -> ServiceStatus:
        """This instance's status now."""
        metrics_url, consumers, commands = self._describe()
        return ServiceStatus(
            service=self.service,
            instance=self.instance,
            pid=os.getpid(),
            version=self._version,
            started_at=self.started_at,
            ready=self.ready,
            ready_at=self.ready_at,
            metrics_url=metrics_url,
            consumers=list(consumers),
            commands=list(commands),
        )

    async def _answer(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            await self.nc.publish(
                msg.reply, encode_body(self.status()), headers=self._reply_headers
            )
        except Exception:  # a lost reply is the asker's timeout, not our crash
            log.warning("status_reply_not_sent", service=self.service, exc_info=True)

    async def start(self) -> None:
        """Subscribe (queue group: the service name)."""
        self._subscription = await self.nc.subscribe(
            self.subject, queue=self.service, cb=self._answer
        )

    async def close(self) -> None:
        """Stop answering (idempotent)."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None


async def service_status(
    nc: Client,
    service: str,
    *,
    namespace: Namespace = ROOT_NAMESPACE,
    timeout: float = 2.0,
    responder_wait: float = 0.5,
) -> ServiceStatus:
    """Ask ``service`` for its status; ``ServiceUnavailable`` when no instance answers."""
    return await request(
        nc,
        GetServiceStatus(),
        ServiceStatus,
        namespace=namespace,
        scope=service,
        timeout=timeout,
        responder_wait=responder_wait,
    )
