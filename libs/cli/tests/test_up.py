"""``aifactory up`` over a real nats-server: embedded start, reuse, services, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from aifactory.bus.embedded import free_port, nats_answers
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.bus.topology import factory_topology
from aifactory.contracts import build_message
from aifactory.contracts.catalog import load_all
from aifactory.contracts.example.v1 import WidgetRegistered

pytestmark = pytest.mark.integration


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


async def test_up_runs_installed_services_with_prefixed_output_and_stops_them(
    tmp_path: Path,
    nats_url: str,
    nats_client: Client,
    namespaced_env: dict[str, str],
    spawn_cli: Callable[..., Any],
) -> None:
    """An importable aifactory.<service> runs as a child with the NATS URL, its lines prefixed, and stops on SIGINT."""
    fake = tmp_path / "fake" / "aifactory" / "inventory"
    fake.mkdir(parents=True)
    # A regular package earlier on sys.path shadows the real aifactory.inventory.
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        textwrap.dedent(
            """
            import os, signal, sys, time
            def stop(signum, frame):
                print("inventory shutting down", flush=True)
                sys.exit(0)
            signal.signal(signal.SIGTERM, stop)
            print("serving", os.environ["AIFACTORY_NATS_URL"], flush=True)
            while True:
                time.sleep(0.1)
            """
        )
    )
    env = {**namespaced_env, "PYTHONPATH": str(tmp_path / "fake")}
    up = spawn_cli(["up", "--nats-url", nats_url, "--var", str(tmp_path / "var")], env)
    assert "inventory" in up.wait_for("services: starting")
    assert up.wait_for("serving").startswith(f"[inventory] serving {nats_url}")
    up.wait_for("ready — Ctrl-C to stop")
    up.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(up.finish) == 0, up.output()
    assert "[inventory] inventory shutting down" in up.output()
    assert "[inventory] stopped (exit code 0)" in up.output()


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
