"""Bus settings, read once at a service's composition root.

Environment variables (all optional):

- ``AIFACTORY_NATS_URL`` (or ``NATS_URL``): where NATS is; default ``nats://127.0.0.1:4222``.
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

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM_MAX_AGE_S = 30 * 24 * 3600.0
DEFAULT_DUPLICATE_WINDOW_S = 2 * 3600.0


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


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Where NATS is and how the factory's streams are shaped."""

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
        return cls(
            nats_url=env.get("AIFACTORY_NATS_URL") or env.get("NATS_URL") or DEFAULT_NATS_URL,
            subject_prefix=prefix,
            stream_replicas=int(_number(env, "AIFACTORY_STREAM_REPLICAS", 1)),
            stream_max_age_s=_number(env, "AIFACTORY_STREAM_MAX_AGE", DEFAULT_STREAM_MAX_AGE_S),
            duplicate_window_s=_number(
                env, "AIFACTORY_DUPLICATE_WINDOW", DEFAULT_DUPLICATE_WINDOW_S
            ),
        )

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
