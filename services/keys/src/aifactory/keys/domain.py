"""Key custody rules: who may use or manage a key, and its lifecycle. Pure, no I/O.

A key ring moves through ``enabled`` <-> ``disabled`` -> ``revoked`` (final), any
non-destroyed state -> ``destruction_scheduled`` (cancellable back to the state it
had) -> ``destroyed`` once the waiting period has passed. Only ``enabled`` keys are
used. A data operation is allowed when the caller is in the key's allowed callers
(a tenant principal never reaches another tenant's key, whatever the policy says)
and calls from an allowed site or jurisdiction; the key is managed by its own
tenant or an operator. Every refusal is a ``Refusal`` with a stable reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import msgspec

from aifactory.contracts.keys.v1 import (
    Caller,
    KeyDescription,
    KeyPolicy,
    KeyState,
    RefusalReason,
)
from aifactory.contracts.replies import ErrorCode

_CODES: dict[str, ErrorCode] = {
    "cross_tenant": "unauthorized",
    "caller_not_allowed": "unauthorized",
    "site_not_allowed": "unauthorized",
    "not_key_administrator": "unauthorized",
    "key_not_found": "not_found",
    "version_not_found": "not_found",
    "invalid_ciphertext": "invalid_request",
    "invalid_policy": "invalid_request",
    "waiting_period_too_short": "invalid_request",
    "internal_error": "internal",
}


class Refusal(Exception):
    """Why an operation is refused: a stable reason, its error code and a message."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: RefusalReason = reason
        self.message = message

    @property
    def code(self) -> ErrorCode:
        """The ``ErrorReply`` code this reason maps to (``conflict`` for lifecycle states)."""
        return _CODES.get(self.reason, "conflict")


@dataclass(frozen=True, slots=True)
class KeyRing:
    """A tenant key ring's state (its material lives apart, wrapped)."""

    tenant: str
    key_id: str
    state: KeyState
    policy: KeyPolicy
    latest_version: int
    min_decryption_version: int
    created_at: dt.datetime
    rotated_at: dt.datetime
    destroy_after: dt.datetime | None = None
    state_before_destruction: KeyState | None = None

    def describe(self) -> KeyDescription:
        """The ring as its reply contract."""
        return KeyDescription(
            tenant=self.tenant,
            key_id=self.key_id,
            state=self.state,
            policy=self.policy,
            latest_version=self.latest_version,
            min_decryption_version=self.min_decryption_version,
            created_at=self.created_at,
            rotated_at=self.rotated_at,
            destroy_after=self.destroy_after,
        )


def tenant_of(principal: str) -> str | None:
    """The tenant a ``tenant:<id>`` principal speaks for, else ``None``."""
    kind, _, name = principal.partition(":")
    return name if kind == "tenant" else None


def effective_policy(tenant: str, policy: KeyPolicy) -> KeyPolicy:
    """The policy as stored: the owning tenant is an allowed caller when none is named."""
    if policy.allowed_callers:
        return policy
    return msgspec.structs.replace(policy, allowed_callers=[f"tenant:{tenant}"])


def check_policy(tenant: str, policy: KeyPolicy) -> None:
    """Refuse a policy that allows no site at all, or grants another tenant's principal."""
    if not policy.allowed_sites and not policy.allowed_jurisdictions:
        raise Refusal("invalid_policy", "a key policy must allow at least one site or jurisdiction")
    for principal in policy.allowed_callers:
        other = tenant_of(principal)
        if other is not None and other != tenant:
            raise Refusal(
                "invalid_policy",
                f"{principal} belongs to another tenant and can never use {tenant}'s keys",
            )


def check_administrator(caller: Caller, tenant: str) -> None:
    """Only the owning tenant or an operator manages (and reads) a tenant's keys."""
    if caller.principal.startswith("operator:"):
        return
    owner = tenant_of(caller.principal)
    if owner == tenant:
        return
    if owner is not None:
        raise Refusal("cross_tenant", f"{caller.principal} may not manage keys of tenant {tenant}")
    raise Refusal(
        "not_key_administrator", f"{caller.principal} is neither tenant {tenant} nor an operator"
    )


def check_use(ring: KeyRing, caller: Caller) -> None:
    """Refuse a data operation by ``caller`` on ``ring`` unless its policy allows it."""
    owner = tenant_of(caller.principal)
    if owner is not None and owner != ring.tenant:
        raise Refusal(
            "cross_tenant", f"{caller.principal} may not use keys of tenant {ring.tenant}"
        )
    if caller.principal not in ring.policy.allowed_callers:
        raise Refusal(
            "caller_not_allowed", f"{caller.principal} is not an allowed caller of {ring.key_id}"
        )
    in_jurisdiction = (
        caller.jurisdiction is not None and caller.jurisdiction in ring.policy.allowed_jurisdictions
    )
    if caller.site not in ring.policy.allowed_sites and not in_jurisdiction:
        raise Refusal(
            "site_not_allowed",
            f"site {caller.site} is outside the allowed sites and jurisdictions of {ring.key_id}",
        )


_UNUSABLE: dict[KeyState, tuple[RefusalReason, str]] = {
    "disabled": ("key_disabled", "is disabled"),
    "revoked": ("key_revoked", "is revoked"),
    "destruction_scheduled": ("key_destruction_scheduled", "is scheduled for destruction"),
    "destroyed": ("key_destroyed", "was destroyed; its ciphertexts are unrecoverable"),
}


