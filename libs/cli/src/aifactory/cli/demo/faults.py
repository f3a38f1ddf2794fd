"""The demo's fault schedule: a fatal XID, a silent node, a key revocation.

At fractions of the run (a quarter, two fifths and three fifths of ``--duration``):

1. one shared B200 node's simulated GPU reports **Xid 79** (fell off the bus): health
   fails the node, inventory marks it failed, the scheduler requeues its jobs;
2. one shared H200 node's agent goes **silent**: health declares it unreachable after
   the missed heartbeats, with the same consequences;
3. the US tenant's ``datasets`` key is **revoked**: the scheduler preempts its running
   jobs and queues the rest with ``key_unusable``.

The first two are armed in the simulated agents (``--simulate xid:79`` and
``silent`` with ``--fault-on-signal``, see ``agents``) and started with SIGUSR1 when
due; the third is a ``RevokeKey`` request sent when its time comes. ``FaultTimeline``
keeps what was injected and what the factory did about it, with the elapsed time,
for the live view and the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.cli.demo.factory import DemoFactory
from aifactory.cli.demo.tenants import ACTOR, KEY_ID, REVOKED_TENANT
from aifactory.contracts.keys.v1 import Caller, KeyDescription, RevokeKey

XID_AT = 0.25
SILENT_AT = 0.4
REVOKE_AT = 0.6
XID_CODE = 79


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which node or tenant each fault hits, and when (seconds after the workload starts)."""

    xid_node: str
    xid_at_s: float
    silent_node: str
    silent_at_s: float
    revoke_tenant: str
    revoke_at_s: float


def plan_faults(factory: DemoFactory, duration_s: float) -> FaultPlan:
    """The fault plan for ``factory`` over a run of ``duration_s`` seconds."""
    shared = factory.shared_nodes()
    xid = next(node for node in shared if node.model == "B200")
    silent = next(node for node in reversed(shared) if node.model == "H200" and node != xid)
    return FaultPlan(
        xid_node=xid.node_id,
        xid_at_s=duration_s * XID_AT,
        silent_node=silent.node_id,
        silent_at_s=duration_s * SILENT_AT,
        revoke_tenant=REVOKED_TENANT,
        revoke_at_s=duration_s * REVOKE_AT,
    )


@dataclass
class FaultTimeline:
    """What happened when, in seconds since the workload started."""

    started: float = field(default_factory=time.monotonic)
    entries: list[tuple[float, str]] = field(default_factory=list)

    def elapsed(self) -> float:
        """Seconds since the workload started."""
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        """Record ``text`` now."""
        self.entries.append((self.elapsed(), text))


async def _at(timeline: FaultTimeline, seconds: float, stop: asyncio.Event) -> bool:
    """Wait until ``seconds`` into the run; False when stopped first."""
    delay = seconds - timeline.elapsed()
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
    return not stop.is_set()


async def revoke_key(nc: Client, namespace: Namespace, tenant: str, *, caller_site: str) -> str:
    """Revoke ``tenant``'s ``datasets`` key; a one-line outcome."""
    try:
        described = await request(
            nc,
            RevokeKey(
                tenant=tenant,
                key_id=KEY_ID,
                caller=Caller(principal=ACTOR, site=caller_site),
                reason="aifactory demo: key compromise drill",
            ),
            KeyDescription,
            namespace=namespace,
            timeout=15.0,
        )
    except (CommandFailed, ServiceUnavailable) as error:
        return f"could not revoke {tenant}/{KEY_ID}: {error}"
    return f"keys: revoked {tenant}/{KEY_ID} (state {described.state})"


async def run_faults(
    plan: FaultPlan,
    timeline: FaultTimeline,
    stop: asyncio.Event,
    *,
    trigger: Callable[[str], bool],
    revoke: Callable[[str], Awaitable[str]],
) -> None:
    """Inject each fault on time: ``trigger(node)`` starts a node's armed fault."""

    def node_fault(node: str, what: str) -> Callable[[], Awaitable[str]]:
        async def inject() -> str:
            if trigger(node):
                return f"fault: {what}"
            return f"fault not injected: the agent of {node} is not running"

        return inject

    steps: list[tuple[float, Callable[[], Awaitable[str]]]] = [
        (
            plan.xid_at_s,
            node_fault(
                plan.xid_node, f"Xid {XID_CODE} on {plan.xid_node} (a GPU falls off the bus)"
            ),
        ),
        (plan.silent_at_s, node_fault(plan.silent_node, f"{plan.silent_node} goes silent")),
        (plan.revoke_at_s, lambda: revoke(plan.revoke_tenant)),
    ]
    for at_s, act in sorted(steps, key=lambda step: step[0]):
        if not await _at(timeline, at_s, stop):
            return
        timeline.note(await act())
