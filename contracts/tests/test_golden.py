"""Golden payloads: JSON once published still decodes with the current Structs.

``golden/<domain>/v<N>/<name>.json`` holds a payload as it was first published for
that major version. New optional fields must not break it, and a change that does
is a breaking change: add ``v<N+1>`` instead. Add a golden file with each new
message; never edit one that exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.contracts.catalog import load_all
from aifactory.contracts.example.v1 import WidgetRegistered

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_FILES = sorted(GOLDEN.rglob("*.json"))

WIDGET_REGISTERED_V1 = b"""
{"widget_id": "w-7", "tenant": "acme", "size": 12}
"""


def test_example_v1_payload_literal_decodes_with_the_current_struct() -> None:
    """A v1 WidgetRegistered body without the optional ``label`` decodes, defaulting it."""
    spec = load_all().spec_for(WidgetRegistered)
    decoded = spec.decode(WIDGET_REGISTERED_V1)
    assert decoded == WidgetRegistered(widget_id="w-7", tenant="acme", size=12, label="")


@pytest.mark.parametrize("golden", GOLDEN_FILES, ids=lambda p: p.relative_to(GOLDEN).as_posix())
def test_golden_payload_decodes_with_its_registered_struct(golden: Path) -> None:
    """Each golden file decodes with the Struct registered at its domain, version and name."""
    by_path = {spec.schema_path: spec for spec in load_all()}
    spec = by_path[golden.relative_to(GOLDEN).as_posix()]
    decoded = spec.decode(golden.read_bytes())
    assert type(decoded) is spec.type


def test_there_are_golden_payloads() -> None:
    """The golden directory is found and not empty (a moved folder must not pass silently)."""
    assert len(GOLDEN_FILES) >= 3


def test_every_registered_message_has_a_golden_payload() -> None:
    """Each registered message has its golden payload file, so its first published shape stays decodable."""
    missing = [spec.schema_path for spec in load_all() if not (GOLDEN / spec.schema_path).exists()]
    assert missing == [], f"add golden payloads under contracts/tests/golden/ for: {missing}"
