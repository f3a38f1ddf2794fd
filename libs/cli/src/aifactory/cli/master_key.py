"""The keys service's master key file: created once, never overwritten.

``aifactory keys init`` writes it for an operator; ``aifactory up`` writes one under
``var/keys/`` the first time it starts the keys service on a machine, so a fresh
single-machine factory runs with no setup. In production the operator creates (or
provides through ``AIFACTORY_KEYS_MASTER_KEY``) and backs up the master key: every
tenant key is wrapped under it, and losing it makes them unrecoverable.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path

MASTER_KEY_ENV = "AIFACTORY_KEYS_MASTER_KEY"
MASTER_KEY_FILE_ENV = "AIFACTORY_KEYS_MASTER_KEY_FILE"


def master_key_file(var_dir: Path, env: Mapping[str, str]) -> Path:
    """Where the keys service looks for its master key under these settings."""
    if configured := env.get(MASTER_KEY_FILE_ENV):
        return Path(configured)
    return var_dir / "keys" / "master.key"


def write_master_key(target: Path) -> None:
    """Write 32 random bytes, base64, mode 0600; ``FileExistsError`` if one is there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(os.urandom(32)).decode() + "\n")


def ensure_master_key(var_dir: Path, env: Mapping[str, str]) -> Path | None:
    """Create the master key file if the keys service would find none; the path if created."""
    if env.get(MASTER_KEY_ENV, "").strip():
        return None
    target = master_key_file(var_dir, env)
    if target.exists():
        return None
    write_master_key(target)
    return target
