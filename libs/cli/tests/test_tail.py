"""``aifactory tail`` against a real nats-server: filters, replay positions, bad messages, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from nats.aio.client import Client

from aifactory.bus.embedded import free_port
from aifactory.bus.settings import BusSettings
from aifactory.bus.topology import factory_topology, provision
from aifactory.contracts import build_message
from aifactory.contracts.catalog import load_all
from aifactory.contracts.example.v1 import WidgetRegistered

pytestmark = pytest.mark.integration

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def widgets(nats_client: Client, bus_settings: BusSettings) -> None:
    """The factory streams in this test's namespace, holding two tenants' widgets and a bad message."""
    js = nats_client.jetstream()
    await provision(js, factory_topology(bus_settings, registry=load_all()), bus_settings.namespace)
    for tenant, widget_id in (("acme", "w-1"), ("globex", "w-2")):
        message = build_message(
            WidgetRegistered(widget_id=widget_id, tenant=tenant, size=2),
            source="test",
            tenant=tenant,
        )
        await js.publish(
            bus_settings.namespace.subject(message.subject), message.body, headers=message.headers
        )
    await js.publish(
        bus_settings.namespace.subject("factory.example.v1.evt.widget_registered.acme"),
        b"\xff not json",
        headers={"ce-type": "io.aifactory.example.widget_registered.v1"},
    )


async def _tail(
    cli: Cli, args: list[str], env: dict[str, str], nats_url: str
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, ["tail", *args, "--no-follow", "--nats-url", nats_url], env)


async def test_replay_shows_every_event_and_marks_the_undecodable_one(
    widgets: None, nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """A replay from the start prints all three messages, the bad one marked UNDECODABLE, and exits 0."""
    result = await _tail(cli, ["--since", "1h"], namespaced_env, nats_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert "acme" in lines[0]
    assert "globex" in lines[1]
    assert "UNDECODABLE" in lines[2]
    assert "UNDECODABLE" not in lines[0] + lines[1]


async def test_tenant_filter_keeps_only_that_tenant(
    widgets: None, nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """--tenant globex prints only globex's event."""
    result = await _tail(
        cli, ["--since", "1h", "--tenant", "globex", "--json"], namespaced_env, nats_url
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["data"]["widget_id"] for r in records] == ["w-2"]


async def test_type_filter_accepts_a_suffix(
    widgets: None, nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """--type widget_registered matches the full versioned type; an unrelated type matches nothing."""
    matching = await _tail(
        cli, ["--since", "1h", "--type", "widget_registered"], namespaced_env, nats_url
    )
    assert matching.returncode == 0, matching.stderr
    assert len(matching.stdout.splitlines()) == 3
    other = await _tail(
        cli, ["--since", "1h", "--type", "node_registered"], namespaced_env, nats_url
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout == ""


async def test_from_seq_replays_from_that_sequence_of_one_stream(
    widgets: None, nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """--from-seq 2 with a filter inside one stream starts at the second message."""
    result = await _tail(
        cli, ["factory.example.>", "--from-seq", "2", "--json"], namespaced_env, nats_url
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [2, 3]


async def test_from_seq_with_a_filter_spanning_streams_is_refused(
    widgets: None, nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """--from-seq with the default filter (several streams) exits 2 naming the streams."""
    result = await _tail(cli, ["--from-seq", "1"], namespaced_env, nats_url)
    assert result.returncode == 2
    assert "FACTORY_DLQ" in result.stderr
    assert "FACTORY_EXAMPLE" in result.stderr


async def test_subject_filter_narrows_to_matching_subjects(
    widgets: None, nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """FILTER factory.example.v1.evt.widget_registered.globex shows only the globex subject."""
    result = await _tail(
        cli,
        ["factory.example.v1.evt.widget_registered.globex", "--since", "1h"],
        namespaced_env,
        nats_url,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "factory.example.v1.evt.widget_registered.globex" in line


async def test_default_start_shows_only_new_events(
    widgets: None, nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """Without --since or --from-seq, a --no-follow tail prints nothing that was stored before it started."""
    result = await _tail(cli, [], namespaced_env, nats_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


async def test_follow_prints_events_published_after_start(
    widgets: None,
    nats_url: str,
    nats_client: Client,
    bus_settings: BusSettings,
    namespaced_env: dict[str, str],
    spawn_cli: Callable[..., Any],
) -> None:
    """A following tail prints an event published while it runs."""
    tail = spawn_cli(["tail", "--json", "--nats-url", nats_url], namespaced_env)
    tail.wait_for("tail: following")
    message = build_message(
        WidgetRegistered(widget_id="w-live", tenant="acme", size=1), source="test", tenant="acme"
    )
    await nats_client.jetstream().publish(
        bus_settings.namespace.subject(message.subject), message.body, headers=message.headers
    )
    line = await asyncio.to_thread(tail.wait_for, "w-live")
    assert json.loads(line)["data"]["widget_id"] == "w-live"


async def test_missing_streams_are_reported(
    nats_url: str, namespaced_env: dict[str, str], cli: Cli
) -> None:
    """Without provisioned streams in the namespace, tail exits 2 and suggests aifactory up."""
    result = await _tail(cli, [], namespaced_env, nats_url)
    assert result.returncode == 2
    assert "aifactory up" in result.stderr


def test_unreachable_nats_exits_2_with_one_clear_line(cli_env: dict[str, str], cli: Cli) -> None:
    """Against a port where nothing listens, tail exits 2 with 'cannot reach NATS at ...' and no traceback."""
    url = f"nats://127.0.0.1:{free_port()}"
    result = cli(["tail", "--nats-url", url], cli_env, timeout=30)
    assert result.returncode == 2
    assert f"cannot reach NATS at {url}" in result.stderr
    assert "is `aifactory up` running?" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_since_is_a_usage_error(cli_env: dict[str, str], cli: Cli) -> None:
    """An unparseable --since exits 2 with the accepted forms, before touching NATS."""
    result = cli(["tail", "--since", "yesterday"], cli_env)
    assert result.returncode == 2
    assert "30s, 10m, 2h, 1d" in result.stderr


def test_server_without_jetstream_is_a_clear_error(
    nats_without_jetstream: str, cli_env: dict[str, str], cli: Cli
) -> None:
    """Against NATS without JetStream, tail exits 2 saying JetStream is needed, no traceback."""
    result = cli(["tail", "--nats-url", nats_without_jetstream], cli_env)
    assert result.returncode == 2
    assert "JetStream" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
