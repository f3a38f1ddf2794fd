"""Key custody contracts, version 1: commands, queries, lifecycle events, audit records.

The keys service holds per-tenant key rings (versions, policy, lifecycle) and does
envelope encryption for callers. Every request names the tenant and key and carries
the caller's identity (``tenant:<id>``, ``service:<name>`` or ``operator:<name>``)
and site; the key's policy decides. Plaintext key material (a data key) appears only
in the direct replies to ``generate_data_key`` and ``decrypt_data_key``: never in an
event, an audit record or a log line. Refusals come back as ``ErrorReply`` whose
``details["reason"]`` is a ``RefusalReason`` and ``details["audit_seq"]`` the audit
record that logged the refusal. Ciphertexts (wrapped data keys and sealed payloads)
are self-describing: ``b"afk1"``, the key version (4 bytes, big-endian), a 12-byte
nonce, then AES-256-GCM ciphertext and tag; the associated data binds the tenant,
key id, version and the caller's ``context``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from aifactory.contracts.base import Contract, Timestamp
from aifactory.contracts.registry import message

TenantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]
KeyId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Jurisdiction = Annotated[
    str, msgspec.Meta(min_length=2, max_length=10, pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
]
Principal = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=128,
        pattern=r"^(tenant|service|operator):[a-z0-9][a-z0-9_.-]*$",
        description="who calls: tenant:<tenant id>, service:<service name> or operator:<name>",
    ),
]
KeyVersion = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Context = Annotated[
    str,
    msgspec.Meta(
        max_length=256,
        description="encryption context bound into the associated data (e.g. a dataset id); "
        "the same context must be given to decrypt",
    ),
]
Ciphertext = Annotated[bytes, msgspec.Meta(min_length=36, max_length=4200)]
PayloadPlaintext = Annotated[bytes, msgspec.Meta(max_length=4096)]
AuditHash = Annotated[str, msgspec.Meta(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")]

KeyState = Literal["enabled", "disabled", "revoked", "destruction_scheduled", "destroyed"]
"""enabled: usable; disabled: refused until enabled; revoked: refused for good;
destruction_scheduled: refused, destroyed when the waiting period ends (can be
cancelled); destroyed: the key material is gone and its ciphertexts are unrecoverable."""

Operation = Literal[
    "create_key",
    "rotate_key",
    "set_min_decryption_version",
    "disable_key",
    "enable_key",
    "revoke_key",
    "schedule_key_destruction",
    "cancel_key_destruction",
    "destroy_key",
    "generate_data_key",
    "decrypt_data_key",
    "encrypt",
    "decrypt",
    "rewrap",
    "describe_key",
    "list_keys",
    "list_audit_records",
]

RefusalReason = Literal[
    "cross_tenant",  # a tenant principal asked for another tenant's key
    "caller_not_allowed",  # the principal is not in the key's allowed callers
    "site_not_allowed",  # the caller's site (or jurisdiction) is outside the key's policy
    "not_key_administrator",  # only the owning tenant or an operator may manage the key
    "key_not_found",
    "key_exists",  # create_key with a different policy for an existing key
    "invalid_policy",  # a policy allowing no site, or naming another tenant's principal
    "key_disabled",
    "key_revoked",
    "key_destruction_scheduled",
    "key_destroyed",
    "version_not_found",
    "below_min_decryption_version",
    "invalid_ciphertext",  # not ours, corrupted, or the wrong tenant / key / context
    "invalid_transition",  # the lifecycle does not allow this from the current state
    "waiting_period_not_elapsed",
    "waiting_period_too_short",
    "internal_error",  # the operation failed inside the service; nothing changed
]


class Caller(Contract, frozen=True, kw_only=True):
    """Who makes a request and from where (bound to NATS credentials in a later release)."""

    principal: Principal
    site: SiteId
    jurisdiction: Jurisdiction | None = None


class KeyPolicy(Contract, frozen=True, kw_only=True):
    """Where and by whom a key may be used, and how often it rotates.

    A data operation is allowed when the caller's principal is in ``allowed_callers``
    and its site is in ``allowed_sites`` or its jurisdiction in
    ``allowed_jurisdictions``. A tenant principal never reaches another tenant's key.
    """

    allowed_sites: Annotated[list[SiteId], msgspec.Meta(max_length=256)] = msgspec.field(
        default_factory=list
    )
    allowed_jurisdictions: Annotated[list[Jurisdiction], msgspec.Meta(max_length=64)] = (
        msgspec.field(default_factory=list)
    )
    allowed_callers: Annotated[list[Principal], msgspec.Meta(max_length=256)] = msgspec.field(
        default_factory=list
    )
    rotation_period_s: Annotated[int, msgspec.Meta(ge=0, le=10 * 366 * 86400)] = 0
    """Seconds between automatic rotations; 0 rotates only on command."""


class KeyDescription(Contract, frozen=True, kw_only=True):
    """A key ring as the service holds it (never its material)."""

    tenant: TenantId
    key_id: KeyId
    state: KeyState
    policy: KeyPolicy
    latest_version: KeyVersion
    min_decryption_version: KeyVersion
    created_at: Timestamp
    rotated_at: Timestamp
    destroy_after: Timestamp | None = None


class KeyList(Contract, frozen=True, kw_only=True):
    """Reply to ``ListKeys``: a tenant's key rings."""

    keys: list[KeyDescription]


