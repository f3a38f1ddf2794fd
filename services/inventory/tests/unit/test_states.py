"""The admin state machine of a node."""

from __future__ import annotations

import pytest

from aifactory.contracts.inventory.v1 import NodeState
from aifactory.inventory.errors import InvalidTransition
from aifactory.inventory.states import (
    OPERATOR_TRANSITIONS,
    STATES,
    health_fails,
    health_returns,
    operator_transition,
)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("provisioning", "available"),
        ("available", "cordoned"),
        ("cordoned", "available"),
        ("cordoned", "draining"),
        ("draining", "maintenance"),
        ("maintenance", "available"),
        ("failed", "available"),
        ("available", "retired"),
        ("failed", "retired"),
    ],
)
def test_the_documented_cycle_is_allowed(current: NodeState, target: NodeState) -> None:
    """Each step of provisioning -> available <-> cordoned -> draining -> maintenance -> available is allowed."""
    assert operator_transition("n1", current, target) is True


@pytest.mark.parametrize(
    ("current", "target", "fragment"),
    [
        ("available", "maintenance", "drain it first"),
        ("maintenance", "draining", "runs nothing to drain"),
        ("retired", "available", "terminal"),
        ("available", "failed", "only a health verdict"),
        ("provisioning", "cordoned", "make it available first"),
    ],
)
def test_invalid_transition_is_refused_with_the_reason(
    current: NodeState, target: NodeState, fragment: str
) -> None:
    """A transition the machine forbids raises InvalidTransition (a conflict) naming why."""
    with pytest.raises(InvalidTransition, match=fragment) as caught:
        operator_transition("n1", current, target)
    assert caught.value.code == "conflict"
    assert caught.value.details == {"node_id": "n1", "from": current, "to": target}


@pytest.mark.parametrize("state", STATES)
def test_asking_for_the_current_state_changes_nothing(state: NodeState) -> None:
    """Requesting the state a node is already in is a no-op, not an error."""
    assert operator_transition("n1", state, state) is False


def test_retired_is_terminal() -> None:
    """No operator transition leaves retired, and every other state may retire."""
    assert OPERATOR_TRANSITIONS["retired"] == frozenset()
    assert all(
        "retired" in targets for s, targets in OPERATOR_TRANSITIONS.items() if s != "retired"
    )


def test_fatal_verdict_fails_every_state_but_failed_and_retired() -> None:
    """health_fails is true for every live state and false for failed and retired."""
    assert {s for s in STATES if health_fails(s)} == set(STATES) - {"failed", "retired"}


def test_healthy_verdict_returns_only_with_policy_and_only_health_failures() -> None:
    """Auto-return needs the policy on and a failure caused by a verdict, never an operator's decision."""
    assert health_returns("failed", failed_by_health=True, auto_return=True) is True
    assert health_returns("failed", failed_by_health=True, auto_return=False) is False
    assert health_returns("failed", failed_by_health=False, auto_return=True) is False
    assert health_returns("cordoned", failed_by_health=True, auto_return=True) is False
