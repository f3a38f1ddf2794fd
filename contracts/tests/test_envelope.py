"""Reading message bodies: every kind of bad input is a specific ContractError.

A consumer must be able to tell an unknown type from a bad body from an oversized
one (to dead-letter each with its reason) and must never crash on any of them.
"""

from __future__ import annotations

import pytest

from aifactory.contracts import (
    OversizedBody,
    UndecodableBody,
    UnknownMessageType,
    build_message,
    read_message,
    spec_of,
)
from aifactory.contracts.example.v1 import RegisterWidget, WidgetRegistered
from aifactory.contracts.registry import RegistryError

WIDGET = WidgetRegistered(widget_id="w-1", tenant="acme", size=3)
WIDGET_TYPE = "io.aifactory.example.widget_registered.v1"
REGISTER_TYPE = "io.aifactory.example.register_widget.v1"


def headers() -> dict[str, str]:
    """Valid headers of a WidgetRegistered message."""
    return build_message(WIDGET, source="test", tenant="acme").headers


def test_unknown_ce_type_is_refused() -> None:
    """A ce-type no contract is registered under raises UnknownMessageType."""
    with pytest.raises(UnknownMessageType) as caught:
        read_message(headers() | {"ce-type": "io.aifactory.example.nothing.v1"}, b"{}")
    assert caught.value.ce_type == "io.aifactory.example.nothing.v1"


def test_accept_filter_refuses_types_outside_it() -> None:
    """A registered type outside ``accept`` raises UnknownMessageType listing what is accepted."""
    out = build_message(WIDGET, source="test", tenant="acme")
    with pytest.raises(UnknownMessageType) as caught:
        read_message(out.headers, out.body, accept={REGISTER_TYPE})
    assert caught.value.expected == (REGISTER_TYPE,)
    assert REGISTER_TYPE in str(caught.value)


def test_accept_filter_passes_types_inside_it() -> None:
    """A type listed in ``accept`` is decoded as usual."""
    out = build_message(WIDGET, source="test", tenant="acme")
    assert read_message(out.headers, out.body, accept={WIDGET_TYPE, REGISTER_TYPE}).data == WIDGET


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"widget_id": "w-1", "tenant": "acme", "size": ', id="malformed-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"widget_id": "w-1", "tenant": "acme", "size": "3"}', id="wrong-type"),
        pytest.param(b'{"widget_id": "w-1", "tenant": "acme"}', id="missing-field"),
        pytest.param(
            b'{"widget_id": "w-1", "tenant": "acme", "size": 3, "colour": "red"}',
            id="unknown-field",
        ),
        pytest.param(b'{"widget_id": "w-1", "tenant": "acme", "size": 1000000000}', id="absurd"),
        pytest.param(b'{"widget_id": "W 1!", "tenant": "acme", "size": 3}', id="bad-pattern"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_bad_body_is_undecodable(body: bytes) -> None:
    """A body that is not valid JSON for the contract raises UndecodableBody with the reason."""
    with pytest.raises(UndecodableBody) as caught:
        read_message(headers(), body)
    assert caught.value.ce_type == WIDGET_TYPE
    assert caught.value.reason


def test_oversized_body_is_refused_before_decoding() -> None:
    """A body over ``max_body_bytes`` raises OversizedBody with the size and the limit."""
    out = build_message(WIDGET, source="test", tenant="acme")
    with pytest.raises(OversizedBody) as caught:
        read_message(out.headers, out.body, max_body_bytes=len(out.body) - 1)
    assert (caught.value.size, caught.value.limit) == (len(out.body), len(out.body) - 1)
    assert read_message(out.headers, out.body, max_body_bytes=len(out.body)).data == WIDGET


def test_tenant_scoped_message_needs_a_tenant() -> None:
    """Building a tenant-scoped message without a tenant (or scope) is refused."""
    with pytest.raises(RegistryError, match="tenant"):
        build_message(WIDGET, source="test")


@pytest.mark.parametrize("token", ["acme.eu", "acme>", "*", "", "a" * 65, "acme eu"])
def test_bad_scope_token_is_refused(token: str) -> None:
    """A scope token that would break out of the subject (dots, wildcards, spaces) is refused."""
    with pytest.raises(RegistryError):
        build_message(WIDGET, source="test", tenant=token)


def test_explicit_scope_overrides_the_tenant() -> None:
    """``scope=`` picks the subject token; ``tenant`` still goes into ce-tenant."""
    out = build_message(WIDGET, source="test", tenant="acme", scope="acme-eu")
    assert out.subject.endswith(".acme-eu")
    assert out.headers["ce-tenant"] == "acme"


def test_unscoped_message_refuses_a_scope_token() -> None:
    """A message without a scope has a fixed subject and refuses a scope token."""
    command = RegisterWidget(widget_id="w-1", tenant="acme", size=3)
    assert build_message(command, source="test").subject == "factory.example.v1.cmd.register_widget"
    with pytest.raises(RegistryError):
        spec_of(command).subject("acme")
