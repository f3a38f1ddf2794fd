"""The Xid table: which NVIDIA Xid errors make a node failed or degraded, and what to do.

An Xid is an error report the NVIDIA driver writes to the kernel log (and NVML
delivers as an event). Most are hardware or driver faults; a few (13, 31, 43, 45)
are raised by applications and say nothing about the node. The table follows
NVIDIA's "Xid Errors" catalogue (docs.nvidia.com/deploy/xid-errors), the GPU memory
error management guide (docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt: row
remapping, contained / uncontained ECC errors) and the actions DCGM health watches
and NVIDIA NVSentinel recommend; docs/health.md lists it with its sources.

``fatal`` Xids are held for the whole agent session (until the GPU is reset or the
node rebooted, which restarts the agent); the others count for ``xid_window_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.contracts.health.v1 import RecommendedAction, Verdict


@dataclass(frozen=True, slots=True)
class XidRule:
    """What one Xid means for the node."""

    xid: int
    title: str
    verdict: Verdict
    action: RecommendedAction
    fatal: bool
    """Held until the agent session ends (GPU reset / reboot), not just for a window."""


XID_TABLE: dict[int, XidRule] = {
    rule.xid: rule
    for rule in (
        XidRule(48, "double-bit ECC error (DBE)", "failed", "reset", fatal=True),
        XidRule(
            61, "internal micro-controller breakpoint/warning", "degraded", "reset", fatal=False
        ),
        XidRule(62, "internal micro-controller halt", "failed", "reset", fatal=True),
        XidRule(
            63, "ECC page retirement or row remapping recorded", "degraded", "reset", fatal=False
        ),
        XidRule(
            64, "ECC page retirement or row remapping failure", "failed", "replace", fatal=True
        ),
        XidRule(74, "NVLink error", "failed", "reset", fatal=True),
        XidRule(79, "GPU has fallen off the bus", "failed", "reset", fatal=True),
        XidRule(92, "high single-bit ECC error rate", "degraded", "drain", fatal=False),
        XidRule(94, "contained ECC error", "degraded", "reset", fatal=False),
        XidRule(95, "uncontained ECC error", "failed", "reset", fatal=True),
        XidRule(119, "GSP RPC timeout", "failed", "reset", fatal=True),
        XidRule(120, "GSP error", "failed", "reset", fatal=True),
        XidRule(140, "unrecovered ECC error", "failed", "reset", fatal=True),
    )
}

APPLICATION_XIDS: frozenset[int] = frozenset({13, 31, 43, 45})
"""Raised by a faulty application (graphics engine exception, MMU fault, stopped
channel, preemptive cleanup): no verdict on the node."""

UNKNOWN_XID = XidRule(0, "Xid not in the table", "degraded", "none", fatal=False)
"""Any other Xid: worth a look, not a reason to drain."""


def xid_rule(xid: int) -> XidRule | None:
    """The rule for ``xid``; ``None`` for an application Xid (it does not count)."""
    if xid in APPLICATION_XIDS:
        return None
    return XID_TABLE.get(xid) or XidRule(xid, UNKNOWN_XID.title, "degraded", "none", fatal=False)
