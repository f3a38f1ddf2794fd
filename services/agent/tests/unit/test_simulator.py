"""The simulator's profiles: each gives the fault it names, at the time it says."""

from __future__ import annotations

import pytest

from aifactory.agent.simulator import (
    NEVER,
    Profile,
    SimulatedNode,
    UnknownProfile,
    parse_profile,
)


def _run(node: SimulatedNode, ticks: int) -> list[list[object]]:
    return [node.sample() for _ in range(ticks)]


@pytest.mark.parametrize(
    ("text", "profile"),
    [
        ("healthy", Profile("healthy")),
        ("XID:79", Profile("xid", 79)),
        ("ecc-dbe", Profile("ecc-dbe")),
        ("trainium", Profile("trainium")),
    ],
)
def test_profiles_parse(text: str, profile: Profile) -> None:
    """Profile names parse case-insensitively, Xid profiles with their code."""
    assert parse_profile(text) == profile


@pytest.mark.parametrize("text", ["", "xid:", "xid:abc", "xid:0", "xid:70000", "meltdown"])
def test_unknown_profiles_are_refused_with_the_list(text: str) -> None:
    """An unknown or malformed profile is refused with the accepted names."""
    with pytest.raises(UnknownProfile, match="choose one of"):
        parse_profile(text)


def test_healthy_node_reports_all_gpus_within_normal_ranges() -> None:
    """A healthy node reports its 8 GPUs below 70 °C with no ECC double-bit errors, ever."""
    node = SimulatedNode(Profile("healthy"), fault_after=0)
    for samples in _run(node, 50):
        assert len(samples) == 8
        for s in samples:
            assert s.temperature_c is not None
            assert s.temperature_c < 70
            assert s.ecc_dbe_volatile == 0  # type: ignore[attr-defined]
    assert node.poll_xids() == []
    assert not node.muted()


def test_xid_79_is_reported_once_then_the_gpu_falls_off_the_bus() -> None:
    """With xid:79 the last GPU reports Xid 79 once after the fault delay and then disappears."""
    node = SimulatedNode(Profile("xid", 79), gpus=4, fault_after=2)
    seen = []
    counts = []
    for _ in range(6):
        counts.append(len(node.sample()))
        seen.extend(node.poll_xids())
    assert [(e.gpu, e.xid) for e in seen] == [(3, 79)]
    assert counts[:3] == [4, 4, 4]
    assert counts[-1] == 3


def test_ecc_dbe_raises_the_double_bit_counter_without_an_xid() -> None:
    """ecc-dbe raises the last GPU's volatile double-bit count after the delay, with no Xid."""
    node = SimulatedNode(Profile("ecc-dbe"), gpus=2, fault_after=1)
    first = node.sample()
    second = node.sample()
    assert first[1].ecc_dbe_volatile == 0
    assert second[1].ecc_dbe_volatile == 2
    assert node.poll_xids() == []


def test_overheat_climbs_to_99_and_flapping_alternates() -> None:
    """overheat climbs to 99 °C and stays; flapping alternates between 90 and 60 °C every 3 intervals."""
    hot = SimulatedNode(Profile("overheat"), gpus=1, fault_after=0)
    temperatures = [s[0].temperature_c for s in _run(hot, 20)]
    assert temperatures[-1] == 99
    assert temperatures == sorted(temperatures[:1]) + temperatures[1:]
    flap = SimulatedNode(Profile("flapping"), gpus=1, fault_after=0)
    assert [s[0].temperature_c for s in _run(flap, 12)] == [90] * 3 + [60] * 3 + [90] * 3 + [60] * 3


def test_silent_profile_mutes_after_the_delay() -> None:
    """silent reports normally, then is muted from the fault delay on."""
    node = SimulatedNode(Profile("silent"), fault_after=2)
    muted = []
    for _ in range(4):
        node.sample()
        muted.append(node.muted())
    assert muted == [False, True, True, True]


def test_trainium_node_has_16_devices_without_nvidia_only_fields() -> None:
    """The trainium profile reports 16 devices with no row remap, retired pages or NVLink counters."""
    node = SimulatedNode(Profile("trainium"))
    samples = node.sample()
    assert node.accelerator == "trainium"
    assert len(samples) == 16
    assert all(s.nvlink_errors is None and s.remap_pending is None for s in samples)
    assert all(s.retired_pages_dbe is None for s in samples)


def test_gpu_count_is_bounded() -> None:
    """A simulated node has 1 to 64 accelerators."""
    with pytest.raises(ValueError, match="1 to 64"):
        SimulatedNode(Profile("healthy"), gpus=0)


def test_a_triggered_fault_starts_at_the_next_interval_even_when_never_due() -> None:
    """With fault_after=NEVER nothing happens until trigger_fault(); then Xid 79 comes next interval."""
    node = SimulatedNode(Profile("xid", 79), gpus=2, fault_after=NEVER)
    quiet = []
    for _ in range(5):
        node.sample()
        quiet.extend(node.poll_xids())
    node.trigger_fault()
    node.sample()
    assert quiet == []
    assert [(event.gpu, event.xid) for event in node.poll_xids()] == [(1, 79)]


def test_a_triggered_silence_mutes_at_once() -> None:
    """trigger_fault() on a silent node mutes it from the next interval on."""
    node = SimulatedNode(Profile("silent"), fault_after=NEVER)
    node.sample()
    before = node.muted()
    node.trigger_fault()
    node.sample()
    assert (before, node.muted()) == (False, True)
