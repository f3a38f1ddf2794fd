"""Pieces of ``up``: service discovery, the child supervisor and the embedded-server choice."""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from aifactory.cli.console import CliError
from aifactory.cli.local_nats import embedded_server_for
from aifactory.cli.service_logs import problems_only
from aifactory.cli.services import installed_services, is_runnable, service_command
from aifactory.cli.supervisor import ChildCommand, Supervisor
from aifactory.testing.waiting import wait_until


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


def test_service_command_gives_a_metrics_port_unless_the_environment_sets_one(
    tmp_path: Path,
) -> None:
    """up's metrics port goes to AIFACTORY_<NAME>_METRICS_PORT, but a port already set wins; logs are JSON."""
    given = service_command(
        "inventory", nats_url="nats://x:1", var_dir=tmp_path, metrics_port=9101, base_env={}
    )
    kept = service_command(
        "inventory",
        nats_url="nats://x:1",
        var_dir=tmp_path,
        metrics_port=9101,
        base_env={"AIFACTORY_INVENTORY_METRICS_PORT": "9999", "AIFACTORY_LOG_FORMAT": "console"},
    )
    assert given.env["AIFACTORY_INVENTORY_METRICS_PORT"] == "9101"
    assert given.env["AIFACTORY_LOG_FORMAT"] == "json"
    assert kept.env["AIFACTORY_INVENTORY_METRICS_PORT"] == "9999"
    assert kept.env["AIFACTORY_LOG_FORMAT"] == "console"


def test_console_shows_warnings_errors_and_crashes_but_not_routine_records() -> None:
    """problems_only hides info records, renders warnings as 'level event key=value' and passes other text."""
    info = '{"event": "service_started", "level": "info", "service": "inventory"}'
    warning = '{"event": "nats_error", "level": "warning", "error": "EOF", "service": "keys"}'
    assert problems_only(info) is None
    assert problems_only(warning) == "warning nats_error error=EOF"
    assert problems_only("Traceback (most recent call last):") == (
        "Traceback (most recent call last):"
    )
    assert problems_only("{not json") == "{not json"


async def test_supervisor_writes_every_line_to_the_log_and_echoes_what_the_filter_keeps(
    tmp_path: Path,
) -> None:
    """All child lines reach its log file; only lines the echo filter returns reach the console."""
    buffer = _Screen()
    log = tmp_path / "logs" / "talker.log"
    script = (
        "import time; print('keep me', flush=True); print('hide me', flush=True); time.sleep(60)"
    )
    async with Supervisor(Console(file=buffer, width=200)) as supervisor:
        pid = await supervisor.start(
            ChildCommand("talker", (sys.executable, "-c", script), env={}),
            log_file=log,
            echo=lambda line: line if "keep" in line else None,
        )
        await buffer.wait_for("keep me")
        assert supervisor.pid_of("talker") == pid
        assert supervisor.returncode_of("talker") is None

        async def lines_seen() -> list[str]:
            return supervisor.last_lines("talker")

        await wait_until(lines_seen, lambda lines: len(lines) == 2, timeout=30)
    assert "hide me" not in buffer.getvalue()
    assert log.read_text().splitlines() == ["keep me", "hide me"]


async def test_supervisor_signals_a_child_by_name() -> None:
    """signal(name, SIGUSR1) reaches the running child; an unknown name returns False."""
    buffer = _Screen()
    script = textwrap.dedent(
        """
        import signal, time
        got = []
        signal.signal(signal.SIGUSR1, lambda *_: got.append(1))  # no I/O in the handler
        print('armed', flush=True)
        while not got:
            time.sleep(0.02)
        print('got usr1', flush=True)
        time.sleep(60)
        """
    )
    async with Supervisor(Console(file=buffer, width=200)) as supervisor:
        await supervisor.start(ChildCommand("armed", (sys.executable, "-c", script), env={}))
        await buffer.wait_for("armed")
        assert supervisor.signal("armed", signal.SIGUSR1) is True
        await buffer.wait_for("got usr1")
        assert supervisor.signal("nobody", signal.SIGUSR1) is False