class DataKey(Contract, frozen=True, kw_only=True):
    """A fresh 256-bit data key: its plaintext (use, then forget) and its wrapped form (store)."""

    tenant: TenantId
    key_id: KeyId
    version: KeyVersion
    plaintext: bytes
    wrapped: bytes


class DataKeyPlaintext(Contract, frozen=True, kw_only=True):
    """An unwrapped data key."""

    tenant: TenantId
    key_id: KeyId
    version: KeyVersion
    plaintext: bytes


class Sealed(Contract, frozen=True, kw_only=True):
    """A payload encrypted under the latest version of a tenant key."""

    tenant: TenantId
    key_id: KeyId
    version: KeyVersion
    ciphertext: bytes


class Opened(Contract, frozen=True, kw_only=True):
    """A decrypted payload."""

    tenant: TenantId
    key_id: KeyId
    version: KeyVersion
    plaintext: bytes


class RewrapItem(Contract, frozen=True, kw_only=True):
    """One ciphertext to re-encrypt, with the context it was sealed with."""

    ciphertext: Ciphertext
    context: Context = ""


class Rewrapped(Contract, frozen=True, kw_only=True):
    """Ciphertexts re-encrypted under the latest version, in request order."""

    tenant: TenantId
    key_id: KeyId
    version: KeyVersion
    ciphertexts: list[bytes]


class AuditRecord(Contract, frozen=True, kw_only=True):
    """One link of a tenant's audit hash chain: what was asked, by whom, and the outcome.

    ``record_hash`` is the SHA-256 (hex) of the record's JSON encoding (fields in the
    order declared here) with ``record_hash`` set to the empty string; ``prev_hash`` is
    the previous record's ``record_hash`` (64 zeros for the first record of a chain).
    """

    chain: TenantId
    seq: Annotated[int, msgspec.Meta(ge=1)]
    prev_hash: AuditHash
    at: Timestamp
    operation: Operation
    key_id: str = ""
    version: Annotated[int, msgspec.Meta(ge=0)] = 0
    principal: str
    site: str
    outcome: Literal["allowed", "refused"]
    reason: str = ""
    request_id: str = ""
    record_hash: str = ""


class AuditPage(Contract, frozen=True, kw_only=True):
    """Reply to ``ListAuditRecords``: records after ``after_seq``, oldest first."""

    chain: TenantId
    records: list[AuditRecord]
    head_seq: Annotated[int, msgspec.Meta(ge=0)]


