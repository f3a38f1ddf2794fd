"""Telemetry ingest: raw core-NATS messages in, monitor observations out, in batches.

The subscription callback only appends ``(subject, body)`` to a buffer
(``receive``); ``drain`` decodes the buffered messages with msgspec decoders built
once and feeds the monitor, once per engine tick. Telemetry is lossy by design, so
nothing here retries: a body that does not decode (bad JSON, wrong schema, unknown
fields, absurd values) is dropped and counted as *garbage*; a message from a node
inventory does not know is dropped and counted, and the node id is reported once in
the log (and listed in the stats); when the buffer is full, new messages are dropped
and counted as *overflow* rather than growing memory without bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import structlog

from aifactory.contracts.health.v1 import IngestStats, NodeHeartbeat, NodeTelemetry
from aifactory.contracts.registry import spec_of
from aifactory.health.monitor import HealthMonitor

log = structlog.get_logger(__name__)

TELEMETRY_FILTER = "factory.health.v1.tlm.>"
"""Every health telemetry subject (unqualified)."""
MAX_REPORTED_UNKNOWN = 10_000
MAX_LISTED_UNKNOWN = 20
GARBAGE_LOG_EVERY = 10_000


@dataclass(slots=True)
class IngestCounters:
    """What the ingest has seen (see ``IngestStats``)."""

    received: int = 0
    applied: int = 0
    garbage: int = 0
    unknown_node: int = 0
    overflow: int = 0
    unknown_ids: list[str] = field(default_factory=list)


class TelemetryIngest:
    """Buffers telemetry messages and applies them to the monitor in batches."""

    def __init__(
        self,
        monitor: HealthMonitor,
        *,
        telemetry_subject: str = spec_of(NodeTelemetry).subject(),
        heartbeat_subject: str = spec_of(NodeHeartbeat).subject(),
        max_buffer: int = 50_000,
    ) -> None:
        self.monitor = monitor
        self.telemetry_subject = telemetry_subject
        self.heartbeat_subject = heartbeat_subject
        self.max_buffer = max_buffer
        self.counters = IngestCounters()
        self._buffer: list[tuple[str, bytes]] = []
        self._telemetry = msgspec.json.Decoder(NodeTelemetry)
        self._heartbeat = msgspec.json.Decoder(NodeHeartbeat)
        self._reported_unknown: set[str] = set()

    def receive(self, subject: str, body: bytes) -> None:
        """Buffer one message (called from the subscription; never raises)."""
        if len(self._buffer) >= self.max_buffer:
            self.counters.overflow += 1
            return
        self._buffer.append((subject, body))

    @property
    def buffered(self) -> int:
        """Messages waiting for the next ``drain``."""
        return len(self._buffer)

    def drain(self, now: float, limit: int | None = None) -> int:
        """Decode and apply buffered messages (at most ``limit``); returns how many."""
        if limit is None or limit >= len(self._buffer):
            batch, self._buffer = self._buffer, []
        else:
            batch, self._buffer = self._buffer[:limit], self._buffer[limit:]
        counters = self.counters
        counters.received += len(batch)
        telemetry_subject = self.telemetry_subject
        heartbeat_subject = self.heartbeat_subject
        decode_telemetry = self._telemetry.decode
        decode_heartbeat = self._heartbeat.decode
        observe_telemetry = self.monitor.observe_telemetry
        observe_heartbeat = self.monitor.observe_heartbeat
        for subject, body in batch:
            try:
                if subject == telemetry_subject:
                    telemetry = decode_telemetry(body)
                    known = observe_telemetry(telemetry, now)
                    node_id = telemetry.node_id
                elif subject == heartbeat_subject:
                    heartbeat = decode_heartbeat(body)
                    known = observe_heartbeat(heartbeat, now)
                    node_id = heartbeat.node_id
                else:
                    self._garbage(subject, "not a health telemetry subject")
                    continue
            except msgspec.DecodeError as error:
                self._garbage(subject, str(error))
                continue
            if known:
                counters.applied += 1
            else:
                self._unknown(node_id, subject)
        return len(batch)

    def _garbage(self, subject: str, error: str) -> None:
        self.counters.garbage += 1
        if self.counters.garbage % GARBAGE_LOG_EVERY == 1:
            log.warning(
                "telemetry_dropped_garbage",
                subject=subject,
                error=error,
                dropped_so_far=self.counters.garbage,
            )

    def _unknown(self, node_id: str, subject: str) -> None:
        counters = self.counters
        counters.unknown_node += 1
        if node_id in self._reported_unknown or len(self._reported_unknown) >= MAX_REPORTED_UNKNOWN:
            return
        self._reported_unknown.add(node_id)
        if len(counters.unknown_ids) < MAX_LISTED_UNKNOWN:
            counters.unknown_ids.append(node_id)
        log.warning(
            "telemetry_from_unknown_node",
            node_id=node_id,
            subject=subject,
            hint="register the node in inventory, or check the agent's --node",
        )

    def stats(self) -> IngestStats:
        """The counters as the contract reports them."""
        c = self.counters
        return IngestStats(
            received=c.received,
            applied=c.applied,
            garbage=c.garbage,
            unknown_node=c.unknown_node,
            unknown_node_ids=list(c.unknown_ids),
            overflow=c.overflow,
        )
