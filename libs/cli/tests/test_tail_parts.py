"""The pure parts of tail: --since parsing, subject overlap, --type matching, rendering."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from nats.aio.msg import Msg

from aifactory.bus.settings import Namespace
from aifactory.cli.durations import InvalidSince, parse_duration, parse_since
from aifactory.cli.event_lines import TailedEvent, type_matches
from aifactory.cli.subjects import intersect, stream_filters
from aifactory.contracts import build_message
from aifactory.contracts.catalog import load_all
from aifactory.contracts.example.v1 import WidgetRegistered

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("500ms", 0.5)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    """Durations with units ms/s/m/h/d, also combined, parse to the right length."""
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


def test_since_duration_counts_back_from_now() -> None:
    """--since 10m is ten minutes before now, in UTC."""
    assert parse_since("10m", NOW) == NOW - dt.timedelta(minutes=10)


def test_since_accepts_an_absolute_time() -> None:
    """--since with an RFC 3339 time is that instant in UTC."""
    assert parse_since("2026-11-26T10:00:00+01:00", NOW) == dt.datetime(
        2026, 11, 26, 9, 0, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("text", ["10", "ten minutes", "5y", "2026-11-26T10:00:00", ""])
def test_bad_since_values_are_refused(text: str) -> None:
    """Values without a unit, unknown units and times without a timezone raise InvalidSince."""
    with pytest.raises(InvalidSince):
        parse_since(text, NOW)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("factory.>", "factory.example.*.evt.>", "factory.example.*.evt.>"),
        ("factory.example.>", "factory.dlq.>", None),
        (
            "factory.example.v1.evt.widget_registered.*",
            "factory.example.*.evt.>",
            "factory.example.v1.evt.widget_registered.*",
        ),
        ("factory.*.v1.evt.x.acme", "factory.example.*.evt.>", "factory.example.v1.evt.x.acme"),
        ("a.b", "a.b.c", None),
        ("a.>", "a", None),
        ("a.*", "a.>", "a.*"),
        ("t1.factory.>", "t2.factory.>", None),
    ],
)
def test_subject_intersection(first: str, second: str, expected: str | None) -> None:
    """Two patterns intersect in the one pattern matching what both match, or not at all."""
    assert intersect(first, second) == expected
    assert intersect(second, first) == expected


def test_stream_filters_keep_each_overlap_once() -> None:
    """A filter over a stream with evt and audit subjects yields one consumer filter per overlap."""
    subjects = ["factory.keys.*.audit.>", "factory.keys.*.evt.>"]
    assert stream_filters("factory.>", subjects) == subjects
    assert stream_filters("factory.keys.v1.evt.>", subjects) == ["factory.keys.v1.evt.>"]


@pytest.mark.parametrize(
    ("wanted", "matches"),
    [
        ("io.aifactory.example.widget_registered.v1", True),
        ("widget_registered", True),
        ("example.widget_registered", True),
        ("widget_registered.v1", True),
        ("registered", False),
        ("widget_registered.v2", False),
    ],
)
def test_type_filter_matching(wanted: str, matches: bool) -> None:
    """--type takes the full type or a dotted suffix of it, with or without the version."""
    assert type_matches(wanted, "io.aifactory.example.widget_registered.v1") is matches


def _msg(subject: str, data: bytes, headers: dict[str, str] | None) -> Msg:
    return Msg(_client=None, subject=subject, data=data, headers=headers)  # type: ignore[arg-type]


def test_valid_event_renders_time_subject_type_tenant_and_data() -> None:
    """A contract message becomes a line with its ce-time, contract subject, type, tenant and JSON data."""
    out = build_message(
        WidgetRegistered(widget_id="w-9", tenant="acme", size=3),
        source="t",
        tenant="acme",
        time=NOW,
    )
    ns = Namespace("t123")
    event = TailedEvent.from_msg(
        _msg(ns.subject(out.subject), out.body, out.headers),
        stream="T123_FACTORY_EXAMPLE",
        namespace=ns,
        registry=load_all(),
    )
    assert event.undecodable is None
    line = event.to_line().plain
    assert line.split() == [
        "2026-11-26T12:00:00Z",
        "factory.example.v1.evt.widget_registered.acme",
        "io.aifactory.example.widget_registered.v1",
        "acme",
        '{"widget_id":"w-9","tenant":"acme","size":3,"label":""}',
    ]
    assert len(event.to_line(width=60)) == 60


def test_message_without_headers_is_marked_not_raised() -> None:
    """A message with no headers and a non-JSON body is rendered, marked undecodable, raw kept."""
    event = TailedEvent.from_msg(
        _msg("factory.example.v1.evt.x", b"\x00\x01garbage", None),
        stream="FACTORY_EXAMPLE",
        namespace=Namespace(),
        registry=load_all(),
    )
    assert event.undecodable is not None
    assert "UNDECODABLE" in event.to_line().plain
    record = json.loads(event.to_json())
    assert record["data"] is None
    assert record["undecodable"]
    assert "garbage" in record["raw"]
