"""The health engine: the tick that turns buffered telemetry into persisted verdicts.

Every ``tick_s`` the engine drains the ingest buffer into the monitor and evaluates
it; a saver task writes what changed (verdicts, alerts, intervals) in one unit of
work whose outbox carries the events, then wakes the outbox relay, so a slow
database delays events but never stalls telemetry ingest. If the write fails, the
changes are kept and written with the next tick's, in order: a verdict decided is
never lost, and the monitor never decides it twice. ``stop`` lets the current tick
finish and writes what is still unsaved before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from aifactory.health.ingest import TelemetryIngest
from aifactory.health.monitor import Changes, HealthMonitor
from aifactory.health.store import load_monitor, save_changes, save_intervals
from aifactory.store.store import Store

log = structlog.get_logger(__name__)
INTERVALS_EVERY_TICKS = 20
DRAIN_CHUNK = 5_000
SLOW_SAVE_S = 1.0


class HealthEngine:
    """Runs the monitor on a fixed tick and persists its decisions."""

    def __init__(
        self,
        monitor: HealthMonitor,
        ingest: TelemetryIngest,
        store: Store,
        *,
        tick_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.monitor = monitor
        self.ingest = ingest
        self.store = store
        self.tick_s = tick_s
        self.clock = clock
        self.on_commit = on_commit
        self.ticks = 0
        self.verdicts_published = 0
        self._unsaved = Changes()
        self._intervals: dict[str, float] = {}
        self._stopping = asyncio.Event()
        self._save_wanted = asyncio.Event()

    async def load(self) -> int:
        """Resume from the database (call before consuming anything)."""
        now = self.clock()
        self.monitor.started = now
        loaded = await load_monitor(self.store, self.monitor, now)
        log.info("health_state_loaded", nodes=loaded)
        return loaded

    def judge(self) -> int:
        """Drain what is buffered now and evaluate; queue the changes. Returns messages taken."""
        backlog = self.ingest.buffered  # only what is here now: a busy stream cannot starve judging
        drained = 0
        while drained < backlog:
            drained += self.ingest.drain(self.clock(), min(DRAIN_CHUNK, backlog - drained))
        self._unsaved.extend(self.monitor.evaluate(self.clock()))
        self.ticks += 1
        if self.ticks % INTERVALS_EVERY_TICKS == 0:
            self._intervals.update(self.monitor.unsaved_intervals())
        return drained

    async def tick(self) -> Changes:
        """Judge, then persist; returns the changes written (empty when the write failed)."""
        self.judge()
        return await self.save()

    async def save(self) -> Changes:
        """Write the queued changes in one transaction; on failure keep them, in order."""
        if not self._unsaved and not self._intervals:
            return Changes()
        pending, self._unsaved = self._unsaved, Changes()
        intervals, self._intervals = self._intervals, {}
        started = time.perf_counter()
        try:
            async with self.store.unit_of_work() as uow:
                await save_changes(uow, pending)
                await save_intervals(uow, intervals)
        except Exception:
            log.exception(
                "health_changes_not_saved_will_retry",
                verdicts=len(pending.verdicts),
                alerts=len(pending.alerts),
            )
            pending.extend(self._unsaved)
            self._unsaved = pending
            self._intervals = {**intervals, **self._intervals}
            return Changes()
        took = time.perf_counter() - started
        if took > SLOW_SAVE_S:
            log.warning(
                "health_save_slow",
                seconds=round(took, 3),
                verdicts=len(pending.verdicts),
                alerts=len(pending.alerts),
            )
        self.verdicts_published += len(pending.verdicts)
        for change in pending.verdicts:
            log.info(
                "node_verdict_changed",
                node_id=change.node.node_id,
                verdict=change.decision.verdict,
                previous=change.decision.previous,
                action=change.decision.action,
                reasons=[r.code for r in change.decision.reasons],
            )
        if self.on_commit is not None:
            self.on_commit()
        return pending

    async def _saver(self) -> None:
        while True:
            await self._save_wanted.wait()
            self._save_wanted.clear()
            await self.save()

    async def run(self) -> None:
        """Judge every tick, saving in a task of its own (a slow database never stalls
        ingest), until ``stop`` is called; then write whatever is still unsaved."""
        saver = asyncio.create_task(self._saver(), name="health-saver")
        try:
            while not self._stopping.is_set():
                started = time.perf_counter()
                self.judge()
                if self._unsaved or self._intervals:
                    self._save_wanted.set()
                pause = max(0.0, self.tick_s - (time.perf_counter() - started))
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=pause)
                except TimeoutError:
                    continue
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
            await self.save()

    def stop(self) -> None:
        """Ask ``run`` to finish its tick, save, and return."""
        self._stopping.set()
