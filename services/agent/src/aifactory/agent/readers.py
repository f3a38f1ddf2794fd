"""What the node agent reads accelerators through: the ``AcceleratorReader`` protocol.

The agent does not care where readings come from. NVML on a host with NVIDIA GPUs
(``aifactory.agent.nvml``), or the simulator (``aifactory.agent.simulator``) when
there is no NVML or a fault profile is asked for: both give, each interval, one
``GpuSample`` per visible accelerator and the Xid events that happened since the
last call, in the contracts' own types.
"""

from __future__ import annotations

from typing import Protocol

from aifactory.contracts.health.v1 import AcceleratorKind, GpuSample, TelemetrySource, XidEvent


class AcceleratorReader(Protocol):
    """A source of accelerator readings for one node."""

    source: TelemetrySource
    accelerator: AcceleratorKind

    def sample(self) -> list[GpuSample]:
        """Current readings, one per visible accelerator (a lost one is left out)."""
        ...

    def poll_xids(self) -> list[XidEvent]:
        """Xid events that happened since the last call (none where unsupported)."""
        ...

    def muted(self) -> bool:
        """True when the node should send nothing this interval (a simulated silence)."""
        ...

    def close(self) -> None:
        """Release the library or device handles."""
        ...