# ---------------------------------------------------------------- key administration


@message(domain="keys", name="create_key", version=1, kind="cmd", reply=KeyDescription)
class CreateKey(Contract, frozen=True, kw_only=True):
    """Create a tenant key ring with its first version (idempotent for the same policy)."""

    tenant: TenantId
    key_id: KeyId
    policy: KeyPolicy
    caller: Caller


@message(domain="keys", name="rotate_key", version=1, kind="cmd", reply=KeyDescription)
class RotateKey(Contract, frozen=True, kw_only=True):
    """Add a new key version; new encryptions use it, older versions still decrypt."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller


@message(
    domain="keys", name="set_min_decryption_version", version=1, kind="cmd", reply=KeyDescription
)
class SetMinDecryptionVersion(Contract, frozen=True, kw_only=True):
    """Refuse to decrypt ciphertexts of versions below ``min_decryption_version``."""

    tenant: TenantId
    key_id: KeyId
    min_decryption_version: KeyVersion
    caller: Caller


@message(domain="keys", name="disable_key", version=1, kind="cmd", reply=KeyDescription)
class DisableKey(Contract, frozen=True, kw_only=True):
    """Suspend every use of a key until it is enabled again."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller


@message(domain="keys", name="enable_key", version=1, kind="cmd", reply=KeyDescription)
class EnableKey(Contract, frozen=True, kw_only=True):
    """Allow a disabled key again."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller


@message(domain="keys", name="revoke_key", version=1, kind="cmd", reply=KeyDescription)
class RevokeKey(Contract, frozen=True, kw_only=True):
    """Refuse every use of a key from now on, for good (destruction may follow)."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller
    reason: Annotated[str, msgspec.Meta(max_length=256)] = ""


@message(
    domain="keys", name="schedule_key_destruction", version=1, kind="cmd", reply=KeyDescription
)
class ScheduleKeyDestruction(Contract, frozen=True, kw_only=True):
    """Refuse every use now and destroy the key material once the waiting period ends."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller
    waiting_period_s: Annotated[int, msgspec.Meta(ge=0, le=366 * 86400)] = 7 * 86400


@message(domain="keys", name="cancel_key_destruction", version=1, kind="cmd", reply=KeyDescription)
class CancelKeyDestruction(Contract, frozen=True, kw_only=True):
    """Cancel a scheduled destruction; the key returns to the state it had before."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller


@message(domain="keys", name="destroy_key", version=1, kind="cmd", reply=KeyDescription)
class DestroyKey(Contract, frozen=True, kw_only=True):
    """Delete the key material of a key whose destruction waiting period has ended."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller


# ---------------------------------------------------------------- cryptographic operations


@message(domain="keys", name="generate_data_key", version=1, kind="cmd", reply=DataKey)
class GenerateDataKey(Contract, frozen=True, kw_only=True):
    """Generate a 256-bit data key and wrap it under the latest version of a tenant key."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller
    context: Context = ""


@message(domain="keys", name="decrypt_data_key", version=1, kind="cmd", reply=DataKeyPlaintext)
class DecryptDataKey(Contract, frozen=True, kw_only=True):
    """Unwrap a data key wrapped by ``generate_data_key`` (or ``rewrap``)."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller
    wrapped: Ciphertext
    context: Context = ""


@message(domain="keys", name="encrypt", version=1, kind="cmd", reply=Sealed)
class Encrypt(Contract, frozen=True, kw_only=True):
    """Encrypt a payload of up to 4 KiB under the latest version of a tenant key."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller
    plaintext: PayloadPlaintext
    context: Context = ""


