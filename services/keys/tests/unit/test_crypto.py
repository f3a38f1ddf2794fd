"""Envelope cryptography: root of trust, binding of associated data, ciphertext format."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from aifactory.keys.crypto import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    MasterKeyRoot,
    RootOfTrustError,
    TenantKey,
    UnwrapFailed,
    ciphertext_version,
    load_master_key_root,
    tenant_key_binding,
    write_master_key_file,
)


def test_root_wraps_and_unwraps_only_with_the_same_binding(root: MasterKeyRoot) -> None:
    """Material wrapped for (tenant, key, version) unwraps with that binding and no other."""
    material = os.urandom(32)
    wrapped = root.wrap(material, tenant_key_binding("acme", "datasets", 1))
    assert material not in wrapped
    assert root.unwrap(wrapped, tenant_key_binding("acme", "datasets", 1)) == material
    for other in (
        tenant_key_binding("globex", "datasets", 1),
        tenant_key_binding("acme", "other", 1),
        tenant_key_binding("acme", "datasets", 2),
    ):
        with pytest.raises(UnwrapFailed):
            root.unwrap(wrapped, other)


def test_another_master_key_cannot_unwrap(root: MasterKeyRoot) -> None:
    """A key wrapped under one master key does not open under another."""
    wrapped = root.wrap(b"k" * 32, b"aad")
    with pytest.raises(UnwrapFailed):
        MasterKeyRoot(os.urandom(32), description="other").unwrap(wrapped, b"aad")


def test_sealed_payload_is_self_describing_and_bound_to_its_context() -> None:
    """A sealed payload names its version, opens with its context, and not with another."""
    key = TenantKey("acme", "datasets", 7, os.urandom(32))
    sealed = key.seal(b"secret dataset key", "dataset/1")
    assert sealed.startswith(b"afk1")
    assert ciphertext_version(sealed) == 7
    assert key.open(sealed, "dataset/1") == b"secret dataset key"
    with pytest.raises(UnwrapFailed):
        key.open(sealed, "dataset/2")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(UnwrapFailed):
        key.open(tampered, "dataset/1")


def test_same_material_under_another_tenant_does_not_open() -> None:
    """The tenant and key id are bound in: the same bytes as another tenant's key do not open it."""
    material = os.urandom(32)
    sealed = TenantKey("acme", "datasets", 1, material).seal(b"x")
    with pytest.raises(UnwrapFailed):
        TenantKey("globex", "datasets", 1, material).open(sealed)


@pytest.mark.parametrize(
    "blob", [b"", b"afk1", b"xxxx" + b"\x00" * 40, b"afk1\x00\x00\x00\x00" + b"\x00" * 40]
)
def test_foreign_bytes_are_not_taken_for_a_ciphertext(blob: bytes) -> None:
    """Short, wrongly tagged or version-0 blobs are refused as not ours."""
    with pytest.raises(UnwrapFailed):
        ciphertext_version(blob)


def test_master_key_from_environment() -> None:
    """A base64 master key in the environment is used as the root of trust."""
    text = base64.b64encode(os.urandom(32)).decode()
    root = load_master_key_root({MASTER_KEY_ENV: text}, Path("/nonexistent"))
    assert root.description == MASTER_KEY_ENV


def test_master_key_file_is_created_0600_and_loaded(tmp_path: Path) -> None:
    """A key file written by init has mode 0600 and loads; a second init refuses to overwrite it."""
    path = tmp_path / "keys" / "master.key"
    write_master_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_master_key_root({MASTER_KEY_FILE_ENV: str(path)}, Path("/x")).description == str(
        path
    )
    with pytest.raises(FileExistsError):
        write_master_key_file(path)


@pytest.mark.parametrize(
    ("content", "mode", "fragment"),
    [
        (None, 0o600, "create one with `aifactory keys init`"),
        ("not base64!!", 0o600, "not base64"),
        (base64.b64encode(b"short").decode(), 0o600, "must be 32 bytes"),
        (base64.b64encode(os.urandom(32)).decode(), 0o644, "readable by others"),
    ],
)
def test_unusable_master_key_is_a_clear_error(
    tmp_path: Path, content: str | None, mode: int, fragment: str
) -> None:
    """A missing, malformed, short or world-readable key file stops start-up with a clear message."""
    path = tmp_path / "master.key"
    if content is not None:
        path.write_text(content)
        path.chmod(mode)
    with pytest.raises(RootOfTrustError) as error:
        load_master_key_root({}, path)
    assert fragment in str(error.value)
