"""Reading NVIDIA GPUs through NVML (nvidia-ml-py's ``pynvml`` module).

``open_nvml()`` returns an ``NvmlReader``, or ``None`` with the reason when the
library, the driver or the GPUs are not there, so the agent can fall back to the
simulator. The reader degrades field by field: a query the device does not support
(``NVML_ERROR_NOT_SUPPORTED``, a missing function in an older library, ...) is
reported as ``null`` and not asked again; a transient error gives ``null`` for that
interval only; a GPU that fell off the bus (``NVML_ERROR_GPU_IS_LOST``) is left out
of the samples, which the health service sees as a missing GPU. Xid errors come from
an NVML event set (``nvmlEventTypeXidCriticalError``), drained without blocking.

The module object is passed in (``pynvml`` by default) so tests drive the reader
with a fake NVML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import structlog

from aifactory.contracts.health.v1 import AcceleratorKind, GpuSample, TelemetrySource, XidEvent

log = structlog.get_logger(__name__)
T = TypeVar("T")

# NVML return codes (nvml.h); read from the module when it has them.
_NOT_SUPPORTED = 3
_INVALID_ARGUMENT = 2
_NO_PERMISSION = 4
_TIMEOUT = 10
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_MIB = 1024 * 1024
_MAX_XIDS_PER_POLL = 256


def _call(nvml: Any, function: str, *args: Any) -> Any:
    """``nvml.<function>(*args)``, looked up at call time (AttributeError if absent)."""
    return getattr(nvml, function)(*args)


class GpuLost(Exception):
    """NVML says the GPU is lost (fell off the bus)."""


def _code(nvml: Any, name: str, default: int) -> int:
    value = getattr(nvml, name, default)
    return value if isinstance(value, int) else default


class NvmlReader:
    """Reads every GPU of the host through an initialised NVML module."""

    source: TelemetrySource = "nvml"
    accelerator: AcceleratorKind = "nvidia"

    def __init__(self, nvml: Any, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._nvml = nvml
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._unsupported_codes = {
            _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED),
            _code(nvml, "NVML_ERROR_INVALID_ARGUMENT", _INVALID_ARGUMENT),
            _code(nvml, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION),
            _code(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", _FUNCTION_NOT_FOUND),
        }
        self._lost_code = _code(nvml, "NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST)
        self._timeout_code = _code(nvml, "NVML_ERROR_TIMEOUT", _TIMEOUT)
        self._unsupported: set[tuple[int, str]] = set()
        self._lost: set[int] = set()
        count = nvml.nvmlDeviceGetCount()
        self._handles: list[Any] = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._links = [self._active_links(i, h) for i, h in enumerate(self._handles)]
        self._events = self._xid_event_set()

    # ------------------------------------------------------------ helpers
    def _is_nvml_error(self, error: BaseException) -> bool:
        base = getattr(self._nvml, "NVMLError", None)
        return isinstance(base, type) and isinstance(error, base)

    def _field(self, index: int, name: str, query: Callable[[], T]) -> T | None:
        """``query()``, or ``None`` when unsupported (remembered) or failing this time."""
        if (index, name) in self._unsupported:
            return None
        try:
            return query()
        except AttributeError:  # an older pynvml without this function
            self._unsupported.add((index, name))
            return None
        except Exception as error:
            if not self._is_nvml_error(error):
                raise
            value = getattr(error, "value", None)
            if value == self._lost_code:
                raise GpuLost(index) from error
            if value in self._unsupported_codes:
                self._unsupported.add((index, name))
                log.info("nvml_field_unsupported", gpu=index, field=name, error=str(error))
            return None

    def _active_links(self, index: int, handle: Any) -> list[int]:
        nvml = self._nvml
        max_links = getattr(nvml, "NVML_NVLINK_MAX_LINKS", 0)
        links: list[int] = []
        for link in range(max_links if isinstance(max_links, int) else 0):
            try:
                state = self._field(
                    index,
                    f"nvlink_state_{link}",
                    partial(_call, nvml, "nvmlDeviceGetNvLinkState", handle, link),
                )
            except GpuLost:
                return []
            if state is None:
                continue
            if state:
                links.append(link)
        return links

    def _xid_event_set(self) -> Any:
        nvml = self._nvml
        xid_type = getattr(nvml, "nvmlEventTypeXidCriticalError", None)
        if xid_type is None:
            return None
        try:
            events = nvml.nvmlEventSetCreate()
            for handle in self._handles:
                nvml.nvmlDeviceRegisterEvents(handle, xid_type, events)
        except AttributeError:
            return None
        except Exception as error:
            if not self._is_nvml_error(error):
                raise
            log.warning("nvml_xid_events_unavailable", error=str(error))
            return None
        return events

    # ------------------------------------------------------------ reading
    def _sample_one(self, index: int, handle: Any) -> GpuSample:
        nvml = self._nvml
        temperature = self._field(
            index,
            "temperature",
            lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        )
        power_mw = self._field(index, "power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        utilization = self._field(
            index, "utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        )
        memory_used = self._field(
            index, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used
        )
        sbe = self._field(
            index,
            "ecc_sbe",
            lambda: nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, nvml.NVML_VOLATILE_ECC
            ),
        )
        dbe = self._field(
            index,
            "ecc_dbe",
            lambda: nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
            ),
        )
        retired = self._field(
            index,
            "retired_pages",
            lambda: len(
                nvml.nvmlDeviceGetRetiredPages(
                    handle, nvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
                )
            ),
        )
        remapped = self._field(
            index, "remapped_rows", lambda: nvml.nvmlDeviceGetRemappedRows(handle)
        )
        return GpuSample(
            index=index,
            temperature_c=int(temperature) if temperature is not None else None,
            power_w=round(power_mw / 1000.0, 1) if power_mw is not None else None,
            utilization_pct=int(utilization) if utilization is not None else None,
            memory_used_mib=int(memory_used) // _MIB if memory_used is not None else None,
            ecc_sbe_volatile=int(sbe) if sbe is not None else None,
            ecc_dbe_volatile=int(dbe) if dbe is not None else None,
            retired_pages_dbe=retired,
            remap_pending=bool(remapped[2]) if remapped is not None else None,
            remap_failure=bool(remapped[3]) if remapped is not None else None,
            nvlink_errors=self._nvlink_errors(index, handle),
        )

    def _nvlink_errors(self, index: int, handle: Any) -> int | None:
        nvml = self._nvml
        if not self._links[index]:
            return None
        counters = [
            getattr(nvml, name, None)
            for name in (
                "NVML_NVLINK_ERROR_DL_REPLAY",
                "NVML_NVLINK_ERROR_DL_RECOVERY",
                "NVML_NVLINK_ERROR_DL_CRC_FLIT",
                "NVML_NVLINK_ERROR_DL_CRC_DATA",
            )
        ]
        total: int | None = None
        for link in self._links[index]:
            for counter in counters:
                if counter is None:
                    continue
                value = self._field(
                    index,
                    f"nvlink_{link}_{counter}",
                    partial(_call, nvml, "nvmlDeviceGetNvLinkErrorCounter", handle, link, counter),
                )
                if value is not None:
                    total = (total or 0) + int(value)
        return total

    def sample(self) -> list[GpuSample]:
        """One sample per GPU; lost GPUs are left out (and stay out)."""
        samples: list[GpuSample] = []
        for index, handle in enumerate(self._handles):
            if index in self._lost:
                continue
            try:
                samples.append(self._sample_one(index, handle))
            except GpuLost:
                self._lost.add(index)
                log.error("gpu_lost", gpu=index)  # noqa: TRY400 - no traceback: a fact, not a bug
        return samples

    def poll_xids(self) -> list[XidEvent]:
        """Drain the Xid event set without blocking."""
        if self._events is None:
            return []
        nvml = self._nvml
        found: list[XidEvent] = []
        for _ in range(_MAX_XIDS_PER_POLL):
            try:
                data = nvml.nvmlEventSetWait_v2(self._events, 0)
            except Exception as error:
                if not self._is_nvml_error(error):
                    raise
                if getattr(error, "value", None) != self._timeout_code:
                    log.warning("nvml_xid_wait_failed", error=str(error))
                break
            gpu = self._device_index(data.device)
            found.append(XidEvent(gpu=gpu, xid=int(data.eventData), at=self._clock()))
        return found

    def _device_index(self, device: Any) -> int:
        """The index of the device an event names (0 if NVML cannot tell)."""
        try:
            return int(self._nvml.nvmlDeviceGetIndex(device))
        except Exception as error:
            if not self._is_nvml_error(error) and not isinstance(error, AttributeError):
                raise
            return 0

    @property
    def gpu_count(self) -> int:
        """GPUs NVML enumerated at start (lost ones included)."""
        return len(self._handles)

    def muted(self) -> bool:
        """A real node is never muted."""
        return False

    def close(self) -> None:
        """Free the event set and shut NVML down."""
        nvml = self._nvml
        try:
            if self._events is not None and hasattr(nvml, "nvmlEventSetFree"):
                nvml.nvmlEventSetFree(self._events)
            nvml.nvmlShutdown()
        except Exception as error:
            if not self._is_nvml_error(error):
                raise
            log.warning("nvml_shutdown_failed", error=str(error))


def load_pynvml() -> Any:
    """The ``pynvml`` module of nvidia-ml-py (ImportError when it is not installed)."""
    import pynvml

    return pynvml


def open_nvml(
    loader: Callable[[], Any] = load_pynvml,
) -> tuple[NvmlReader | None, str]:
    """An initialised reader, or ``(None, why)`` when NVML or its GPUs are not usable."""
    try:
        nvml = loader()
    except ImportError as error:
        return None, f"nvidia-ml-py is not installed ({error})"
    try:
        nvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML did not initialise: {error}"
    try:
        reader = NvmlReader(nvml)
    except Exception as error:  # noqa: BLE001 - any NVML failure here means: no usable GPUs
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - already failing; report the first error
            log.debug("nvml_shutdown_after_failure_failed")
        return None, f"NVML has no usable GPUs: {error}"
    if reader.gpu_count == 0:
        reader.close()
        return None, "NVML reports no GPUs"
    return reader, "nvml"
