"""Key policy and lifecycle rules (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from aifactory.contracts.keys.v1 import Caller, KeyPolicy
from aifactory.keys import domain
from aifactory.keys.domain import KeyRing, Refusal

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
POLICY = KeyPolicy(allowed_sites=["fra-1"], allowed_jurisdictions=["DE"], rotation_period_s=3600)


def ring(**changes: object) -> KeyRing:
    """Acme's fresh ring with ``changes`` applied."""
    return dataclasses.replace(domain.new_ring("acme", "datasets", POLICY, NOW), **changes)  # type: ignore[arg-type]


def reason_of(call: object) -> str:
    with pytest.raises(Refusal) as refused:
        call()  # type: ignore[operator]
    return refused.value.reason


def test_new_ring_defaults_allowed_callers_to_the_owning_tenant() -> None:
    """A policy naming no callers lets exactly the owning tenant use the key."""
    assert ring().policy.allowed_callers == ["tenant:acme"]
    assert ring().state == "enabled"
    assert ring().latest_version == 1


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (KeyPolicy(), "invalid_policy"),
        (KeyPolicy(allowed_sites=["fra-1"], allowed_callers=["tenant:globex"]), "invalid_policy"),
    ],
)
def test_policy_without_residency_or_granting_another_tenant_is_refused(
    policy: KeyPolicy, reason: str
) -> None:
    """A policy allowing no site, or naming another tenant's principal, is refused."""
    assert reason_of(lambda: domain.new_ring("acme", "k", policy, NOW)) == reason


@pytest.mark.parametrize(
    ("caller", "reason"),
    [
        (Caller(principal="tenant:globex", site="fra-1"), "cross_tenant"),
        (Caller(principal="service:billing", site="fra-1"), "caller_not_allowed"),
        (Caller(principal="tenant:acme", site="iad-1"), "site_not_allowed"),
        (Caller(principal="tenant:acme", site="iad-1", jurisdiction="US"), "site_not_allowed"),
    ],
)
def test_use_outside_the_policy_is_refused_with_its_reason(caller: Caller, reason: str) -> None:
    """Another tenant, an unlisted service and a site outside the residency are each refused."""
    assert reason_of(lambda: domain.check_use(ring(), caller)) == reason


def test_use_from_an_allowed_site_or_jurisdiction_is_allowed() -> None:
    """The owning tenant may use its key from an allowed site or from an allowed jurisdiction."""
    domain.check_use(ring(), Caller(principal="tenant:acme", site="fra-1"))
    domain.check_use(ring(), Caller(principal="tenant:acme", site="muc-2", jurisdiction="DE"))


def test_administration_is_for_the_owner_and_operators_only() -> None:
    """The owning tenant and operators manage keys; another tenant and services are refused."""
    domain.check_administrator(Caller(principal="tenant:acme", site="x"), "acme")
    domain.check_administrator(Caller(principal="operator:alice", site="x"), "acme")
    other = Caller(principal="tenant:globex", site="x")
    assert reason_of(lambda: domain.check_administrator(other, "acme")) == "cross_tenant"
    service = Caller(principal="service:training", site="x")
    assert reason_of(lambda: domain.check_administrator(service, "acme")) == "not_key_administrator"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("disabled", "key_disabled"),
        ("revoked", "key_revoked"),
        ("destruction_scheduled", "key_destruction_scheduled"),
        ("destroyed", "key_destroyed"),
    ],
)
def test_only_enabled_keys_are_usable(state: str, reason: str) -> None:
    """Every state but enabled refuses cryptographic use, with the state as the reason."""
    assert reason_of(lambda: domain.check_usable(ring(state=state))) == reason


def test_decryption_bounds_follow_latest_and_minimum_version() -> None:
    """Versions above the latest are unknown and versions below the minimum are refused."""
    current = ring(latest_version=3, min_decryption_version=2)
    domain.check_decryptable(current, 2)
    domain.check_decryptable(current, 3)
    assert reason_of(lambda: domain.check_decryptable(current, 1)) == "below_min_decryption_version"
    assert reason_of(lambda: domain.check_decryptable(current, 4)) == "version_not_found"


def test_min_decryption_version_cannot_exceed_the_latest() -> None:
    """The minimum decryption version must name an existing version."""
    assert reason_of(lambda: domain.set_min_decryption_version(ring(), 2)) == "version_not_found"
    assert (
        domain.set_min_decryption_version(domain.rotate(ring(), NOW), 2).min_decryption_version == 2
    )


def test_lifecycle_disable_enable_revoke() -> None:
    """Disable and enable toggle; revoke is final for enable, disable and rotate."""
    disabled = domain.disable(ring())
    assert disabled.state == "disabled"
    assert domain.enable(disabled).state == "enabled"
    revoked = domain.revoke(disabled)
    assert revoked.state == "revoked"
    for action in (domain.enable, domain.disable, lambda r: domain.rotate(r, NOW)):
        assert reason_of(lambda a=action: a(revoked)) == "invalid_transition"


def test_destruction_waits_for_its_period_and_can_be_cancelled() -> None:
    """A scheduled destruction is refused before its time, applies after it, and cancelling restores the state."""
    scheduled = domain.schedule_destruction(ring(state="disabled"), NOW, 3600, 60)
    assert scheduled.state == "destruction_scheduled"
    assert scheduled.destroy_after == NOW + dt.timedelta(hours=1)
    assert reason_of(lambda: domain.destroy(scheduled, NOW)) == "waiting_period_not_elapsed"
    assert domain.cancel_destruction(scheduled).state == "disabled"
    later = NOW + dt.timedelta(hours=1)
    assert domain.destruction_due(scheduled, later)
    assert domain.destroy(scheduled, later).state == "destroyed"
    assert reason_of(lambda: domain.destroy(ring(), later)) == "invalid_transition"


def test_waiting_period_below_the_minimum_is_refused() -> None:
    """A destruction scheduled with less than the minimum waiting period is refused."""
    assert (
        reason_of(lambda: domain.schedule_destruction(ring(), NOW, 10, 86400))
        == "waiting_period_too_short"
    )


def test_rotation_is_due_after_its_period_for_enabled_keys_only() -> None:
    """Automatic rotation is due once the period has elapsed, and never for a disabled key."""
    assert not domain.rotation_due(ring(), NOW + dt.timedelta(minutes=59))
    assert domain.rotation_due(ring(), NOW + dt.timedelta(hours=1))
    assert not domain.rotation_due(ring(state="disabled"), NOW + dt.timedelta(hours=2))


def test_refusal_codes_map_to_error_reply_codes() -> None:
    """Authorization refusals are unauthorized, unknown keys not_found, lifecycle states conflict."""
    assert Refusal("site_not_allowed", "").code == "unauthorized"
    assert Refusal("key_not_found", "").code == "not_found"
    assert Refusal("key_revoked", "").code == "conflict"
    assert Refusal("invalid_ciphertext", "").code == "invalid_request"
