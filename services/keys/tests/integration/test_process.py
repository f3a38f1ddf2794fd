"""The keys service as its own process: ``python -m aifactory.keys``."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import ServiceUnavailable, request
from aifactory.bus.settings import BusSettings
from aifactory.contracts.keys.v1 import (
    Caller,
    CreateKey,
    DataKey,
    DataKeyPlaintext,
    DecryptDataKey,
    GenerateDataKey,
    KeyDescription,
    KeyList,
    ListKeys,
)
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration

ACME = Caller(principal="tenant:acme", site="fra-1")


def service_env(bus_settings: BusSettings, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a keys process in the test namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIFACTORY_", "NATS_URL"))}
    env.update(
        AIFACTORY_NATS_URL=bus_settings.nats_url,
        AIFACTORY_SUBJECT_PREFIX=bus_settings.namespace.prefix,
        AIFACTORY_KEYS_DATABASE_URL=database_url,
        AIFACTORY_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by a test; killed if still running at its end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def test_service_runs_as_a_separate_process_and_stops_cleanly(
    bus_settings: BusSettings,
    database_url: str,
    nats_client: Client,
    acme_policy: object,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """``python -m aifactory.keys`` serves data keys over NATS, logs no key material, and exits 0 on SIGTERM."""
    master = base64.b64encode(os.urandom(32)).decode()
    log_path = tmp_path / "keys.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "aifactory.keys"],
            env=service_env(bus_settings, database_url, AIFACTORY_KEYS_MASTER_KEY=master),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        ns = bus_settings.namespace

        async def listing() -> KeyList | None:
            try:
                return await request(
                    nats_client,
                    ListKeys(tenant="acme", caller=ACME),
                    KeyList,
                    namespace=ns,
                    timeout=1,
                )
            except ServiceUnavailable:
                return None

        await wait_until(
            listing, lambda found: found is not None, timeout=30, what="the keys process"
        )
        create = CreateKey(tenant="acme", key_id="datasets", policy=acme_policy, caller=ACME)  # type: ignore[arg-type]
        await request(nats_client, create, KeyDescription, namespace=ns)
        data_key = await request(
            nats_client,
            GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME),
            DataKey,
            namespace=ns,
        )
        unwrapped = await request(
            nats_client,
            DecryptDataKey(tenant="acme", key_id="datasets", caller=ACME, wrapped=data_key.wrapped),
            DataKeyPlaintext,
            namespace=ns,
        )
        assert unwrapped.plaintext == data_key.plaintext
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    output = log_path.read_bytes()
    assert code == 0, output.decode()
    assert b"keys_serving" in output
    assert base64.b64encode(data_key.plaintext) not in output
    assert data_key.plaintext.hex().encode() not in output


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({}, "aifactory keys init"),
        ({"AIFACTORY_KEYS_MASTER_KEY": "bm90IGEga2V5"}, "must be 32 bytes"),
    ],
)
def test_refuses_to_start_without_a_usable_master_key(
    tmp_path: Path, extra: dict[str, str], fragment: str
) -> None:
    """Without a master key (or with a malformed one) the service prints one clear line and exits 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFACTORY_")}
    env.update(AIFACTORY_VAR_DIR=str(tmp_path), **extra)
    result = subprocess.run(
        [sys.executable, "-m", "aifactory.keys"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aifactory keys: cannot start:")
    assert fragment in lines[0]
