"""Reading and writing the health tables, and emitting the events of a change.

``load_monitor`` rebuilds the monitor after a restart: expected nodes with their
published verdicts and last known intervals, open alerts, active silences.
``save_changes`` writes one evaluation's changes in the caller's unit of work and
emits their events through the outbox in the same transaction: ``NodeHealthChanged``
per verdict, ``AlertRaised`` / ``AlertResolved`` per announced alert (a silenced
alert is recorded, not announced).
"""

from __future__ import annotations

import datetime as dt

import msgspec
from sqlalchemy import bindparam, insert, update
from sqlmodel import col, select

from aifactory.contracts.health.v1 import (
    AlertRaised,
    AlertResolved,
    HealthReason,
    NodeHealthChanged,
    SilenceView,
)
from aifactory.health.alerts import AlertChange, OpenAlert, Silence
from aifactory.health.domain import NodeInfo, timestamp
from aifactory.health.monitor import Changes, HealthMonitor, VerdictChange
from aifactory.health.tables import HealthAlertRow, HealthNodeRow, HealthSilenceRow
from aifactory.store.store import Store
from aifactory.store.uow import NewEvent, UnitOfWork

_reasons_decoder = msgspec.json.Decoder(list[HealthReason])
_encoder = msgspec.json.Encoder()


def _at(row_time: dt.datetime | None) -> float | None:
    return row_time.timestamp() if row_time is not None else None


async def load_monitor(store: Store, monitor: HealthMonitor, now: float) -> int:
    """Fill ``monitor`` from the database; returns the number of nodes loaded."""
    async with store.session() as session:
        nodes = (await session.exec(select(HealthNodeRow))).all()
        alerts = (
            await session.exec(select(HealthAlertRow).where(col(HealthAlertRow.state) == "open"))
        ).all()
        silences = (
            await session.exec(
                select(HealthSilenceRow).where(
                    col(HealthSilenceRow.ends_at) > timestamp(now),
                    col(HealthSilenceRow.lifted_at).is_(None),
                )
            )
        ).all()
    for row in nodes:
        if row.admin_state == "retired":
            continue
        node = monitor.upsert_node(_info(row), now=now, interval_s=row.interval_s)
        node.verdict = row.verdict  # type: ignore[assignment]
        node.last_raw = node.verdict
        node.action = row.recommended_action  # type: ignore[assignment]
        node.reasons = tuple(_reasons_decoder.decode(row.reasons_json))
        node.verdict_first_seen = _at(row.first_seen)
        node.observed_at = _at(row.observed_at)
        node.interval_saved = row.interval_s
    for alert in alerts:
        owner = monitor.nodes.get(alert.node_id)
        if owner is None:
            continue
        owner.alerts[alert.rule] = OpenAlert(
            rule=alert.rule,
            severity=alert.severity,  # type: ignore[arg-type]
            summary=alert.summary,
            component=alert.component,
            first_seen=alert.first_seen.timestamp(),
            raised_at=alert.raised_at.timestamp(),
            alert_id=alert.alert_id,
            announced=alert.announced,
            occurrences=alert.occurrences,
        )
    for silence in silences:
        monitor.add_silence(
            Silence(silence.silence_id, silence.node_id, silence.rule, silence.ends_at.timestamp())
        )
    return len(monitor.nodes)


def _info(row: HealthNodeRow) -> NodeInfo:
    return NodeInfo(
        node_id=row.node_id,
        site_id=row.site_id,
        rack_id=row.rack_id,
        accelerators=row.accelerators,
        admin_state=row.admin_state,
    )


async def upsert_node_row(uow: UnitOfWork, info: NodeInfo, now: float) -> None:
    """Record what inventory says about a node (its verdict columns are left alone)."""
    row = await uow.session.get(HealthNodeRow, info.node_id)
    if row is None:
        row = HealthNodeRow(node_id=info.node_id, site_id=info.site_id, updated_at=timestamp(now))
    row.site_id = info.site_id
    row.rack_id = info.rack_id
    row.accelerators = info.accelerators
    row.admin_state = info.admin_state
    row.updated_at = timestamp(now)
    uow.session.add(row)


async def save_intervals(uow: UnitOfWork, intervals: dict[str, float]) -> None:
    """Remember nodes' reporting intervals (used for the grace after a restart)."""
    if not intervals:
        return
    table = HealthNodeRow.__table__  # type: ignore[attr-defined]
    statement = (
        update(table)
        .where(table.c.node_id == bindparam("b_node_id"))
        .values(interval_s=bindparam("b_interval_s"))
    )
    connection = await uow.session.connection()
    await connection.execute(
        statement, [{"b_node_id": n, "b_interval_s": s} for n, s in intervals.items()]
    )


