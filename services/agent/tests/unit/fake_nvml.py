"""A fake ``pynvml`` module: the subset of NVML the reader calls, with scriptable faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIBRARY_NOT_FOUND = 12


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    """One fake device's readings and faults."""

    temperature: int = 55
    power_mw: int = 350_000
    utilization: int = 90
    memory_used: int = 80 * 1024 * 1024 * 1024
    sbe: int = 0
    dbe: int = 0
    retired: int = 0
    remapped: tuple[int, int, int, int] = (0, 0, 0, 0)
    links: int = 2
    link_errors: int = 0
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False


class FakeNvml:
    """Builds a module-like namespace backed by ``FakeGpu`` objects."""

    def __init__(self, gpus: list[FakeGpu], *, init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.pending_xids: list[tuple[int, int]] = []
        self.shutdown_called = False
        self.calls: dict[str, int] = {}

    def _check(self, index: int, name: str) -> FakeGpu:
        self.calls[name] = self.calls.get(name, 0) + 1
        gpu = self.gpus[index]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if name in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def module(self, *, without: tuple[str, ...] = ()) -> Any:
        """The fake module; ``without`` drops functions (an older library)."""
        fake = self

        def init() -> None:
            if fake.init_error is not None:
                raise NVMLError(fake.init_error)

        def event_wait(_events: object, _timeout: int) -> Any:
            if not fake.pending_xids:
                raise NVMLError(NVML_ERROR_TIMEOUT)
            index, xid = fake.pending_xids.pop(0)
            return SimpleNamespace(device=index, eventData=xid)

        def nvlink_state(index: int, link: int) -> int:
            gpu = fake._check(index, "nvlink")
            if link >= gpu.links:
                raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
            return 1

        def shutdown() -> None:
            fake.shutdown_called = True

        functions: dict[str, Any] = {
            "NVMLError": NVMLError,
            "NVML_ERROR_NOT_SUPPORTED": NVML_ERROR_NOT_SUPPORTED,
            "NVML_ERROR_INVALID_ARGUMENT": NVML_ERROR_INVALID_ARGUMENT,
            "NVML_ERROR_TIMEOUT": NVML_ERROR_TIMEOUT,
            "NVML_ERROR_GPU_IS_LOST": NVML_ERROR_GPU_IS_LOST,
            "NVML_TEMPERATURE_GPU": 0,
            "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
            "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
            "NVML_VOLATILE_ECC": 0,
            "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR": 1,
            "NVML_NVLINK_MAX_LINKS": 4,
            "NVML_NVLINK_ERROR_DL_REPLAY": 0,
            "NVML_NVLINK_ERROR_DL_RECOVERY": 1,
            "NVML_NVLINK_ERROR_DL_CRC_FLIT": 2,
            "NVML_NVLINK_ERROR_DL_CRC_DATA": 3,
            "nvmlEventTypeXidCriticalError": 8,
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": lambda: len(fake.gpus),
            "nvmlDeviceGetHandleByIndex": lambda i: i,
            "nvmlDeviceGetIndex": lambda h: h,
            "nvmlDeviceGetTemperature": lambda h, _s: fake._check(h, "temperature").temperature,
            "nvmlDeviceGetPowerUsage": lambda h: fake._check(h, "power").power_mw,
            "nvmlDeviceGetUtilizationRates": lambda h: SimpleNamespace(
                gpu=fake._check(h, "utilization").utilization
            ),
            "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(
                used=fake._check(h, "memory").memory_used
            ),
            "nvmlDeviceGetTotalEccErrors": lambda h, kind, _c: (
                fake._check(h, "ecc").dbe if kind == 1 else fake._check(h, "ecc").sbe
            ),
            "nvmlDeviceGetRetiredPages": lambda h, _c: [0] * fake._check(h, "retired").retired,
            "nvmlDeviceGetRemappedRows": lambda h: fake._check(h, "remapped").remapped,
            "nvmlDeviceGetNvLinkState": nvlink_state,
            "nvmlDeviceGetNvLinkErrorCounter": lambda h, _l, _c: (
                fake._check(h, "nvlink").link_errors
            ),
            "nvmlEventSetCreate": object,
            "nvmlDeviceRegisterEvents": lambda _h, _t, _s: None,
            "nvmlEventSetWait_v2": event_wait,
            "nvmlEventSetFree": lambda _s: None,
        }
        for name in without:
            functions.pop(name)
        return SimpleNamespace(**functions)
