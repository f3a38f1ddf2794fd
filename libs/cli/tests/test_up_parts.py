"""Pieces of ``up``: service discovery, the child supervisor and the embedded-server choice."""

from __future__ import annotations

import asyncio
import io
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from aifactory.cli.console import CliError
from aifactory.cli.local_nats import embedded_server_for
from aifactory.cli.services import installed_services, is_runnable, service_command
from aifactory.cli.supervisor import ChildCommand, Supervisor


def test_only_runnable_modules_count_as_installed_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package with __main__.py and a plain module are services; a package without one and a missing name are not."""
    root = tmp_path / "fakeservices"
    (root / "runnable").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "runnable" / "__init__.py").write_text("raise RuntimeError('must not be imported')")
    (root / "runnable" / "__main__.py").write_text("")
    (root / "library").mkdir()
    (root / "library" / "__init__.py").write_text("")
    (root / "single.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("runnable", "library", "single", "absent")
    assert installed_services(names, package="fakeservices") == ["runnable", "single"]
    assert not is_runnable("no_such_package.anything")


def test_service_command_passes_nats_url_and_var_dir(tmp_path: Path) -> None:
    """A service runs as `python -m aifactory.<name>` with AIFACTORY_NATS_URL and AIFACTORY_VAR_DIR set."""
    command = service_command(
        "billing", nats_url="nats://127.0.0.1:4999", var_dir=tmp_path, base_env={"KEEP": "1"}
    )
    assert command.argv == (sys.executable, "-m", "aifactory.billing")
    assert command.env["AIFACTORY_NATS_URL"] == "nats://127.0.0.1:4999"
    assert command.env["AIFACTORY_VAR_DIR"] == str(tmp_path.resolve())
    assert command.env["KEEP"] == "1"


class _Screen(io.StringIO):
    """A console file that wakes waiters whenever something is printed."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self.changed.set()
        return written

    async def wait_for(self, text: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.getvalue():
                self.changed.clear()
                await self.changed.wait()


async def test_supervisor_prefixes_output_and_stops_children() -> None:
    """Child lines appear as '[name] line'; stop() ends the child with SIGTERM and reports it."""
    buffer = _Screen()
    script = "import time; print('hello from child', flush=True); time.sleep(60)"
    async with Supervisor(Console(file=buffer, width=200)) as supervisor:
        await supervisor.start(ChildCommand("echoer", (sys.executable, "-c", script), env={}))
        await buffer.wait_for("hello from child")
    output = buffer.getvalue()
    assert "[echoer] hello from child" in output
    assert "[echoer] stopped" in output


async def test_supervisor_kills_a_child_that_ignores_sigterm() -> None:
    """A child ignoring SIGTERM is killed after the grace period."""
    buffer = _Screen()
    script = textwrap.dedent(
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('stubborn', flush=True)
        time.sleep(60)
        """
    )
    supervisor = Supervisor(Console(file=buffer, width=200), stop_timeout=0.5)
    await supervisor.start(ChildCommand("stubborn", (sys.executable, "-c", script), env={}))
    await buffer.wait_for("stubborn")
    await supervisor.stop()
    output = buffer.getvalue()
    assert "did not stop within 0.5s; killing it" in output
    assert "[stubborn] stopped (exit code -9)" in output


async def test_supervisor_reports_a_child_that_exits_on_its_own() -> None:
    """A child that exits by itself is reported with its exit code."""
    buffer = _Screen()
    async with Supervisor(Console(file=buffer, width=200)) as supervisor:
        await supervisor.start(
            ChildCommand("short", (sys.executable, "-c", "raise SystemExit(3)"), env={})
        )
        await buffer.wait_for("exited with code 3")


def test_embedded_server_uses_url_port_and_var_dir(tmp_path: Path) -> None:
    """The embedded server listens on the URL's port with its store and log under --var."""
    server = embedded_server_for("nats://localhost:4999", tmp_path)
    assert (server.host, server.port) == ("127.0.0.1", 4999)
    assert server.store_dir == tmp_path / "nats"
    assert server.log_file == tmp_path / "nats-server.log"


def test_embedded_server_refuses_remote_hosts(tmp_path: Path) -> None:
    """A URL on another machine cannot get an embedded server (exit code 2)."""
    with pytest.raises(CliError) as caught:
        embedded_server_for("nats://nats.example.com:4222", tmp_path)
    assert caught.value.exit_code == 2
