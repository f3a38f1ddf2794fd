"""Where a service keeps its state.

``AIFACTORY_<SERVICE>_DATABASE_URL`` (e.g. ``AIFACTORY_INVENTORY_DATABASE_URL``), else
``AIFACTORY_DATABASE_URL``, else a SQLite file ``<var>/<service>.db`` where ``<var>``
is ``AIFACTORY_VAR_DIR`` or ``./var``. PostgreSQL URLs may be given as
``postgresql://...``; the asyncpg driver is selected automatically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def async_url(url: str) -> str:
    """``url`` with an async driver (asyncpg for PostgreSQL, aiosqlite for SQLite)."""
    for scheme, driver in (
        ("postgresql+asyncpg://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(scheme):
            return driver + url[len(scheme) :]
    raise ValueError(f"unsupported database URL {url!r}: use postgresql://... or sqlite:///...")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The database of one service."""

    url: str

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> StoreSettings:
        """Settings for ``service`` from the environment (see module docstring)."""
        env = os.environ if env is None else env
        url = env.get(f"AIFACTORY_{service.upper()}_DATABASE_URL") or env.get(
            "AIFACTORY_DATABASE_URL"
        )
        if url:
            return cls(async_url(url))
        var = Path(env.get("AIFACTORY_VAR_DIR", "var"))
        return cls(f"sqlite+aiosqlite:///{var / f'{service}.db'}")

    @property
    def is_sqlite(self) -> bool:
        """Whether this is a SQLite database."""
        return self.url.startswith("sqlite")
