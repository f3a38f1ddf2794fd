"""Helpers for the CLI tests: run ``aifactory`` as a real subprocess and read its output.

``cli`` runs a command to completion; ``spawn_cli`` starts a long-running one (``up``)
whose output lines are collected by a thread, so a test waits on a line with a
timeout instead of sleeping. Every spawned process is killed when the test ends.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aifactory.bus.settings import Namespace

CLI = [sys.executable, "-m", "aifactory.cli.main"]


@dataclass
class CliProcess:
    """A running ``aifactory`` command whose stdout+stderr lines are collected."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _arrivals: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _reader: threading.Thread | None = None

    def start_reader(self) -> None:
        """Collect output lines on a daemon thread."""
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                self._arrivals.put(line.rstrip("\n"))
            self._arrivals.put(None)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The first output line containing ``text``; fails with the output so far."""
        for seen in self.lines:
            if text in seen:
                return seen
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                arrived = self._arrivals.get(timeout=left)
            except queue.Empty:
                break
            if arrived is None:
                pytest.fail(f"process exited before printing {text!r}; output:\n" + self.output())
            self.lines.append(arrived)
            if text in arrived:
                return arrived
        pytest.fail(f"no line with {text!r} within {timeout}s; output:\n" + self.output())

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for exit, collect the remaining output and return the exit code."""
        code = self.process.wait(timeout=timeout)
        while True:
            try:
                line = self._arrivals.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return code

    def close(self) -> None:
        """Stop the process if still running (SIGINT, then SIGKILL) and release its pipe."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment for CLI subprocesses: no inherited NATS URL, unbuffered output."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATS_URL", "AIFACTORY_NATS_URL", "AIFACTORY_SUBJECT_PREFIX")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def namespaced_env(cli_env: dict[str, str], namespace: Namespace) -> dict[str, str]:
    """``cli_env`` inside this test's subject/stream namespace."""
    return {**cli_env, "AIFACTORY_SUBJECT_PREFIX": namespace.prefix}


def run_cli(
    args: list[str], env: Mapping[str, str], *, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``aifactory ARGS`` to completion, capturing stdout and stderr."""
    return subprocess.run(
        [*CLI, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def spawn_cli() -> Iterator[Callable[..., CliProcess]]:
    """Start ``aifactory ARGS`` in the background; killed at the end of the test."""
    started: list[CliProcess] = []

    def spawn(args: list[str], env: Mapping[str, str], cwd: Path | None = None) -> CliProcess:
        process = subprocess.Popen(
            [*CLI, *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running = CliProcess(process)
        running.start_reader()
        started.append(running)
        return running

    try:
        yield spawn
    finally:
        for running in started:
            running.close()


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli(args, env)`` runs ``aifactory ARGS`` to completion (see ``run_cli``)."""
    return run_cli


@pytest.fixture
def nats_without_jetstream() -> Iterator[str]:
    """A plain nats-server (no JetStream) on a free port; stopped after the test."""
    from aifactory.bus.embedded import find_nats_server, free_port, nats_answers

    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(find_nats_server()), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not nats_answers(url, timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("plain nats-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
