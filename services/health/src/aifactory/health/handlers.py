"""The health service's use cases: inventory events in, commands and queries answered.

Inventory events say which nodes to expect: ``NodeRegistered`` / ``NodeUpdated``
add or update a node (site, rack, accelerator count, admin state), and
``NodeStateChanged`` follows its admin state (a retired node is no longer
expected; provisioning and maintenance nodes are not expected to heartbeat). Each
is recorded in ``health_nodes`` in the consumer's transaction and mirrored into the
monitor (an idempotent upsert, so a redelivery after a rollback is harmless).

Commands: ``SilenceNode`` / ``LiftSilence``. Queries: ``ListNodeHealth`` (from the
monitor's memory: current reasons and last heartbeat) and ``ListAlerts`` (from the
alert history in the database). Refusals raise ``HealthError`` with a typed code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from sqlmodel import col, select

from aifactory.contracts.envelope import Envelope
from aifactory.contracts.health.v1 import (
    AlertGroup,
    AlertReport,
    AlertView,
    LiftSilence,
    ListAlerts,
    ListNodeHealth,
    NodeHealthPage,
    NodeHealthView,
    SilenceNode,
    SilenceView,
    Verdict,
)
from aifactory.contracts.inventory.v1 import NodeRegistered, NodeStateChanged, NodeUpdated
from aifactory.contracts.replies import ErrorCode
from aifactory.health.alerts import Silence
from aifactory.health.domain import NodeHealth, NodeInfo, timestamp
from aifactory.health.ingest import TelemetryIngest
from aifactory.health.monitor import HealthMonitor
from aifactory.health.store import silence_view, upsert_node_row
from aifactory.health.tables import HealthAlertRow, HealthNodeRow, HealthSilenceRow
from aifactory.store.uow import UnitOfWork


class HealthError(Exception):
    """A command or query the health service refuses, with its reply code."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, str]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class HealthHandlers:
    """The use cases, bound to the monitor and the ingest they read and change."""

    def __init__(
        self,
        monitor: HealthMonitor,
        ingest: TelemetryIngest,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.monitor = monitor
        self.ingest = ingest
        self.clock = clock

    # ------------------------------------------------------------ inventory events
    async def _expect(self, info: NodeInfo, uow: UnitOfWork) -> None:
        now = self.clock()
        await upsert_node_row(uow, info, now)
        if info.admin_state == "retired":
            self.monitor.remove_node(info.node_id)
        else:
            self.monitor.upsert_node(info, now=now)

    async def on_node_registered(self, envelope: Envelope[NodeRegistered], uow: UnitOfWork) -> None:
        """A new node: expect it."""
        node = envelope.data.node
        await self._expect(
            NodeInfo(node.node_id, node.site_id, node.rack_id, node.accelerator_count, node.state),
            uow,
        )

    async def on_node_updated(self, envelope: Envelope[NodeUpdated], uow: UnitOfWork) -> None:
        """A node's hardware or rack changed: follow it."""
        node = envelope.data.node
        await self._expect(
            NodeInfo(node.node_id, node.site_id, node.rack_id, node.accelerator_count, node.state),
            uow,
        )

    async def on_node_state_changed(
        self, envelope: Envelope[NodeStateChanged], uow: UnitOfWork
    ) -> None:
        """A node's admin state changed: follow it (retired: stop expecting it)."""
        data = envelope.data
        await self._expect(
            NodeInfo(
                data.node_id, data.site_id, data.rack_id, data.accelerator_count, data.to_state
            ),
            uow,
        )

    # ------------------------------------------------------------ silences
    async def silence_node(self, command: SilenceNode, uow: UnitOfWork) -> SilenceView:
        """Hold back a node's alerts (all, or one rule) for ``duration_s``."""
        if command.node_id not in self.monitor.nodes:
            known = await uow.session.get(HealthNodeRow, command.node_id)
            if known is None:
                raise HealthError(
                    "not_found",
                    f"node {command.node_id} is not known to the health service "
                    "(register it in inventory first)",
                    {"node_id": command.node_id},
                )
        now = self.clock()
        row = HealthSilenceRow(
            silence_id=str(uuid.uuid4()),
            node_id=command.node_id,
            rule=command.rule,
            reason=command.reason,
            actor=command.actor,
            starts_at=timestamp(now),
            ends_at=timestamp(now + command.duration_s),
        )
        uow.session.add(row)
        await uow.session.flush()
        self.monitor.add_silence(
            Silence(row.silence_id, row.node_id, row.rule, now + command.duration_s)
        )
        return silence_view(row)

    async def lift_silence(self, command: LiftSilence, uow: UnitOfWork) -> SilenceView:
        """End a silence now; alerts it held back are announced on the next tick."""
        row = await uow.session.get(HealthSilenceRow, command.silence_id)
        if row is None:
            raise HealthError(
                "not_found",
                f"no silence {command.silence_id}",
                {"silence_id": command.silence_id},
            )
        if row.lifted_at is None:
            row.lifted_at = timestamp(self.clock())
            uow.session.add(row)
            await uow.session.flush()
        self.monitor.lift_silence(row.silence_id)
        return silence_view(row)

    # ------------------------------------------------------------ queries
    async def list_node_health(self, query: ListNodeHealth, _uow: UnitOfWork) -> NodeHealthPage:
        """Verdicts from the monitor, in node id order, a page at a time."""
        counts: dict[Verdict, int] = {}
        selected: list[NodeHealth] = []
        for node in self.monitor.nodes.values():
            counts[node.verdict] = counts.get(node.verdict, 0) + 1
            if query.verdict is not None and node.verdict != query.verdict:
                continue
            if query.site_id is not None and node.info.site_id != query.site_id:
                continue
            selected.append(node)
        selected.sort(key=lambda n: n.info.node_id)
        total = len(selected)
        if query.after is not None:
            selected = [n for n in selected if n.info.node_id > query.after]
        page = selected[: query.limit]
        more = len(selected) > query.limit
        return NodeHealthPage(
            nodes=[_view(n) for n in page],
            total=total,
            next_after=page[-1].info.node_id if more and page else None,
            counts=counts,
            ingest=self.ingest.stats(),
        )

    async def list_alerts(self, query: ListAlerts, uow: UnitOfWork) -> AlertReport:
        """Open alerts (or the history), newest first, grouped per rack; active silences."""
        statement = select(HealthAlertRow)
        if not query.include_resolved:
            statement = statement.where(col(HealthAlertRow.state) == "open")
        if query.node_id is not None:
            statement = statement.where(col(HealthAlertRow.node_id) == query.node_id)
        statement = statement.order_by(col(HealthAlertRow.raised_at).desc()).limit(query.limit)
        rows = (await uow.session.exec(statement)).all()
        now = self.clock()
        groups: dict[tuple[str, str], list[AlertView]] = {}
        for row in rows:
            silenced = row.state == "open" and self.monitor.silences.covers(
                row.node_id, row.rule, now
            )
            groups.setdefault((row.site_id, row.rack_id), []).append(_alert_view(row, silenced))
        silences = (
            await uow.session.exec(
                select(HealthSilenceRow)
                .where(
                    col(HealthSilenceRow.ends_at) > timestamp(now),
                    col(HealthSilenceRow.lifted_at).is_(None),
                )
                .order_by(col(HealthSilenceRow.ends_at))
            )
        ).all()
        return AlertReport(
            groups=[
                AlertGroup(site_id=site, rack_id=rack, alerts=alerts)
                for (site, rack), alerts in sorted(groups.items())
            ],
            total=len(rows),
            silences=[silence_view(s) for s in silences],
        )


def _view(node: NodeHealth) -> NodeHealthView:
    return NodeHealthView(
        node_id=node.info.node_id,
        site_id=node.info.site_id,
        rack_id=node.info.rack_id,
        verdict=node.verdict,
        recommended_action=node.action,
        reasons=list(node.reasons),
        first_seen=timestamp(node.verdict_first_seen) if node.verdict_first_seen else None,
        observed_at=timestamp(node.observed_at) if node.observed_at else None,
        last_heartbeat_at=timestamp(node.last_seen) if node.last_seen else None,
        admin_state=node.info.admin_state,
    )


def _alert_view(row: HealthAlertRow, silenced: bool) -> AlertView:
    return AlertView(
        alert_id=row.alert_id,
        node_id=row.node_id,
        site_id=row.site_id,
        rack_id=row.rack_id,
        rule=row.rule,
        severity=row.severity,  # type: ignore[arg-type]
        summary=row.summary,
        component=row.component,
        state=row.state,  # type: ignore[arg-type]
        silenced=silenced,
        announced=row.announced,
        occurrences=row.occurrences,
        first_seen=row.first_seen,
        raised_at=row.raised_at,
        resolved_at=row.resolved_at,
    )
