"""Envelope cryptography: the root of trust, tenant key material, and ciphertext format.

Every tenant key version is 32 random bytes kept at rest only wrapped by the root of
trust (AES-256-GCM, associated data binding tenant, key id and version, so a wrapped
key moved to another key or version does not unwrap). Data keys and payloads are
sealed under a tenant key version in the self-describing format ``b"afk1"`` +
version (4 bytes, big-endian) + 12-byte nonce + AES-256-GCM ciphertext and tag, with
associated data binding tenant, key id, version and the caller's context. The root
of trust is a Protocol so an HSM / PKCS#11 backend can replace ``MasterKeyRoot``.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAGIC = b"afk1"
_HEADER = struct.Struct(">4sI")
HEADER_BYTES = _HEADER.size + NONCE_BYTES

MASTER_KEY_ENV = "AIFACTORY_KEYS_MASTER_KEY"
MASTER_KEY_FILE_ENV = "AIFACTORY_KEYS_MASTER_KEY_FILE"


class RootOfTrustError(RuntimeError):
    """The root of trust is missing, unreadable or malformed; the service cannot start."""


class UnwrapFailed(Exception):
    """A wrapped key or ciphertext does not open: corrupted, foreign, or wrong binding."""


class RootOfTrust(Protocol):
    """Wraps and unwraps tenant key material (a master key file today, an HSM later)."""

    @property
    def description(self) -> str:
        """Where the root lives, for logs (never the key itself)."""
        ...

    def wrap(self, material: bytes, associated_data: bytes) -> bytes:
        """``material`` encrypted and authenticated together with ``associated_data``."""
        ...

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes:
        """The material of ``wrapped``; ``UnwrapFailed`` if it or its binding is wrong."""
        ...


class MasterKeyRoot:
    """A 256-bit master key held in process memory, read from a file or the environment."""

    def __init__(self, master_key: bytes, *, description: str) -> None:
        if len(master_key) != KEY_BYTES:
            raise RootOfTrustError(
                f"the master key must be {KEY_BYTES} bytes, got {len(master_key)} ({description})"
            )
        self._aead = AESGCM(master_key)
        self._description = description

    @property
    def description(self) -> str:
        """Where the master key came from."""
        return self._description

    def wrap(self, material: bytes, associated_data: bytes) -> bytes:
        """Nonce + AES-256-GCM ciphertext and tag of ``material``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, material, associated_data)

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes:
        """The material inside ``wrapped``."""
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], associated_data)
        except (InvalidTag, ValueError) as exc:
            raise UnwrapFailed("the wrapped key does not open under this root of trust") from exc


def new_master_key_text() -> str:
    """A fresh master key as base64 text (what ``aifactory keys init`` writes)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n"


def _decode_master_key(text: str, origin: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RootOfTrustError(f"{origin} is not base64 text") from None


def load_master_key_root(env: Mapping[str, str], default_file: Path) -> MasterKeyRoot:
    """The root from ``AIFACTORY_KEYS_MASTER_KEY`` (base64), else the key file.

    The file is ``AIFACTORY_KEYS_MASTER_KEY_FILE`` or ``default_file``; it must exist
    and be readable by its owner only (mode 0600 or stricter).
    """
    if text := env.get(MASTER_KEY_ENV, "").strip():
        return MasterKeyRoot(_decode_master_key(text, MASTER_KEY_ENV), description=MASTER_KEY_ENV)
    path = Path(env.get(MASTER_KEY_FILE_ENV) or default_file)
    if not path.exists():
        raise RootOfTrustError(
            f"no master key: {path} does not exist and {MASTER_KEY_ENV} is not set; "
            "create one with `aifactory keys init`"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise RootOfTrustError(
            f"master key file {path} is readable by others (mode {mode:o}); run chmod 600 {path}"
        )
    try:
        text = path.read_text()
    except OSError as exc:
        raise RootOfTrustError(f"cannot read master key file {path}: {exc}") from None
    return MasterKeyRoot(_decode_master_key(text, str(path)), description=str(path))


def write_master_key_file(path: Path) -> None:
    """Create ``path`` (mode 0600) holding a new master key; refuses to overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(new_master_key_text())


def _binding(*parts: str | int) -> bytes:
    return b"\x00".join(str(part).encode() for part in parts)


def tenant_key_binding(tenant: str, key_id: str, version: int) -> bytes:
    """Associated data of a tenant key version wrapped by the root of trust."""
    return _binding("aifactory.keys.v1/tenant-key", tenant, key_id, version)


def new_key_material() -> bytes:
    """32 random bytes: a tenant key version or a data key."""
    return os.urandom(KEY_BYTES)


def ciphertext_version(ciphertext: bytes) -> int:
    """The key version a ciphertext was sealed under; ``UnwrapFailed`` if it is not ours."""
    if len(ciphertext) < HEADER_BYTES + TAG_BYTES:
        raise UnwrapFailed("the ciphertext is too short to be an aifactory ciphertext")
    magic, version = _HEADER.unpack_from(ciphertext)
    if magic != MAGIC or version < 1:
        raise UnwrapFailed("the ciphertext does not start with an aifactory header")
    return int(version)


class TenantKey:
    """One unwrapped version of a tenant key, ready to seal and open."""

    __slots__ = ("_aead", "key_id", "tenant", "version")

    def __init__(self, tenant: str, key_id: str, version: int, material: bytes) -> None:
        self.tenant = tenant
        self.key_id = key_id
        self.version = version
        self._aead = AESGCM(material)

    def _binding(self, context: str) -> bytes:
        return _binding("aifactory.keys.v1/data", self.tenant, self.key_id, self.version, context)

    def seal(self, plaintext: bytes, context: str = "") -> bytes:
        """``plaintext`` in the aifactory ciphertext format under this version."""
        nonce = os.urandom(NONCE_BYTES)
        header = _HEADER.pack(MAGIC, self.version) + nonce
        return header + self._aead.encrypt(nonce, plaintext, self._binding(context))

    def open(self, ciphertext: bytes, context: str = "") -> bytes:
        """The plaintext of a ciphertext sealed under this version with ``context``."""
        if ciphertext_version(ciphertext) != self.version:
            raise UnwrapFailed("the ciphertext was sealed under another key version")
        nonce = ciphertext[_HEADER.size : HEADER_BYTES]
        try:
            return self._aead.decrypt(nonce, ciphertext[HEADER_BYTES:], self._binding(context))
        except InvalidTag as exc:
            raise UnwrapFailed(
                "the ciphertext does not open: corrupted, or sealed for another tenant, key "
                "or context"
            ) from exc
