"""Bus settings, read once at a service's composition root.

Environment variables (all optional):

- ``AIFACTORY_NATS_URL`` (or ``NATS_URL``): where NATS is; default ``nats://127.0.0.1:4222``.
  A comma-separated list names the servers of a cluster
  (``nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222``): a service connects to
  one of them and, when that server goes away, reconnects to another.
- ``AIFACTORY_SUBJECT_PREFIX``: a prefix put before every subject and stream name,
  to run several isolated factories on one NATS (tests use it); default none.
- ``AIFACTORY_STREAM_REPLICAS``: JetStream replicas per stream; default 1 (3 in a cluster).
- ``AIFACTORY_STREAM_MAX_AGE``: how long streams keep events, in seconds; default 30 days.
- ``AIFACTORY_DUPLICATE_WINDOW``: JetStream de-duplication window in seconds; default
  2 hours. It must exceed the longest outbox relay outage you want to be safe from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM_MAX_AGE_S = 30 * 24 * 3600.0
DEFAULT_DUPLICATE_WINDOW_S = 2 * 3600.0
NATS_SCHEMES = ("nats", "tls")
MAX_STREAM_REPLICAS = 5


class SettingsError(ValueError):
    """A setting has an invalid value."""


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def redact_url(url: str) -> str:
    """``url`` (one server or a comma-separated list) without credentials, for logs.

    ``nats://user:secret@host:4222`` becomes ``nats://***@host:4222``; a URL without
    credentials is returned unchanged.
    """
    redacted = []
    for entry in url.split(","):
        scheme, sep, rest = entry.partition("://")
        target = rest if sep else scheme
        userinfo, at, host = target.rpartition("@")
        if at and userinfo:
            target = f"***@{host}"
        redacted.append(f"{scheme}{sep}{target}" if sep else target)
    return ",".join(redacted)


def parse_servers(url: str) -> tuple[str, ...]:
    """The server URLs of a NATS URL that may be a comma-separated list.

    Each entry is ``nats://`` or ``tls://`` with a host (a bare ``host:port`` means
    ``nats://host:port``; the port is optional, 4222 by default). ``SettingsError``
    says which entry is wrong otherwise.
    """
    entries = [part.strip() for part in url.split(",")]
    if not all(entries):
        raise SettingsError(
            f"AIFACTORY_NATS_URL has an empty entry: {url!r}; give nats://host:port[,nats://...]"
        )
    servers = tuple(entry if "://" in entry else f"nats://{entry}" for entry in entries)
    for server in servers:
        try:
            parsed = urlsplit(server)
            port = parsed.port
        except ValueError as exc:
            raise SettingsError(
                f"AIFACTORY_NATS_URL entry {server!r} is not a URL: {exc}"
            ) from None
        if parsed.scheme not in NATS_SCHEMES or not parsed.hostname:
            raise SettingsError(
                f"AIFACTORY_NATS_URL entry {server!r} must look like nats://host:port "
                f"(schemes: {', '.join(NATS_SCHEMES)}; separate several servers with commas)"
            )
        if port == 0:
            raise SettingsError(f"AIFACTORY_NATS_URL entry {server!r} has port 0")
    return servers


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Where NATS is and how the factory's streams are shaped.

    ``nats_url`` is one server URL or a comma-separated list of a cluster's servers;
    ``servers`` is that list, which is what clients connect with.
    """

    nats_url: str = DEFAULT_NATS_URL
    subject_prefix: str = ""
    stream_replicas: int = 1
    stream_max_age_s: float = DEFAULT_STREAM_MAX_AGE_S
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BusSettings:
        """Settings from ``AIFACTORY_*`` environment variables (see module docstring)."""
        env = os.environ if env is None else env
        prefix = env.get("AIFACTORY_SUBJECT_PREFIX", "").strip(".")
        if prefix and not all(part.isidentifier() for part in prefix.split(".")):
            raise SettingsError(
                f"AIFACTORY_SUBJECT_PREFIX must be dot-separated identifiers, got {prefix!r}"
            )
        servers = parse_servers(
            env.get("AIFACTORY_NATS_URL") or env.get("NATS_URL") or DEFAULT_NATS_URL
        )
        replicas = _number(env, "AIFACTORY_STREAM_REPLICAS", 1)
        if replicas != int(replicas) or not 1 <= replicas <= MAX_STREAM_REPLICAS:
            raise SettingsError(
                "AIFACTORY_STREAM_REPLICAS must be a whole number from 1 to "
                f"{MAX_STREAM_REPLICAS} (JetStream's limit), got {replicas:g}"
            )
        return cls(
            nats_url=",".join(servers),
            subject_prefix=prefix,
            stream_replicas=int(replicas),
            stream_max_age_s=_number(env, "AIFACTORY_STREAM_MAX_AGE", DEFAULT_STREAM_MAX_AGE_S),
            duplicate_window_s=_number(
                env, "AIFACTORY_DUPLICATE_WINDOW", DEFAULT_DUPLICATE_WINDOW_S
            ),
        )

    @property
    def servers(self) -> list[str]:
        """The NATS server URLs to connect to (one, or every server of a cluster)."""
        return list(parse_servers(self.nats_url))

    @property
    def display_url(self) -> str:
        """``nats_url`` without credentials: what logs and messages show."""
        return redact_url(self.nats_url)

    @property
    def namespace(self) -> Namespace:
        """The subject/stream namespace these settings select."""
        return Namespace(self.subject_prefix)


@dataclass(frozen=True, slots=True)
class Namespace:
    """Prefixes subjects and stream names so several factories can share one NATS.

    The empty namespace (production default) leaves names unchanged.
    """

    prefix: str = ""

    def subject(self, subject: str) -> str:
        """The subject as it is on the wire."""
        return f"{self.prefix}.{subject}" if self.prefix else subject

    def strip(self, subject: str) -> str:
        """The contract subject of a wire subject (inverse of ``subject``)."""
        if self.prefix and subject.startswith(self.prefix + "."):
            return subject[len(self.prefix) + 1 :]
        return subject

    def stream(self, name: str) -> str:
        """The stream (or durable consumer) name as it is on the server."""
        if not self.prefix:
            return name
        return f"{self.prefix.replace('.', '_').upper()}_{name}"


ROOT_NAMESPACE = Namespace()
"""The production namespace: subjects and stream names as the contracts give them."""
