"""Waiting until ``aifactory up``'s services say they are ready, over NATS.

Each service answers ``service_status`` (``aifactory.bus.status``) once connected,
with ``ready: true`` once fully started. ``wait_until_ready`` asks every service
in turn until all are ready; a service whose process exits, or that is not ready
within the timeout, raises ``ServiceNotReady`` naming it with the tail of its log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable
from aifactory.bus.settings import Namespace
from aifactory.bus.status import service_status
from aifactory.cli.supervisor import Supervisor
from aifactory.contracts.errors import ContractError
from aifactory.contracts.system.v1 import ServiceStatus

POLL_S = 0.05
TAIL_SHOWN = 15


class ServiceNotReady(Exception):
    """A service exited or did not report ready in time; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ReadyService:
    """A service that reported ready: what ``up`` prints about it."""

    name: str
    pid: int
    ready_after_s: float
    status: ServiceStatus
    log_file: Path | None


def _not_ready(
    name: str, why: str, supervisor: Supervisor, log_file: Path | None
) -> ServiceNotReady:
    tail = supervisor.last_lines(name)[-TAIL_SHOWN:]
    where = f"; its log is {log_file}" if log_file is not None else ""
    shown = "\n".join(f"  {line}" for line in tail) if tail else "  (it wrote nothing)"
    return ServiceNotReady(f"service {name} {why}{where}; its last lines:\n{shown}")


async def _ready_status(nc: Client, name: str, namespace: Namespace) -> ServiceStatus | None:
    try:
        status = await service_status(
            nc, name, namespace=namespace, timeout=1.0, responder_wait=0.05
        )
    except (ServiceUnavailable, CommandFailed, ContractError):
        return None
    return status if status.ready else None


async def wait_until_ready(
    nc: Client,
    names: Sequence[str],
    supervisor: Supervisor,
    *,
    namespace: Namespace,
    started_at: dict[str, float],
    log_files: dict[str, Path],
    timeout: float,
) -> list[ReadyService]:
    """Every service's status once all are ready, in ``names`` order (see module docstring)."""

    async def one(name: str) -> ReadyService:
        deadline = time.monotonic() + timeout
        while True:
            code = supervisor.returncode_of(name)
            if code is not None:
                raise _not_ready(
                    name,
                    f"exited with code {code} before it was ready",
                    supervisor,
                    log_files.get(name),
                )
            status = await _ready_status(nc, name, namespace)
            if status is not None:
                return ReadyService(
                    name=name,
                    pid=supervisor.pid_of(name) or status.pid,
                    ready_after_s=time.monotonic() - started_at[name],
                    status=status,
                    log_file=log_files.get(name),
                )
            if time.monotonic() >= deadline:
                raise _not_ready(
                    name,
                    f"did not report ready within {timeout:g}s",
                    supervisor,
                    log_files.get(name),
                )
            await asyncio.sleep(POLL_S)

    tasks = [asyncio.create_task(one(name), name=f"ready-{name}") for name in names]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
