"""Simulated accelerators with configurable faults, for hosts without NVML.

``SimulatedNode`` implements the same ``AcceleratorReader`` protocol as the NVML
reader and gives the same samples. A profile says what goes wrong, and when
(``fault_after`` intervals after start):

| profile | what happens |
|---|---|
| ``healthy`` | nothing; temperatures 40-65 °C, plausible power and load |
| ``xid:<code>`` | the last GPU reports Xid ``<code>`` once (see below) |
| ``ecc-dbe`` | the last GPU's volatile double-bit ECC counter rises, with no Xid |
| ``overheat`` | the last GPU heats by 4 °C per interval up to 99 °C |
| ``silent`` | the agent stops sending anything (heartbeats included) |
| ``flapping`` | the last GPU alternates between 60 °C and 90 °C every 3 intervals |
| ``trainium`` | a healthy Trainium node (16 devices; no Xid, NVLink or row remapping) |

With ``xid:79`` the GPU then falls off the bus (it is left out of samples); with 48
its double-bit ECC counter rises; 63 sets a pending row remap, 64 a remap failure, 74
raises its NVLink error counters. Readings are deterministic for a given seed.

``trigger_fault()`` starts the fault at the next interval whatever ``fault_after``
says (the agent calls it on SIGUSR1, so a drill or the demo can time a fault
exactly; ``fault_after=NEVER`` leaves the timing to the signal alone).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aifactory.contracts.health.v1 import AcceleratorKind, GpuSample, TelemetrySource, XidEvent

FaultKind = Literal["healthy", "xid", "ecc-dbe", "overheat", "silent", "flapping", "trainium"]
PROFILES = ("healthy", "xid:<code>", "ecc-dbe", "overheat", "silent", "flapping", "trainium")
FLAP_PERIOD = 3
NEVER = 2**62
"""A ``fault_after`` that never comes: only ``trigger_fault()`` starts the fault."""
_SIMPLE: tuple[FaultKind, ...] = (
    "healthy",
    "ecc-dbe",
    "overheat",
    "silent",
    "flapping",
    "trainium",
)


class UnknownProfile(ValueError):
    """A ``--simulate`` value that names no profile."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A simulator profile: the fault kind and, for ``xid``, its code."""

    kind: FaultKind
    xid: int | None = None

    @property
    def name(self) -> str:
        """The profile as written on the command line."""
        return f"xid:{self.xid}" if self.kind == "xid" else self.kind


def parse_profile(text: str) -> Profile:
    """A profile from its name (``healthy``, ``xid:79``, ``overheat``, ...); see ``PROFILES``."""
    value = text.strip().lower()
    for kind in _SIMPLE:
        if value == kind:
            return Profile(kind)
    if value.startswith("xid:"):
        code = value[4:]
        if code.isdigit() and 0 < int(code) <= 65535:
            return Profile("xid", int(code))
    raise UnknownProfile(
        f"unknown simulator profile {text!r}; choose one of: {', '.join(PROFILES)}"
    )


class SimulatedNode:
    """A node's accelerators, simulated according to a ``Profile``."""

    source: TelemetrySource = "simulated"

    def __init__(
        self,
        profile: Profile,
        *,
        gpus: int | None = None,
        fault_after: int = 3,
        seed: int = 0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.profile = profile
        self.accelerator: AcceleratorKind = "trainium" if profile.kind == "trainium" else "nvidia"
        self.gpus = gpus if gpus is not None else (16 if self.accelerator == "trainium" else 8)
        if not 1 <= self.gpus <= 64:
            raise ValueError(f"a node has 1 to 64 accelerators, not {self.gpus}")
        self.fault_after = max(0, fault_after)
        self._rng = random.Random(seed)  # noqa: S311 - simulated readings, not secrets
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._tick = 0
        self._faulty = self.gpus - 1
        self._xid_sent = False
        self._lost: set[int] = set()
        self._heat = 0
        self._sbe = [0] * self.gpus

    @property
    def _faulting(self) -> bool:
        return self._tick > self.fault_after

    def trigger_fault(self) -> None:
        """Start the profile's fault at the next interval (no effect once it has begun)."""
        self.fault_after = min(self.fault_after, self._tick)

    def muted(self) -> bool:
        """The ``silent`` profile sends nothing once its fault begins."""
        return self.profile.kind == "silent" and self._tick >= self.fault_after

    def _temperature(self, index: int) -> int:
        base = 45 + (index * 3) % 15 + self._rng.randint(0, 5)
        if index != self._faulty or not self._faulting:
            return base
        if self.profile.kind == "overheat":
            self._heat = min(99 - base, self._heat + 4)
            return base + self._heat
        if self.profile.kind == "flapping":
            phase = (self._tick - self.fault_after - 1) // FLAP_PERIOD
            return 90 if phase % 2 == 0 else 60
        return base

    def _sample_one(self, index: int) -> GpuSample:
        load = self._rng.randint(85, 100)
        fault_here = index == self._faulty and self._faulting
        xid = self.profile.xid if self.profile.kind == "xid" else None
        if self._rng.random() < 0.01:
            self._sbe[index] += 1
        dbe = 0
        if fault_here and (self.profile.kind == "ecc-dbe" or xid == 48):
            dbe = 2
        trainium = self.accelerator == "trainium"
        return GpuSample(
            index=index,
            temperature_c=self._temperature(index),
            power_w=round((180.0 if trainium else 300.0) + load * 3.5, 1),
            utilization_pct=load,
            memory_used_mib=(65_536 if trainium else 81_920) + self._rng.randint(0, 2048),
            ecc_sbe_volatile=self._sbe[index],
            ecc_dbe_volatile=dbe,
            retired_pages_dbe=None if trainium else 0,
            remap_pending=None if trainium else (fault_here and xid == 63),
            remap_failure=None if trainium else (fault_here and xid == 64),
            nvlink_errors=None if trainium else (5_000 if fault_here and xid == 74 else 0),
        )

    def sample(self) -> list[GpuSample]:
        """Advance one interval and read every (not lost) accelerator."""
        self._tick += 1
        samples = [self._sample_one(i) for i in range(self.gpus) if i not in self._lost]
        if self.profile.kind == "xid" and self.profile.xid == 79 and self._xid_sent:
            self._lost.add(self._faulty)
        return samples

    def poll_xids(self) -> list[XidEvent]:
        """The profile's Xid, once, when its fault begins."""
        if self.profile.kind != "xid" or self._xid_sent or not self._faulting:
            return []
        self._xid_sent = True
        assert self.profile.xid is not None
        return [XidEvent(gpu=self._faulty, xid=self.profile.xid, at=self._clock())]

    def close(self) -> None:
        """Nothing to release."""
