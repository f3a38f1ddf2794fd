"""Running aifactory services as their own OS processes in cross-service tests.

``ServiceProcess`` starts ``python -m aifactory.<name>`` with the test's NATS URL,
subject prefix and database, collects its output on a thread (so a failing test can
show it) and stops it with SIGTERM (SIGKILL if it hangs). Use it as a context manager.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from types import TracebackType


class ServiceProcess:
    """``python -m aifactory.<service>`` in the test's namespace."""

    def __init__(
        self,
        service: str,
        *,
        nats_url: str,
        prefix: str,
        database_url: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.service = service
        self.env = {
            **os.environ,
            "AIFACTORY_NATS_URL": nats_url,
            "AIFACTORY_SUBJECT_PREFIX": prefix,
            f"AIFACTORY_{service.upper()}_DATABASE_URL": database_url,
            "AIFACTORY_LOG_FORMAT": "json",
            **(env or {}),
        }
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> ServiceProcess:
        """Start the process and its output reader."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"aifactory.{self.service}"],
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
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def output(self) -> str:
        """Everything the process printed so far."""
        return "\n".join(self.lines)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
