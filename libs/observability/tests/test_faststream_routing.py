"""FastStream's access logger, set up lazily by a real broker, still lands in our JSON lines."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from aifactory.observability.logging import configure_logging

pytestmark = pytest.mark.integration


async def test_broker_access_log_is_routed_through_configured_handler(
    nats_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broker started after configure_logging logs Received/Processed as JSON with service and subject."""
    faststream_nats = pytest.importorskip("faststream.nats")
    configure_logging("probe", json=True)
    subject = f"obs.{uuid.uuid4().hex}"
    handled = asyncio.Event()
    broker = faststream_nats.NatsBroker(nats_url)

    @broker.subscriber(subject)  # type: ignore[untyped-decorator]
    async def on_message(body: str) -> None:
        handled.set()

    async with broker:
        await broker.start()
        await broker.publish("hello", subject)
        await asyncio.wait_for(handled.wait(), timeout=10)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    access = [line for line in lines if line.get("logger") == "faststream.access.nats"]
    assert {"Received", "Processed"} <= {line["event"] for line in access}
    assert all(line["service"] == "probe" for line in access)
    assert any(line.get("subject") == subject for line in access)
