"""How ``aifactory tail`` shows one event: a terminal line or a JSON object.

``TailedEvent.from_msg`` reads a JetStream message without ever raising: the
CloudEvents headers and body are checked against the contracts registry, and a
message that fails (bad headers, unknown type, body not matching its contract, not
JSON at all) is kept and marked with the reason. A line is ``time subject type
tenant data``, the data being the body's JSON, compacted and cut to the terminal
width; ``--json`` prints ``{"stream", "seq", "subject", "time", "type", "tenant",
"headers", "data"}`` per event instead (plus ``undecodable`` and ``raw`` when the
message is bad).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from rich.text import Text

from aifactory.bus.settings import Namespace
from aifactory.contracts.cloudevents import H_TENANT, H_TIME, H_TYPE, format_time
from aifactory.contracts.envelope import read_message
from aifactory.contracts.errors import ContractError
from aifactory.contracts.registry import Registry

_VERSION_SUFFIX = re.compile(r"\.v\d+$")
_RAW_PREVIEW = 200
_json = msgspec.json.Encoder()


def type_matches(wanted: str, ce_type: str | None) -> bool:
    """``--type`` matching: the full CloudEvents type, or a dotted suffix of it.

    ``widget_registered``, ``example.widget_registered`` and ``widget_registered.v1``
    all match ``io.aifactory.example.widget_registered.v1``; ``registered`` does not.
    """
    if ce_type is None:
        return False
    if wanted == ce_type or ce_type.endswith("." + wanted):
        return True
    unversioned = _VERSION_SUFFIX.sub("", ce_type)
    return unversioned == wanted or unversioned.endswith("." + wanted)


def _parse_time(raw: str | None) -> dt.datetime | None:
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class TailedEvent:
    """One message as tail shows it."""

    stream: str
    seq: int | None
    subject: str
    headers: dict[str, str]
    time: dt.datetime | None
    ce_type: str | None
    tenant: str | None
    data: Any
    raw: bytes
    undecodable: str | None = None

    @classmethod
    def from_msg(
        cls, msg: Msg, *, stream: str, namespace: Namespace, registry: Registry
    ) -> TailedEvent:
        """Read ``msg``; problems are recorded in ``undecodable``, never raised."""
        headers = dict(msg.headers or {})
        body = bytes(msg.data)
        problem: str | None = None
        try:
            read_message(headers, body, registry=registry)
        except ContractError as error:
            problem = str(error)
        try:
            data: Any = msgspec.json.decode(body)
        except msgspec.DecodeError:
            data = None
            problem = problem or "body is not JSON"
        seq: int | None = None
        stored_at: dt.datetime | None = None
        try:
            metadata = msg.metadata
        except (NatsError, ValueError, IndexError):
            metadata = None
        if metadata is not None:
            seq = metadata.sequence.stream
            stored_at = metadata.timestamp
        return cls(
            stream=stream,
            seq=seq,
            subject=namespace.strip(msg.subject),
            headers=headers,
            time=_parse_time(headers.get(H_TIME)) or stored_at,
            ce_type=headers.get(H_TYPE),
            tenant=headers.get(H_TENANT),
            data=data,
            raw=body,
            undecodable=problem,
        )

    def data_summary(self) -> str:
        """The body as compact JSON, or a preview of the raw bytes when it is not JSON."""
        if self.data is not None or self.raw.strip() == b"null":
            return _json.encode(self.data).decode()
        preview = self.raw[:_RAW_PREVIEW].decode("utf-8", errors="replace")
        return repr(preview) + ("…" if len(self.raw) > _RAW_PREVIEW else "")

    def to_line(self, width: int | None = None) -> Text:
        """``time subject type tenant data``, cut to ``width`` characters when given."""
        line = Text.assemble(
            (format_time(self.time) if self.time else "-", "dim"),
            "  ",
            (self.subject, "cyan"),
            "  ",
            (self.ce_type or "-", "magenta"),
            "  ",
            (self.tenant or "-", "green"),
            "  ",
        )
        if self.undecodable is not None:
            line.append(f"UNDECODABLE ({self.undecodable}) ", style="bold red")
        line.append(self.data_summary())
        if width is not None and len(line) > width:
            line.truncate(width, overflow="ellipsis")
        return line

    def to_json(self) -> str:
        """The event as one JSON object (no newline)."""
        record: dict[str, Any] = {
            "stream": self.stream,
            "seq": self.seq,
            "subject": self.subject,
            "time": format_time(self.time) if self.time else None,
            "type": self.ce_type,
            "tenant": self.tenant,
            "headers": self.headers,
            "data": self.data,
        }
        if self.undecodable is not None:
            record["undecodable"] = self.undecodable
            if self.data is None:
                record["raw"] = self.raw.decode("utf-8", errors="replace")
        return _json.encode(record).decode()
