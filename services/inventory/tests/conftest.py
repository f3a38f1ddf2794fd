"""Fixtures shared by the inventory tests: a small factory description and an editor for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

SMALL_FACTORY = """\
version: 1
sites:
  - id: fra1
    name: Frankfurt 1
    region: eu-central
    jurisdiction: EU/DE
  - id: iad1
    name: Ashburn 1
    region: us-east
    jurisdiction: US/VA
racks:
  - id: fra1-r01
    site: fra1
    kind: GB200-NVL72
    nvlink_domain_size: 72
  - id: fra1-r02
    site: fra1
    kind: HGX-B200
    nvlink_domain_size: 8
  - id: iad1-r01
    site: iad1
    kind: Trn3-UltraServer
    nvlink_domain_size: 64
nodes:
  - id: gpu-a[001-004]
    site: fra1
    rack: fra1-r01
    model: GB200
    accelerator_count: 4
    accelerator_memory_gib: 186
    cpu_cores: 144
    ram_gib: 960
    interconnect: InfiniBand XDR
    labels: {pool: training}
  - id: gpu-b[01-02]
    site: fra1
    rack: fra1-r02
    model: B200
    accelerator_count: 8
    accelerator_memory_gib: 180
    cpu_cores: 112
    ram_gib: 2048
  - id: trn-c001
    site: iad1
    rack: iad1-r01
    model: Trainium3
    accelerator_count: 16
    accelerator_memory_gib: 144
    cpu_cores: 192
    ram_gib: 2048
    accelerators:
      - {index: 0, uuid: trn-0, serial: S0}
      - {index: 1, uuid: trn-1, serial: S1}
      - {index: 2, uuid: trn-2, serial: S2}
      - {index: 3, uuid: trn-3, serial: S3}
      - {index: 4, uuid: trn-4, serial: S4}
      - {index: 5, uuid: trn-5, serial: S5}
      - {index: 6, uuid: trn-6, serial: S6}
      - {index: 7, uuid: trn-7, serial: S7}
      - {index: 8, uuid: trn-8, serial: S8}
      - {index: 9, uuid: trn-9, serial: S9}
      - {index: 10, uuid: trn-10, serial: S10}
      - {index: 11, uuid: trn-11, serial: S11}
      - {index: 12, uuid: trn-12, serial: S12}
      - {index: 13, uuid: trn-13, serial: S13}
      - {index: 14, uuid: trn-14, serial: S14}
      - {index: 15, uuid: trn-15, serial: S15}
dedications:
  - rack: fra1-r02
    tenant: acme
"""
"""2 sites, 3 racks, 7 nodes (4 GB200, 2 B200 dedicated to acme via their rack, 1 Trainium3)."""

SMALL_FACTORY_EVENTS = 2 + 3 + 7
"""Events the first import of SMALL_FACTORY emits: one per site, rack and node."""


def edited(description: str, old: str, new: str) -> str:
    """``description`` with one exact text replaced (fails loudly if absent)."""
    assert description.count(old) == 1, f"{old!r} must occur exactly once"
    return description.replace(old, new)


@pytest.fixture
def small_factory() -> str:
    """The SMALL_FACTORY description."""
    return SMALL_FACTORY


@pytest.fixture
def edit() -> Callable[[str, str, str], str]:
    """``edit(description, old, new)`` replaces one exact occurrence."""
    return edited
