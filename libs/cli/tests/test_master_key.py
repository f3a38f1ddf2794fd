"""The master key file that `aifactory up` creates for the keys service on first start."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from aifactory.cli.master_key import ensure_master_key, write_master_key


def test_ensure_master_key_creates_a_private_32_byte_key_once(tmp_path: Path) -> None:
    """The first call writes 32 random bytes (base64, mode 0600) under var/keys; the second leaves it alone."""
    created = ensure_master_key(tmp_path, {})
    assert created == tmp_path / "keys" / "master.key"
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    first = created.read_text()
    assert len(base64.b64decode(first)) == 32
    assert ensure_master_key(tmp_path, {}) is None
    assert created.read_text() == first


def test_ensure_master_key_respects_configured_key(tmp_path: Path) -> None:
    """A key in the environment means no file is written; a configured file path is honoured."""
    assert ensure_master_key(tmp_path, {"AIFACTORY_KEYS_MASTER_KEY": "c2VjcmV0"}) is None
    assert not (tmp_path / "keys").exists()
    elsewhere = tmp_path / "custody" / "root.key"
    assert (
        ensure_master_key(tmp_path, {"AIFACTORY_KEYS_MASTER_KEY_FILE": str(elsewhere)}) == elsewhere
    )


def test_write_master_key_never_overwrites(tmp_path: Path) -> None:
    """Writing over an existing master key fails instead of destroying it."""
    target = tmp_path / "master.key"
    write_master_key(target)
    before = target.read_text()
    with pytest.raises(FileExistsError):
        write_master_key(target)
    assert target.read_text() == before
