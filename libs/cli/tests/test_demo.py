"""``aifactory demo`` end to end, as a user runs it: a subprocess with a non-TTY stdout."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aifactory.cli.demo.tenants import TENANTS
from aifactory.cli.services import installed_services

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)  # five services, eight agents and 20 s of load on a busy 2-core machine
def test_a_short_demo_runs_to_its_end_with_summary_faults_and_invoices(
    tmp_path: Path, cli_env: dict[str, str], cli: Callable[..., Any]
) -> None:
    """demo --duration 20s --nodes 8 exits 0 after progress lines, the faults, the summary and every tenant's invoice."""
    var = tmp_path / "demo"
    result = cli(
        ["demo", "--duration", "20s", "--nodes", "8", "--var", str(var)], cli_env, timeout=300
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "Traceback" not in output + result.stderr
    assert re.search(r"^demo: \d of 8 nodes report healthy; load starts$", output, re.MULTILINE)
    assert re.search(r"^\[ *\d+\.\ds/20s\] jobs submitted=\d+ placed=\d+", output, re.MULTILINE)
    assert "fault: Xid 79 on fra1-b200-001" in output
    assert "fault: iad1-h200-002 goes silent" in output
    assert "keys: revoked us-health/datasets" in output
    assert re.search(r"health: fra1-b200-001 \w+ -> failed \(.*xid_79", output)
    assert "== demo summary ==" in output
    placed = re.search(r"jobs placed: (\d+) first placements", output)
    assert placed is not None
    assert int(placed.group(1)) > 0
    assert re.search(r"throughput: \d+ jobs/min submitted, \d+ jobs/min placed", output)
    assert re.search(
        r"submit -> placed latency: p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms", output
    )
    if "billing" in installed_services():
        for tenant in TENANTS:
            assert f"invoice inv-{tenant.tenant}-" in output
        assert output.count("total ") >= len(TENANTS)
    else:
        assert "invoices: unavailable" in output
    assert "nats: stopped embedded nats-server" in output
    assert (var / "logs" / "scheduling.log").is_file()
    assert (var / "logs" / "agents.log").is_file()


def test_a_duration_that_is_not_one_is_a_usage_error(
    tmp_path: Path, cli_env: dict[str, str], cli: Callable[..., Any]
) -> None:
    """--duration soon (or under 10s) exits 2 with a message, starting nothing."""
    for duration in ("soon", "5s"):
        result = cli(["demo", "--duration", duration, "--var", str(tmp_path / "demo")], cli_env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "--duration" in result.stderr
        assert not (tmp_path / "demo").exists()
