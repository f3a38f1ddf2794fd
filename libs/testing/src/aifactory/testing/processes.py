"""Running aifactory services as their own OS processes in cross-service tests.

``ServiceProcess`` starts ``python -m aifactory.<name>`` with the test's NATS URL,
subject prefix and database, collects its output on a thread (so a failing test can
show it) and stops it with SIGTERM (SIGKILL if it hangs). ``kill()`` is ``kill -9``:
no shutdown hook runs, whatever the process was doing is cut off; ``start()`` again
restarts it on the same database (its output keeps accumulating, each start marked).
Use it as a context manager. The node agent, which has no database, runs the same way
with ``database_url=None`` and its command line in ``args``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType


class ServiceProcess:
    """``python -m aifactory.<service>`` in the test's namespace."""

    def __init__(
        self,
        service: str,
        *,
        nats_url: str,
        prefix: str,
        database_url: str | None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.service = service
        self.args = list(args)
        self.env = {
            **os.environ,
            "AIFACTORY_NATS_URL": nats_url,
            "AIFACTORY_SUBJECT_PREFIX": prefix,
            "AIFACTORY_LOG_FORMAT": "json",
            **({f"AIFACTORY_{service.upper()}_DATABASE_URL": database_url} if database_url else {}),
            **(env or {}),
        }
        self.lines: list[str] = []
        self.starts = 0
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Whether the process is running now."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> ServiceProcess:
        """Start the process (again, after ``stop`` or ``kill``) and its output reader."""
        if self.alive:
            raise RuntimeError(f"{self.service} is already running")
        self.starts += 1
        self.lines.append(f"----- {self.service}: start #{self.starts} -----")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"aifactory.{self.service}", *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                self.lines.append(line.rstrip("\n"))

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        return self

    def kill(self) -> int | None:
        """``kill -9``: SIGKILL now, no clean shutdown; returns the exit code (-9)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close()
        self.lines.append(f"----- {self.service}: killed (SIGKILL) -----")
        return self.process.returncode

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close()
        return self.process.returncode

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def output(self) -> str:
        """Everything the process printed so far."""
        return "\n".join(self.lines)

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines it printed, for assertion messages."""
        return "\n".join(self.lines[-lines:])

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
