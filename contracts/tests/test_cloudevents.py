"""CloudEvents binary-mode headers: a faithful round trip, and clear refusals.

Every missing or garbled required attribute must raise ``InvalidCloudEvent`` naming
the attribute, never a bare ``KeyError`` or ``ValueError``, so a consumer can
dead-letter the message with a reason an operator understands.
"""

from __future__ import annotations

import datetime as dt

import pytest

from aifactory.contracts import (
    ContractError,
    InvalidCloudEvent,
    build_message,
    new_traceparent,
    parse_headers,
    read_message,
    spec_of,
)
from aifactory.contracts.cloudevents import CONTENT_TYPE, SPECVERSION
from aifactory.contracts.example.v1 import WidgetRegistered

WIDGET = WidgetRegistered(widget_id="w-1", tenant="acme", size=3, label="blue")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def valid_headers() -> dict[str, str]:
    """The headers of a well-formed WidgetRegistered message."""
    return build_message(WIDGET, source="test", tenant="acme", traceparent=TRACEPARENT).headers


def test_build_then_read_round_trips_payload_and_attributes() -> None:
    """read_message(build_message(x)) gives back x and every CloudEvents attribute."""
    moment = dt.datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=dt.UTC)
    out = build_message(
        WIDGET,
        source="inventory",
        tenant="acme",
        subject="w-1",
        event_id="evt-1",
        time=moment,
        traceparent=TRACEPARENT,
    )
    assert out.subject == "factory.example.v1.evt.widget_registered.acme"
    envelope = read_message(out.headers, out.body)
    assert envelope.data == WIDGET
    assert envelope.spec is spec_of(WidgetRegistered)
    assert envelope.event == out.event
    assert envelope.event.time == moment
    assert envelope.event.dataschema == "urn:aifactory:schema:example:v1:widget_registered"
    assert envelope.event.trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_headers_are_binary_content_mode_with_dedup_id() -> None:
    """The headers carry the ce-* attributes, the content type and Nats-Msg-Id equal to ce-id."""
    headers = build_message(WIDGET, source="test", tenant="acme", event_id="evt-9").headers
    assert headers["ce-specversion"] == SPECVERSION
    assert headers["ce-type"] == "io.aifactory.example.widget_registered.v1"
    assert headers["ce-source"] == "test"
    assert headers["ce-tenant"] == "acme"
    assert headers["content-type"] == CONTENT_TYPE
    assert headers["Nats-Msg-Id"] == headers["ce-id"] == "evt-9"
    assert headers["ce-time"].endswith("Z")
    assert headers["traceparent"] == headers["ce-traceparent"]


def test_time_in_another_zone_is_sent_as_utc() -> None:
    """A non-UTC ``time`` is written as RFC 3339 UTC with a Z and reads back as the same instant."""
    moment = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    out = build_message(WIDGET, source="test", tenant="acme", time=moment)
    assert out.headers["ce-time"] == "2026-01-01T10:00:00Z"
    assert parse_headers(out.headers).time == moment


@pytest.mark.parametrize("attribute", ["ce-id", "ce-source", "ce-type", "ce-specversion"])
def test_missing_required_attribute_is_named(attribute: str) -> None:
    """A message without a required attribute raises InvalidCloudEvent naming it."""
    headers = valid_headers()
    del headers[attribute]
    with pytest.raises(InvalidCloudEvent) as caught:
        read_message(headers, b"{}")
    assert caught.value.attribute == attribute
    assert attribute in str(caught.value)


@pytest.mark.parametrize("attribute", ["ce-id", "ce-source", "ce-type"])
def test_blank_required_attribute_is_named(attribute: str) -> None:
    """A required attribute that is only whitespace is refused, naming it."""
    headers = valid_headers() | {attribute: "   "}
    with pytest.raises(InvalidCloudEvent) as caught:
        parse_headers(headers)
    assert caught.value.attribute == attribute


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        pytest.param("ce-specversion", "0.3", id="specversion-wrong-value"),
        pytest.param("ce-time", "yesterday at noon", id="time-garbled"),
        pytest.param("ce-time", "2026-11-26T09:30:00", id="time-without-offset"),
        pytest.param("ce-traceparent", "00-not-a-trace-01", id="traceparent-garbled"),
        pytest.param("content-type", "text/plain", id="content-type-not-json"),
        pytest.param("ce-source", "s" * 513, id="attribute-too-long"),
    ],
)
def test_garbled_attribute_is_named(attribute: str, value: str) -> None:
    """A garbled attribute raises InvalidCloudEvent naming that attribute."""
    headers = valid_headers() | {attribute: value}
    with pytest.raises(InvalidCloudEvent) as caught:
        read_message(headers, b"{}")
    assert caught.value.attribute == attribute


def test_garbled_bare_w3c_traceparent_is_refused() -> None:
    """A garbled bare ``traceparent`` (no ce-traceparent) is refused as the trace attribute."""
    headers = valid_headers()
    del headers["ce-traceparent"]
    headers["traceparent"] = "garbage"
    with pytest.raises(InvalidCloudEvent) as caught:
        parse_headers(headers)
    assert caught.value.attribute == "ce-traceparent"


def test_bare_w3c_traceparent_alone_is_accepted() -> None:
    """A message with only the W3C ``traceparent`` header keeps its trace."""
    headers = valid_headers()
    del headers["ce-traceparent"]
    headers["traceparent"] = tp = new_traceparent()
    assert parse_headers(headers).traceparent == tp


@pytest.mark.parametrize("headers", [None, {}], ids=["none", "empty"])
def test_message_without_headers_is_refused(headers: dict[str, str] | None) -> None:
    """A message with no headers at all raises InvalidCloudEvent, not KeyError or TypeError."""
    with pytest.raises(InvalidCloudEvent) as caught:
        read_message(headers, b"{}")
    assert caught.value.attribute == "ce-id"
    assert isinstance(caught.value, ContractError)


def test_optional_attributes_may_be_absent() -> None:
    """Only id, source, type and specversion are needed; the rest read as None."""
    event = parse_headers(
        {"ce-id": "1", "ce-source": "s", "ce-type": "t", "ce-specversion": SPECVERSION}
    )
    assert (event.time, event.subject, event.tenant, event.traceparent) == (None,) * 4
