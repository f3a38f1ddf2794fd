"""The admin state machine of a node: which changes are allowed, and why not.

::

    provisioning -> available <-> cordoned -> draining -> maintenance -> available
    any (but retired) -> failed          on a fatal health verdict
    failed -> available | maintenance    only by an operator (or the auto-return policy)
    any (but retired) -> retired         terminal

Also allowed, as operators expect: ``available -> draining`` (drain implies cordon),
``draining -> available`` (cancel a drain), ``provisioning -> maintenance``. Asking
for the state a node is already in changes nothing and is not an error. Pure
functions, no I/O.
"""

from __future__ import annotations

from typing import get_args

from aifactory.contracts.inventory.v1 import NodeState
from aifactory.inventory.errors import InvalidTransition

STATES: tuple[NodeState, ...] = get_args(NodeState)

OPERATOR_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    "provisioning": frozenset({"available", "maintenance", "retired"}),
    "available": frozenset({"cordoned", "draining", "retired"}),
    "cordoned": frozenset({"available", "draining", "retired"}),
    "draining": frozenset({"maintenance", "available", "retired"}),
    "maintenance": frozenset({"available", "retired"}),
    "failed": frozenset({"available", "maintenance", "retired"}),
    "retired": frozenset(),
}
"""Where an operator command may move a node from each state."""

_HINTS: dict[tuple[NodeState, NodeState], str] = {
    ("available", "maintenance"): "drain it first (drain, then maintenance)",
    ("cordoned", "maintenance"): "drain it first (drain, then maintenance)",
    ("draining", "cordoned"): "it is already cordoned while draining; uncordon cancels the drain",
    ("maintenance", "cordoned"): "return it with uncordon first",
    ("maintenance", "draining"): "a node in maintenance runs nothing to drain",
    (
        "failed",
        "cordoned",
    ): "a failed node runs nothing; uncordon returns it, maintenance repairs it",
    (
        "failed",
        "draining",
    ): "a failed node runs nothing; uncordon returns it, maintenance repairs it",
    ("provisioning", "cordoned"): "make it available first (uncordon)",
    ("provisioning", "draining"): "a provisioning node runs nothing to drain",
}


def operator_transition(node_id: str, current: NodeState, target: NodeState) -> bool:
    """Whether an operator's request moves the node (False: already there).

    Raises ``InvalidTransition`` with the reason when the state machine forbids it.
    """
    if current == target:
        return False
    if current == "retired":
        raise InvalidTransition(
            f"node {node_id} is retired (terminal); register a new node instead",
            {"node_id": node_id, "from": current, "to": target},
        )
    if target == "failed":
        raise InvalidTransition(
            f"node {node_id}: only a health verdict marks a node failed; "
            "cordon or drain it instead",
            {"node_id": node_id, "from": current, "to": target},
        )
    if target not in OPERATOR_TRANSITIONS[current]:
        hint = _HINTS.get((current, target), "")
        allowed = ", ".join(sorted(OPERATOR_TRANSITIONS[current]))
        raise InvalidTransition(
            f"node {node_id} cannot go from {current} to {target}"
            + (f": {hint}" if hint else f" (from {current} it may go to: {allowed})"),
            {"node_id": node_id, "from": current, "to": target},
        )
    return True


def health_fails(current: NodeState) -> bool:
    """Whether a fatal verdict moves a node in ``current`` to failed (not retired, not failed)."""
    return current not in ("failed", "retired")


def health_returns(current: NodeState, *, failed_by_health: bool, auto_return: bool) -> bool:
    """Whether a healthy verdict returns a failed node to available.

    Only with the auto-return policy on, and only when a health verdict (not an
    operator) put it there: a manual decision is respected.
    """
    return auto_return and current == "failed" and failed_by_health