async def save_changes(uow: UnitOfWork, changes: Changes) -> None:
    """Write ``changes`` and emit their events, in ``uow``'s transaction (set-based writes)."""
    if changes.verdicts:
        await _save_verdicts(uow, changes.verdicts)
    if changes.alerts:
        await _save_alerts(uow, changes.alerts)


async def _save_verdicts(uow: UnitOfWork, verdicts: list[VerdictChange]) -> None:
    table = HealthNodeRow.__table__  # type: ignore[attr-defined]
    statement = (
        update(table)
        .where(table.c.node_id == bindparam("b_node_id"))
        .values(
            verdict=bindparam("b_verdict"),
            recommended_action=bindparam("b_action"),
            reasons_json=bindparam("b_reasons"),
            first_seen=bindparam("b_first_seen"),
            observed_at=bindparam("b_observed_at"),
            updated_at=bindparam("b_observed_at"),
        )
    )
    rows = []
    for change in verdicts:
        decision = change.decision
        node = change.node
        rows.append(
            {
                "b_node_id": node.node_id,
                "b_verdict": decision.verdict,
                "b_action": decision.action,
                "b_reasons": _encoder.encode(list(decision.reasons)).decode(),
                "b_first_seen": timestamp(decision.first_seen),
                "b_observed_at": timestamp(decision.observed_at),
            }
        )
        uow.emit(
            NewEvent(
                NodeHealthChanged(
                    node_id=node.node_id,
                    site_id=node.site_id,
                    verdict=decision.verdict,
                    previous_verdict=decision.previous,
                    reasons=list(decision.reasons),
                    recommended_action=decision.action,
                    first_seen=timestamp(decision.first_seen),
                    observed_at=timestamp(decision.observed_at),
                ),
                scope=node.site_id,
                subject=node.node_id,
            )
        )
    connection = await uow.session.connection()
    await connection.execute(statement, rows)


async def _save_alerts(uow: UnitOfWork, changes: list[AlertChange]) -> None:
    table = HealthAlertRow.__table__  # type: ignore[attr-defined]
    inserts = []
    updates = []
    for change in changes:
        alert = change.alert
        if change.kind == "opened":
            inserts.append(
                {
                    "alert_id": alert.alert_id,
                    "node_id": change.node_id,
                    "site_id": change.site_id,
                    "rack_id": change.rack_id,
                    "rule": alert.rule,
                    "severity": alert.severity,
                    "summary": alert.summary[:512],
                    "component": alert.component[:256],
                    "state": "open",
                    "announced": change.announce,
                    "occurrences": alert.occurrences,
                    "first_seen": timestamp(alert.first_seen),
                    "raised_at": timestamp(alert.raised_at),
                    "resolved_at": None,
                }
            )
        else:
            resolved = change.kind == "resolved"
            updates.append(
                {
                    "b_alert_id": alert.alert_id,
                    "b_state": "resolved" if resolved else "open",
                    "b_announced": alert.announced,
                    "b_occurrences": alert.occurrences,
                    "b_resolved_at": timestamp(change.at) if resolved else None,
                }
            )
        if change.announce:
            uow.emit(NewEvent(_alert_event(change), scope=change.site_id, subject=change.node_id))
    connection = await uow.session.connection()
    if inserts:
        await connection.execute(insert(table), inserts)
    if updates:
        statement = (
            update(table)
            .where(table.c.alert_id == bindparam("b_alert_id"))
            .values(
                state=bindparam("b_state"),
                announced=bindparam("b_announced"),
                occurrences=bindparam("b_occurrences"),
                resolved_at=bindparam("b_resolved_at"),
            )
        )
        await connection.execute(statement, updates)


def _alert_event(change: AlertChange) -> AlertRaised | AlertResolved:
    alert = change.alert
    if change.kind == "resolved":
        return AlertResolved(
            alert_id=alert.alert_id,
            node_id=change.node_id,
            site_id=change.site_id,
            rack_id=change.rack_id,
            rule=alert.rule,
            raised_at=timestamp(alert.raised_at),
            resolved_at=timestamp(change.at),
        )
    return AlertRaised(
        alert_id=alert.alert_id,
        node_id=change.node_id,
        site_id=change.site_id,
        rack_id=change.rack_id,
        rule=alert.rule,
        severity=alert.severity,
        summary=alert.summary[:512],
        component=alert.component[:256],
        first_seen=timestamp(alert.first_seen),
        raised_at=timestamp(alert.raised_at),
    )


def silence_view(row: HealthSilenceRow) -> SilenceView:
    """The contract view of a silence row."""
    return SilenceView(
        silence_id=row.silence_id,
        node_id=row.node_id,
        rule=row.rule,
        reason=row.reason,
        actor=row.actor,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        lifted=row.lifted_at is not None,
    )
