"""Child processes of ``aifactory up``: start, stream their output, stop them.

Each service runs as its own OS process in its own session, so a Ctrl-C at the
terminal reaches only ``aifactory up``, which then stops the children in order:
SIGTERM to all, a grace period, then SIGKILL for any still running. Every line a
child writes (stdout and stderr, merged) goes to its log file when it has one, and is
printed with a coloured ``[name]`` prefix as it arrives when its ``echo`` filter
accepts it (all lines when there is no filter); a child that exits on its own is
reported with its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.text import Text

PREFIX_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
LINE_LIMIT = 1024 * 1024
"""Longest output line kept from a child; longer ones are reported as truncated."""
TAIL_LINES = 20
"""How many of a child's last lines are kept in memory for error reports."""

EchoFilter = Callable[[str], str | None]
"""Given a child's line: the text to print on the console, or None to keep it quiet."""


@dataclass(frozen=True, slots=True)
class ChildCommand:
    """How to run one child: its display name, argv and full environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    command: ChildCommand
    process: asyncio.subprocess.Process
    style: str
    echo: EchoFilter | None = None
    log: TextIO | None = None
    log_file: Path | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    pump: asyncio.Task[None] | None = None


class Supervisor:
    """Runs children and stops them all on exit; use as ``async with``."""

    def __init__(self, console: Console, *, stop_timeout: float = 10.0) -> None:
        self._console = console
        self._stop_timeout = stop_timeout
        self._children: list[_Child] = []
        self._styles = itertools.cycle(PREFIX_STYLES)
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the children started so far."""
        return [child.process.pid for child in self._children]

    def pid_of(self, name: str) -> int | None:
        """The process id of the child called ``name`` (None if none was started)."""
        child = self._find(name)
        return child.process.pid if child is not None else None

    def returncode_of(self, name: str) -> int | None:
        """The exit code of the child called ``name``; None while it runs."""
        child = self._find(name)
        return child.process.returncode if child is not None else None

    def signal(self, name: str, signum: int) -> bool:
        """Send ``signum`` to the running child called ``name``; False if it is not running."""
        child = self._find(name)
        if child is None or child.process.returncode is not None:
            return False
        try:
            child.process.send_signal(signum)
        except ProcessLookupError:
            return False
        return True

    def last_lines(self, name: str) -> list[str]:
        """The last lines (up to ``TAIL_LINES``) the child called ``name`` wrote."""
        child = self._find(name)
        return list(child.tail) if child is not None else []

    def _find(self, name: str) -> _Child | None:
        for child in self._children:
            if child.command.name == name:
                return child
        return None

    async def start(
        self,
        command: ChildCommand,
        *,
        log_file: Path | None = None,
        echo: EchoFilter | None = None,
    ) -> int:
        """Start ``command``; its output goes to ``log_file`` and, as ``echo`` says, the console.

        Returns the child's process id.
        """
        log = None
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log = log_file.open("a", encoding="utf-8", buffering=1)
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(command.env),
            start_new_session=True,
            limit=LINE_LIMIT,
        )
        child = _Child(command, process, next(self._styles), echo, log, log_file)
        child.pump = asyncio.create_task(self._pump(child), name=f"pump-{command.name}")
        self._children.append(child)
        return process.pid

    def _say(self, child: _Child, line: str) -> None:
        # The console may be gone (a closed terminal, `aifactory up | head`): keep
        # draining the child's pipe anyway, or it would block on its next write.
        with contextlib.suppress(OSError, ValueError):
            self._console.print(Text.assemble((f"[{child.command.name}] ", child.style), line))

    async def _pump(self, child: _Child) -> None:
        stream = child.process.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                self._say(child, f"(a line longer than {LINE_LIMIT} bytes was dropped)")
                continue
            if not raw:
                break
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            child.tail.append(line)
            if child.log is not None:
                try:
                    child.log.write(line + "\n")
                except (OSError, ValueError) as error:  # disk full, closed file: console only
                    child.log = None
                    self._say(child, f"(log file no longer written: {error})")
            # A filtered child is quiet while stopping: its goodbye lines are in the log.
            shown = line if child.echo is None else None if self._stopping else child.echo(line)
            if shown is not None:
                self._say(child, shown)
        if child.log is not None:
            child.log.close()
        code = await child.process.wait()
        if not self._stopping:
            self._say(child, f"exited with code {code}")

    async def stop(self) -> None:
        """SIGTERM every running child, wait ``stop_timeout``, then SIGKILL the rest."""
        self._stopping = True
        running = [c for c in self._children if c.process.returncode is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
        waits = [asyncio.create_task(c.process.wait()) for c in running]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self._stop_timeout)
            for child in running:
                if child.process.returncode is None:
                    self._say(child, f"did not stop within {self._stop_timeout:g}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
            if late:
                await asyncio.wait(late)
        pumps = [c.pump for c in self._children if c.pump is not None]
        if pumps:
            await asyncio.wait(pumps)
        for child in running:
            self._say(child, f"stopped (exit code {child.process.returncode})")

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
