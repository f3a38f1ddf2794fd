"""``aifactory up`` over a real nats-server: embedded start, reuse, services, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from aifactory.bus.embedded import free_port, nats_answers
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.bus.topology import factory_topology
from aifactory.cli.services import installed_services
from aifactory.contracts import build_message
from aifactory.contracts.catalog import load_all
from aifactory.contracts.example.v1 import WidgetRegistered

pytestmark = pytest.mark.integration
INVENTORY_ONLY = ("--service", "inventory")


def _nats_server_processes(port: int) -> list[int]:
    """Pids of nats-server processes listening on ``port`` (from /proc command lines)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"nats-server") and str(port).encode() in argv:
            pids.append(int(cmdline.parent.name))
    return pids


async def _publish_widget(url: str, namespace: Namespace, tenant: str, widget_id: str) -> None:
    nc = await nats.connect(url)
    try:
        message = build_message(
            WidgetRegistered(widget_id=widget_id, tenant=tenant, size=4, label="gpu-rack"),
            source="test/cli",
            tenant=tenant,
        )
        await nc.jetstream().publish(
            namespace.subject(message.subject), message.body, headers=message.headers
        )
    finally:
        await nc.close()


async def test_up_starts_embedded_nats_tail_replays_and_sigint_stops_everything(
    tmp_path: Path,
    namespace: Namespace,
    namespaced_env: dict[str, str],
    spawn_cli: Callable[..., Any],
    cli: Callable[..., Any],
) -> None:
    """With nothing at the URL, up starts nats-server, tail shows a published event, SIGINT exits 0 and stops the server."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    var = tmp_path / "var"
    up = spawn_cli(["up", "--nats-url", url, "--var", str(var), "--no-services"], namespaced_env)
    started = up.wait_for("nats: started embedded nats-server")
    assert url in started
    streams = factory_topology(BusSettings(), registry=load_all()).streams
    assert f"streams: {len(streams)} created, 0 updated" in up.wait_for("streams:")
    up.wait_for("services: not started (--no-services)")
    up.wait_for("ready — Ctrl-C to stop")
    assert (var / "nats").is_dir()
    assert nats_answers(url)

    await _publish_widget(url, namespace, "acme", "w-1")
    tail = await asyncio.to_thread(
        cli, ["tail", "--since", "1m", "--no-follow", "--nats-url", url], namespaced_env
    )
    assert tail.returncode == 0, tail.stderr
    [line] = tail.stdout.splitlines()
    assert "factory.example.v1.evt.widget_registered.acme" in line
    assert "io.aifactory.example.widget_registered.v1" in line
    assert " acme " in line
    assert '"widget_id":"w-1"' in line

    as_json = await asyncio.to_thread(
        cli, ["tail", "--since", "1m", "--no-follow", "--json", "--nats-url", url], namespaced_env
    )
    assert as_json.returncode == 0, as_json.stderr
    [record] = [json.loads(raw) for raw in as_json.stdout.splitlines()]
    assert record["subject"] == "factory.example.v1.evt.widget_registered.acme"
    assert record["type"] == "io.aifactory.example.widget_registered.v1"
    assert record["tenant"] == "acme"
    assert record["headers"]["ce-source"] == "test/cli"
    assert record["data"] == {"widget_id": "w-1", "tenant": "acme", "size": 4, "label": "gpu-rack"}
    assert record["stream"] == namespace.stream("FACTORY_EXAMPLE")
    assert record["seq"] == 1

    up.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(up.finish) == 0, up.output()
    assert "nats: stopped embedded nats-server" in up.output()
    assert not nats_answers(url)
    assert _nats_server_processes(port) == []


async def test_up_reuses_a_running_server(
    tmp_path: Path,
    nats_url: str,
    nats_client: Client,
    namespace: Namespace,
    namespaced_env: dict[str, str],
    spawn_cli: Callable[..., Any],
) -> None:
    """When NATS already answers, up provisions the streams there and starts no server of its own."""
    var = tmp_path / "var"
    up = spawn_cli(["up", "--nats-url", nats_url, "--var", str(var)], namespaced_env)
    assert nats_url in up.wait_for("nats: using the NATS server already running")
    up.wait_for("ready — Ctrl-C to stop")
    info = await nats_client.jetstream().stream_info(namespace.stream("FACTORY_EXAMPLE"))
    assert namespace.subject("factory.example.*.evt.>") in (info.config.subjects or [])
    up.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(up.finish) == 0, up.output()
    assert "started embedded" not in up.output()
    assert not (var / "nats").exists()
    assert nats_answers(nats_url)


def _fake_inventory(root: Path, body: str) -> dict[str, str]:
    """A fake ``aifactory.inventory`` package under ``root`` running ``body``; PYTHONPATH for it."""
    fake = root / "fake" / "aifactory" / "inventory"
    fake.mkdir(parents=True)
    # A regular package earlier on sys.path shadows the real aifactory.inventory.
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(textwrap.dedent(body))
    return {"PYTHONPATH": str(root / "fake")}


async def test_up_fails_naming_a_service_that_never_reports_ready(
    tmp_path: Path,
    nats_url: str,
    nats_client: Client,
    namespaced_env: dict[str, str],
    spawn_cli: Callable[..., Any],
) -> None:
    """A service that runs but never answers service_status: up exits 1 naming it with its log tail, all stopped."""
    fake = _fake_inventory(
        tmp_path,
        """
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        print("serving", os.environ["AIFACTORY_NATS_URL"], flush=True)
        while True:
            time.sleep(0.1)
        """,
    )
    var = tmp_path / "var"
    up = spawn_cli(
        ["up", "--nats-url", nats_url, "--var", str(var), "--ready-timeout", "3", *INVENTORY_ONLY],
        {**namespaced_env, **fake},
    )
    assert await asyncio.to_thread(up.finish, 120) == 1, up.output()
    output = up.output()
    assert "service inventory did not report ready within 3s" in output
    assert f"its log is {var / 'logs' / 'inventory.log'}" in output
    assert f"  serving {nats_url}" in output
    assert "[inventory] serving" in output  # a plain (non-JSON) line is shown as it comes
    assert "[inventory] stopped (exit code 0)" in output
    assert (var / "logs" / "inventory.log").read_text().startswith(f"serving {nats_url}")
    assert "ready — Ctrl-C to stop" not in output
    assert "Traceback" not in output


async def test_up_fails_when_a_service_exits_before_it_is_ready(
    tmp_path: Path,
    nats_url: str,
    nats_client: Client,
    namespaced_env: dict[str, str],
    spawn_cli: Callable[..., Any],
) -> None:
    """A service that exits at start-up makes up exit 1 with its exit code and last lines."""
    fake = _fake_inventory(
        tmp_path,
        """
        import sys
        print("database is on fire", flush=True)
        sys.exit(3)
        """,
    )
    up = spawn_cli(
        ["up", "--nats-url", nats_url, "--var", str(tmp_path / "var"), *INVENTORY_ONLY],
        {**namespaced_env, **fake},
    )
    assert await asyncio.to_thread(up.finish, 120) == 1, up.output()
    output = up.output()
    assert "service inventory exited with code 3 before it was ready" in output
    assert "  database is on fire" in output


def _http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


async def _inventory_import(cli: Callable[..., Any], url: str, env: dict[str, str]) -> None:
    example = Path(__file__).parents[3] / "deploy" / "examples" / "factory.yaml"
    result = await asyncio.to_thread(
        cli, ["inventory", "import", str(example), "--nats-url", url], env
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(300)  # two full starts of every service on a busy 2-core machine
async def test_up_waits_for_every_service_prints_where_they_are_and_resumes_its_state(
    tmp_path: Path,
    cli_env: dict[str, str],
    spawn_cli: Callable[..., Any],
    cli: Callable[..., Any],
) -> None:
    """up lists every service ready with pid, metrics URL and log; a second up on the same --var still has the imported nodes."""
    url = f"nats://127.0.0.1:{free_port()}"
    var = tmp_path / "var"
    up = spawn_cli(["up", "--nats-url", url, "--var", str(var)], cli_env)
    up.wait_for("ready — Ctrl-C to stop", timeout=120)
    names = installed_services()
    assert {"inventory", "scheduling", "health", "keys"} <= set(names)
    header = up.wait_for("service  ")
    assert header.split() == ["service", "pid", "ready", "after", "metrics", "log"]
    for name in names:
        row = up.wait_for(f"{name} ").split()
        assert row[0] == name
        assert int(row[1]) > 0
        assert row[3].startswith("http://127.0.0.1:")
        assert await asyncio.to_thread(_http_status, row[3]) == 200
        assert row[4] == str(var / "logs" / f"{name}.log")
        assert (var / "logs" / f"{name}.log").is_file()
    assert f"services: all {len(names)} ready" in up.output()
    assert up.wait_for("nats: nats://") == f"nats: {url}"
    assert up.wait_for("nats monitoring:").startswith("nats monitoring: http://127.0.0.1:")

    await _inventory_import(cli, url, cli_env)
    up.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(up.finish, 60) == 0, up.output()

    again = spawn_cli(["up", "--nats-url", url, "--var", str(var)], cli_env)
    again.wait_for("ready — Ctrl-C to stop", timeout=120)
    assert "streams: 0 created" in again.output()
    nodes = await asyncio.to_thread(cli, ["nodes", "--nats-url", url, "--json"], cli_env)
    assert nodes.returncode == 0, nodes.stderr
    assert len(nodes.stdout.splitlines()) == 76
    again.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(again.finish, 60) == 0, again.output()


async def test_no_services_flag_skips_services(
    tmp_path: Path,
    nats_url: str,
    nats_client: Client,
    namespaced_env: dict[str, str],
    spawn_cli: Callable[..., Any],
) -> None:
    """--no-services provisions streams and says services were not started."""
    up = spawn_cli(
        ["up", "--nats-url", nats_url, "--var", str(tmp_path / "var"), "--no-services"],
        namespaced_env,
    )
    up.wait_for("services: not started (--no-services)")
    up.wait_for("ready — Ctrl-C to stop")
    up.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(up.finish) == 0, up.output()


async def test_up_exits_1_when_its_embedded_server_dies(
    tmp_path: Path, cli_env: dict[str, str], spawn_cli: Callable[..., Any]
) -> None:
    """If the embedded nats-server is killed, up notices, stops and exits 1 pointing at the log."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    up = spawn_cli(["up", "--nats-url", url, "--var", str(tmp_path / "var")], cli_env)
    up.wait_for("ready — Ctrl-C to stop")
    [pid] = _nats_server_processes(port)
    os.kill(pid, signal.SIGKILL)
    assert await asyncio.to_thread(up.finish) == 1, up.output()
    assert "embedded nats-server exited unexpectedly" in up.output()
    assert "nats-server.log" in up.output()


def test_up_refuses_remote_url_that_does_not_answer(
    tmp_path: Path, cli_env: dict[str, str], cli: Callable[..., Any]
) -> None:
    """A non-local URL with nothing answering is an error (exit 2): up cannot start a server there."""
    result = cli(
        ["up", "--nats-url", "nats://192.0.2.1:4222", "--var", str(tmp_path / "var")], cli_env
    )
    assert result.returncode == 2
    assert "is not this machine" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_against_nats_without_jetstream_fails_clearly(
    tmp_path: Path, nats_without_jetstream: str, cli_env: dict[str, str], cli: Callable[..., Any]
) -> None:
    """up cannot provision streams on a server without JetStream: exit 1, message names JetStream."""
    result = cli(
        ["up", "--nats-url", nats_without_jetstream, "--var", str(tmp_path / "var")], cli_env
    )
    assert result.returncode == 1
    assert "is JetStream enabled" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
