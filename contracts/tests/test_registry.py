"""The registry: one entry per contract, and contracts that are safe to share.

These tests use private ``Registry()`` instances so they never touch the global one
that services and the schema export read.
"""

from __future__ import annotations

import inspect
import re

import msgspec
import pytest

from aifactory.contracts import Contract, ErrorReply
from aifactory.contracts.catalog import load_all
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.contracts.registry import (
    REGISTRY,
    Kind,
    MessageSpec,
    Registry,
    RegistryError,
    message,
)


class Thing(Contract, frozen=True, kw_only=True):
    """A test payload."""

    thing_id: str


class ThingMade(Contract, frozen=True, kw_only=True):
    """Another test payload."""

    thing_id: str


def test_registered_message_is_found_by_class_and_ce_type() -> None:
    """A registered contract is looked up by its class and by its CloudEvents type."""
    registry = Registry()
    message(domain="test", name="thing_made", version=1, kind="evt", registry=registry)(ThingMade)
    spec = registry.spec_for(ThingMade)
    assert registry.by_ce_type("io.aifactory.test.thing_made.v1") is spec
    assert spec.summary == "Another test payload."
    assert ThingMade in registry
    assert ThingMade not in REGISTRY


def test_same_class_twice_is_refused() -> None:
    """Registering one class a second time (under any name) raises RegistryError."""
    registry = Registry()
    message(domain="test", name="thing", version=1, kind="evt", registry=registry)(Thing)
    with pytest.raises(RegistryError, match="already registered"):
        message(domain="test", name="other", version=1, kind="evt", registry=registry)(Thing)


def test_same_ce_type_twice_is_refused() -> None:
    """Two classes under the same domain, name and version raise RegistryError."""
    registry = Registry()
    message(domain="test", name="thing", version=1, kind="evt", registry=registry)(Thing)
    with pytest.raises(RegistryError, match=re.escape("io.aifactory.test.thing.v1")):
        message(domain="test", name="thing", version=1, kind="evt", registry=registry)(ThingMade)


def test_same_name_in_a_new_major_version_is_allowed() -> None:
    """v2 of a message registers beside v1, on its own subject."""
    registry = Registry()
    message(domain="test", name="thing", version=1, kind="evt", registry=registry)(Thing)
    message(domain="test", name="thing", version=2, kind="evt", registry=registry)(ThingMade)
    assert registry.spec_for(ThingMade).base_subject == "factory.test.v2.evt.thing"
    assert len(registry) == 2


@pytest.mark.parametrize("kind", ["cmd", "qry"])
def test_command_or_query_without_reply_is_refused(kind: Kind) -> None:
    """A command or query must name its reply type."""
    spec = MessageSpec(type=Thing, domain="test", name="do_thing", version=1, kind=kind)
    with pytest.raises(RegistryError, match="reply"):
        Registry().add(spec)


def test_command_with_reply_is_accepted() -> None:
    """A command that names its reply registers, and exposes the reply's ce-type."""
    registry = Registry()
    registry.add(
        MessageSpec(
            type=Thing, domain="test", name="do_thing", version=1, kind="cmd", reply=ErrorReply
        )
    )
    spec = registry.spec_for(Thing)
    assert spec.reply is ErrorReply
    assert spec.reply_ce_type == "io.aifactory.test.do_thing.v1.reply"


@pytest.mark.parametrize(
    ("domain", "name", "version", "kind"),
    [
        ("Test", "thing", 1, "evt"),
        ("test", "thing.made", 1, "evt"),
        ("test", "thing", 0, "evt"),
        ("test", "thing", 1, "event"),
    ],
)
def test_malformed_metadata_is_refused(domain: str, name: str, version: int, kind: Kind) -> None:
    """Bad tokens, a version below 1 and an unknown kind raise RegistryError."""
    spec = MessageSpec(type=Thing, domain=domain, name=name, version=version, kind=kind)
    with pytest.raises(RegistryError):
        Registry().add(spec)


def test_contract_that_is_not_frozen_and_keyword_only_is_refused() -> None:
    """The registry refuses a contract class declared without frozen and kw_only."""

    class Loose(Contract):
        thing_id: str

    with pytest.raises(RegistryError, match=re.escape("frozen=True, kw_only=True")):
        message(domain="test", name="loose", version=1, kind="evt", registry=Registry())(Loose)


def test_every_registered_contract_is_keyword_only_and_frozen() -> None:
    """Every registered contract and reply takes keyword arguments only and cannot be mutated."""
    classes = {spec.type for spec in load_all()} | {
        spec.reply for spec in load_all() if spec.reply is not None
    }
    for cls in classes:
        assert cls.__struct_config__.frozen, cls
        assert cls.__struct_config__.forbid_unknown_fields, cls
        params = inspect.signature(cls).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), cls


def test_contract_instances_refuse_positional_arguments_and_mutation() -> None:
    """Positional construction is a TypeError and assignment is an AttributeError."""
    with pytest.raises(TypeError):
        WidgetRegistered("w-1", "acme", 3)  # type: ignore[misc]
    widget = WidgetRegistered(widget_id="w-1", tenant="acme", size=3)
    with pytest.raises(AttributeError):
        widget.size = 4  # type: ignore[misc]
    assert msgspec.structs.replace(widget, size=4).size == 4
