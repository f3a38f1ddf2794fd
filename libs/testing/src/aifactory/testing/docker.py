"""Whether a Docker engine answers, for testcontainers-backed fixtures.

The check speaks HTTP to the engine's socket directly (``GET /_ping``) so that a
missing engine costs no more than a refused connection and leaks no socket.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

_PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"


def _answers(sock: socket.socket) -> bool:
    sock.sendall(_PING)
    return sock.recv(64).startswith(b"HTTP/1.1 200")


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers a ping within two seconds."""
    if os.environ.get("AIFACTORY_TEST_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parsed = urlparse(host)
    try:
        if parsed.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(parsed.path)
                return _answers(sock)
        if parsed.scheme in ("tcp", "http"):
            address = (parsed.hostname or "127.0.0.1", parsed.port or 2375)
            with socket.create_connection(address, timeout=2) as sock:
                return _answers(sock)
    except OSError:
        return False
    return False
