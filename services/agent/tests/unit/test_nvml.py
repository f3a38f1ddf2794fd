"""The NVML reader against a fake pynvml module: readings, degradation, Xid events."""

from __future__ import annotations

import datetime as dt
import sys
import types

import pytest

from aifactory.agent.nvml import NvmlReader, open_nvml

from .fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeGpu, FakeNvml

AT = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)


def _reader(fake: FakeNvml, **kwargs: object) -> NvmlReader:
    module = fake.module(**kwargs)  # type: ignore[arg-type]
    module.nvmlInit()
    return NvmlReader(module, clock=lambda: AT)


def test_reads_every_field_of_every_gpu_in_contract_units() -> None:
    """Temperature, power (W), load, memory (MiB), ECC, retired pages, remaps and NVLink errors are read per GPU."""
    fake = FakeNvml(
        [
            FakeGpu(),
            FakeGpu(temperature=91, dbe=2, sbe=7, retired=3, remapped=(1, 1, 1, 0), link_errors=4),
        ]
    )
    samples = _reader(fake).sample()
    assert [s.index for s in samples] == [0, 1]
    first, second = samples
    assert first.power_w == 350.0
    assert first.memory_used_mib == 80 * 1024
    assert second.temperature_c == 91
    assert (second.ecc_sbe_volatile, second.ecc_dbe_volatile) == (7, 2)
    assert second.retired_pages_dbe == 3
    assert second.remap_pending is True
    assert second.remap_failure is False
    assert second.nvlink_errors == 2 * 4 * 4  # two links, four counters each


def test_unsupported_field_is_null_and_not_asked_again() -> None:
    """A query NVML says is not supported gives null and is skipped on later samples."""
    fake = FakeNvml([FakeGpu(unsupported={"power", "remapped"})])
    reader = _reader(fake)
    first = reader.sample()[0]
    calls = fake.calls["power"]
    second = reader.sample()[0]
    assert first.power_w is None
    assert first.remap_pending is None
    assert second.temperature_c == 55
    assert fake.calls["power"] == calls


def test_missing_functions_in_an_older_library_degrade_to_null() -> None:
    """A pynvml without the remapped-rows and NVLink functions still gives samples, with nulls."""
    fake = FakeNvml([FakeGpu()])
    reader = _reader(
        fake,
        without=("nvmlDeviceGetRemappedRows", "nvmlDeviceGetNvLinkState", "nvmlEventSetCreate"),
    )
    sample = reader.sample()[0]
    assert sample.remap_failure is None
    assert sample.nvlink_errors is None
    assert reader.poll_xids() == []


def test_lost_gpu_is_left_out_of_samples_for_good() -> None:
    """A GPU that NVML reports lost disappears from the samples (the health service sees it missing)."""
    fake = FakeNvml([FakeGpu(), FakeGpu(), FakeGpu()])
    reader = _reader(fake)
    assert len(reader.sample()) == 3
    fake.gpus[1].lost = True
    assert [s.index for s in reader.sample()] == [0, 2]
    fake.gpus[1].lost = False
    assert [s.index for s in reader.sample()] == [0, 2]


def test_xid_events_are_drained_without_blocking() -> None:
    """Pending Xid events come back with their GPU index, then nothing until new ones arrive."""
    fake = FakeNvml([FakeGpu(), FakeGpu()])
    reader = _reader(fake)
    fake.pending_xids = [(1, 79), (0, 48)]
    events = reader.poll_xids()
    assert [(e.gpu, e.xid, e.at) for e in events] == [(1, 79, AT), (0, 48, AT)]
    assert reader.poll_xids() == []


def test_open_nvml_reports_why_when_the_library_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the NVML shared library, open_nvml returns no reader and the reason."""
    fake = FakeNvml([FakeGpu()], init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    reader, why = open_nvml()
    assert reader is None
    assert "did not initialise" in why


def test_open_nvml_reports_why_when_pynvml_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When pynvml cannot be imported, open_nvml returns no reader and says so."""

    def missing() -> types.ModuleType:
        raise ImportError("No module named 'pynvml'")

    reader, why = open_nvml(missing)
    assert reader is None
    assert "not installed" in why


def test_open_nvml_with_no_gpus_is_unusable_and_shuts_nvml_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host where NVML initialises but lists no GPU gives no reader, and NVML is shut down."""
    fake = FakeNvml([])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    reader, why = open_nvml()
    assert reader is None
    assert "no GPUs" in why
    assert fake.shutdown_called


def test_open_nvml_uses_the_monkeypatched_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a working (fake) pynvml the agent gets an NVML reader over all its GPUs."""
    fake = FakeNvml([FakeGpu(), FakeGpu()])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    reader, why = open_nvml()
    assert reader is not None
    assert why == "nvml"
    assert reader.gpu_count == 2
    reader.close()
    assert fake.shutdown_called
