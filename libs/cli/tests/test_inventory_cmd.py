"""``aifactory inventory``, ``nodes`` and ``node`` against a real inventory service."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from aifactory.bus.service import Service
from aifactory.bus.settings import BusSettings
from aifactory.inventory.app import build_service
from aifactory.inventory.config import InventorySettings

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "factory.yaml"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest_asyncio.fixture
async def inventory_service(
    bus_settings: BusSettings, tmp_path: Path, nats_client: object
) -> AsyncIterator[Service]:
    """An inventory service (SQLite) in this test's namespace."""
    service = build_service(
        InventorySettings(bus=bus_settings, database_url=f"sqlite:///{tmp_path / 'inv.db'}")
    )
    await service.start()
    yield service
    await service.stop()


def _env(namespaced_env: dict[str, str], nats_url: str) -> dict[str, str]:
    return {**namespaced_env, "AIFACTORY_NATS_URL": nats_url}


async def test_import_list_cordon_export_round_trip(
    inventory_service: Service,
    cli: Cli,
    namespaced_env: dict[str, str],
    nats_url: str,
    tmp_path: Path,
) -> None:
    """The example imports (76 nodes), re-imports as a no-op, lists, cordons with the caller as actor and exports losslessly."""
    env = _env(namespaced_env, nats_url)
    first = await _in_thread(cli, ["inventory", "import", str(EXAMPLE)], env)
    assert first.returncode == 0, first.stderr
    assert "nodes: create 76, update 0, unchanged 0" in first.stdout
    again = await _in_thread(cli, ["inventory", "import", str(EXAMPLE)], env)
    assert "events emitted: 0" in again.stdout
    listed = await _in_thread(
        cli, ["nodes", "--model", "GB200", "--tenant", "bund-research", "--json"], env
    )
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 18
    assert {r["rack_id"] for r in rows} == {"fra1-nvl72-02"}
    table = await _in_thread(cli, ["nodes", "--site", "iad1"], env)
    assert "24 nodes" in table.stdout
    cordon = await _in_thread(cli, ["node", "cordon", "gpu-h001", "--reason", "NVLink errors"], env)
    assert cordon.returncode == 0, cordon.stderr
    assert "gpu-h001: available -> cordoned" in cordon.stdout
    cordoned = await _in_thread(cli, ["nodes", "--state", "cordoned", "--json"], env)
    (node,) = [json.loads(line) for line in cordoned.stdout.splitlines()]
    assert node["state_reason"] == "NVLink errors"
    assert "@" in node["state_actor"]
    out = tmp_path / "exported.yaml"
    exported = await _in_thread(cli, ["inventory", "export", "-o", str(out)], env)
    assert "76 nodes" in exported.stdout
    reimport = await _in_thread(cli, ["inventory", "import", str(out)], env)
    assert "events emitted: 0" in reimport.stdout


async def test_refusals_are_one_clear_line(
    inventory_service: Service,
    cli: Cli,
    namespaced_env: dict[str, str],
    nats_url: str,
    tmp_path: Path,
) -> None:
    """A bad file names its line, an invalid transition names the rule, an unknown state is a usage error."""
    env = _env(namespaced_env, nats_url)
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("model: H200", "model: H800"))
    refused = await _in_thread(cli, ["inventory", "import", str(bad)], env)
    assert refused.returncode == 1
    assert "line " in refused.stderr
    assert "H800" in refused.stderr
    assert "Traceback" not in refused.stderr
    await _in_thread(cli, ["inventory", "import", str(EXAMPLE)], env)
    invalid = await _in_thread(cli, ["node", "maintenance", "gpu-b001", "--reason", "fix"], env)
    assert invalid.returncode == 1
    assert "conflict" in invalid.stderr
    assert "drain it first" in invalid.stderr
    unknown = await _in_thread(cli, ["nodes", "--state", "sleeping"], env)
    assert unknown.returncode == 2
    assert "invalid filter" in unknown.stderr


def test_unreachable_nats_is_one_clear_line(cli: Cli, cli_env: dict[str, str]) -> None:
    """Without NATS the command says so in one line with exit code 2."""
    env = {**cli_env, "AIFACTORY_NATS_URL": "nats://127.0.0.1:1"}
    result = cli(["nodes"], env)
    assert result.returncode == 2
    assert "cannot reach NATS" in result.stderr


async def _in_thread(
    cli: Cli, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the event loop the in-process service runs on."""

    return await asyncio.to_thread(cli, args, env)