def check_usable(ring: KeyRing) -> None:
    """Refuse any cryptographic use of a key that is not enabled."""
    if ring.state != "enabled":
        reason, what = _UNUSABLE[ring.state]
        raise Refusal(reason, f"key {ring.key_id} {what}")


def check_decryptable(ring: KeyRing, version: int) -> None:
    """Refuse to decrypt under a version the ring does not have or no longer allows."""
    if version > ring.latest_version:
        raise Refusal("version_not_found", f"key {ring.key_id} has no version {version}")
    if version < ring.min_decryption_version:
        raise Refusal(
            "below_min_decryption_version",
            f"version {version} of {ring.key_id} is below its minimum decryption version "
            f"{ring.min_decryption_version}",
        )


def new_ring(tenant: str, key_id: str, policy: KeyPolicy, now: dt.datetime) -> KeyRing:
    """A fresh, enabled ring at version 1."""
    check_policy(tenant, policy)
    return KeyRing(
        tenant=tenant,
        key_id=key_id,
        state="enabled",
        policy=effective_policy(tenant, policy),
        latest_version=1,
        min_decryption_version=1,
        created_at=now,
        rotated_at=now,
    )


def _invalid(ring: KeyRing, action: str) -> Refusal:
    if ring.state == "destroyed":
        return Refusal("key_destroyed", f"key {ring.key_id} was destroyed")
    return Refusal("invalid_transition", f"cannot {action} key {ring.key_id} while {ring.state}")


def rotate(ring: KeyRing, now: dt.datetime) -> KeyRing:
    """The ring with a new latest version."""
    if ring.state not in ("enabled", "disabled"):
        raise _invalid(ring, "rotate")
    return dataclasses.replace(ring, latest_version=ring.latest_version + 1, rotated_at=now)


def set_min_decryption_version(ring: KeyRing, version: int) -> KeyRing:
    """The ring refusing to decrypt below ``version``."""
    if ring.state not in ("enabled", "disabled"):
        raise _invalid(ring, "change the minimum decryption version of")
    if version > ring.latest_version:
        raise Refusal("version_not_found", f"key {ring.key_id} has no version {version}")
    return dataclasses.replace(ring, min_decryption_version=version)


def disable(ring: KeyRing) -> KeyRing:
    """The ring disabled (unchanged if it already is)."""
    if ring.state not in ("enabled", "disabled"):
        raise _invalid(ring, "disable")
    return dataclasses.replace(ring, state="disabled")


def enable(ring: KeyRing) -> KeyRing:
    """The ring enabled again (unchanged if it already is)."""
    if ring.state not in ("enabled", "disabled"):
        raise _invalid(ring, "enable")
    return dataclasses.replace(ring, state="enabled")


def revoke(ring: KeyRing) -> KeyRing:
    """The ring revoked for good; a scheduled destruction stays scheduled."""
    if ring.state == "destroyed":
        raise _invalid(ring, "revoke")
    if ring.state == "destruction_scheduled":
        return dataclasses.replace(ring, state_before_destruction="revoked")
    return dataclasses.replace(ring, state="revoked")


def schedule_destruction(
    ring: KeyRing, now: dt.datetime, waiting_period_s: int, minimum_waiting_s: int
) -> KeyRing:
    """The ring unusable now and due for destruction after the waiting period."""
    if ring.state == "destroyed":
        raise _invalid(ring, "schedule destruction of")
    if waiting_period_s < minimum_waiting_s:
        raise Refusal(
            "waiting_period_too_short",
            f"the waiting period must be at least {minimum_waiting_s} s, got {waiting_period_s} s",
        )
    if ring.state == "destruction_scheduled":
        return ring
    return dataclasses.replace(
        ring,
        state="destruction_scheduled",
        state_before_destruction=ring.state,
        destroy_after=now + dt.timedelta(seconds=waiting_period_s),
    )


def cancel_destruction(ring: KeyRing) -> KeyRing:
    """The ring back in the state it had before destruction was scheduled."""
    if ring.state != "destruction_scheduled":
        raise _invalid(ring, "cancel destruction of")
    return dataclasses.replace(
        ring,
        state=ring.state_before_destruction or "disabled",
        state_before_destruction=None,
        destroy_after=None,
    )


def destroy(ring: KeyRing, now: dt.datetime) -> KeyRing:
    """The ring destroyed, once its waiting period has passed."""
    if ring.state == "destroyed":
        return ring
    if ring.state != "destruction_scheduled" or ring.destroy_after is None:
        raise Refusal(
            "invalid_transition",
            f"key {ring.key_id} must be scheduled for destruction first (it is {ring.state})",
        )
    if now < ring.destroy_after:
        raise Refusal(
            "waiting_period_not_elapsed",
            f"key {ring.key_id} can be destroyed after {ring.destroy_after.isoformat()}",
        )
    return dataclasses.replace(ring, state="destroyed", state_before_destruction=None)


def rotation_due(ring: KeyRing, now: dt.datetime) -> bool:
    """Whether an enabled ring's rotation period has elapsed."""
    period = ring.policy.rotation_period_s
    return (
        ring.state == "enabled"
        and period > 0
        and now >= ring.rotated_at + dt.timedelta(seconds=period)
    )


def destruction_due(ring: KeyRing, now: dt.datetime) -> bool:
    """Whether a scheduled destruction's waiting period has ended."""
    return (
        ring.state == "destruction_scheduled"
        and ring.destroy_after is not None
        and now >= ring.destroy_after
    )