@message(domain="keys", name="decrypt", version=1, kind="cmd", reply=Opened)
class Decrypt(Contract, frozen=True, kw_only=True):
    """Decrypt a payload sealed by ``encrypt``."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller
    ciphertext: Ciphertext
    context: Context = ""


@message(domain="keys", name="rewrap", version=1, kind="cmd", reply=Rewrapped)
class Rewrap(Contract, frozen=True, kw_only=True):
    """Re-encrypt ciphertexts under the latest key version without revealing their plaintext."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller
    items: Annotated[list[RewrapItem], msgspec.Meta(min_length=1, max_length=100)]


# ---------------------------------------------------------------- queries


@message(domain="keys", name="describe_key", version=1, kind="qry", reply=KeyDescription)
class DescribeKey(Contract, frozen=True, kw_only=True):
    """Describe one key ring."""

    tenant: TenantId
    key_id: KeyId
    caller: Caller


@message(domain="keys", name="list_keys", version=1, kind="qry", reply=KeyList)
class ListKeys(Contract, frozen=True, kw_only=True):
    """List a tenant's key rings."""

    tenant: TenantId
    caller: Caller


@message(domain="keys", name="list_audit_records", version=1, kind="qry", reply=AuditPage)
class ListAuditRecords(Contract, frozen=True, kw_only=True):
    """Read a tenant's audit chain, oldest first, in pages."""

    tenant: TenantId
    caller: Caller
    after_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500


# ---------------------------------------------------------------- events (no key material)


@message(domain="keys", name="key_created", version=1, kind="evt", scope="tenant")
class KeyCreated(Contract, frozen=True, kw_only=True):
    """A tenant key ring was created with its first version."""

    tenant: TenantId
    key_id: KeyId
    version: KeyVersion
    policy: KeyPolicy
    by: str
    at: Timestamp


@message(domain="keys", name="key_rotated", version=1, kind="evt", scope="tenant")
class KeyRotated(Contract, frozen=True, kw_only=True):
    """A key got a new version (by command, or automatically when its period elapsed)."""

    tenant: TenantId
    key_id: KeyId
    version: KeyVersion
    automatic: bool = False
    by: str
    at: Timestamp


@message(domain="keys", name="key_disabled", version=1, kind="evt", scope="tenant")
class KeyDisabled(Contract, frozen=True, kw_only=True):
    """A key was disabled: every use is refused until it is enabled."""

    tenant: TenantId
    key_id: KeyId
    by: str
    at: Timestamp


@message(domain="keys", name="key_enabled", version=1, kind="evt", scope="tenant")
class KeyEnabled(Contract, frozen=True, kw_only=True):
    """A disabled key (or one whose destruction was cancelled) is usable again."""

    tenant: TenantId
    key_id: KeyId
    by: str
    at: Timestamp


@message(domain="keys", name="key_revoked", version=1, kind="evt", scope="tenant")
class KeyRevoked(Contract, frozen=True, kw_only=True):
    """A key was revoked: every use is refused from now on; stop using the tenant's data."""

    tenant: TenantId
    key_id: KeyId
    reason: str = ""
    by: str
    at: Timestamp


@message(domain="keys", name="key_destruction_scheduled", version=1, kind="evt", scope="tenant")
class KeyDestructionScheduled(Contract, frozen=True, kw_only=True):
    """A key's material will be destroyed at ``destroy_after``; it is unusable meanwhile."""

    tenant: TenantId
    key_id: KeyId
    destroy_after: Timestamp
    by: str
    at: Timestamp


@message(domain="keys", name="key_destroyed", version=1, kind="evt", scope="tenant")
class KeyDestroyed(Contract, frozen=True, kw_only=True):
    """A key's material was deleted: data encrypted under it is unrecoverable."""

    tenant: TenantId
    key_id: KeyId
    versions: KeyVersion
    by: str
    at: Timestamp


@message(domain="keys", name="audit_records_appended", version=1, kind="audit", scope="tenant")
class AuditRecordsAppended(Contract, frozen=True, kw_only=True):
    """Records appended to a tenant's audit chain in one commit, in chain order."""

    chain: TenantId
    records: Annotated[list[AuditRecord], msgspec.Meta(min_length=1)]
