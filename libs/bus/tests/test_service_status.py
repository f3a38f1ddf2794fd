"""Readiness over NATS: a running Service answers ``service_status`` about itself."""

from __future__ import annotations

import os

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import ServiceUnavailable
from aifactory.bus.service import Service
from aifactory.bus.settings import BusSettings
from aifactory.bus.status import service_status
from aifactory.contracts.example.v1 import RegisterWidget
from aifactory.store.store import Store

from .test_service_rpc import register_widget

pytestmark = pytest.mark.integration


async def test_a_started_service_reports_ready_with_its_pid_and_commands(
    bus_settings: BusSettings, database_url: str, nats_client: Client
) -> None:
    """After start, service_status answers ready with this pid, the command subjects and the start instant."""
    svc = Service("widgets", bus_settings=bus_settings, store=Store(database_url))
    svc.command(RegisterWidget, register_widget)
    await svc.start()
    try:
        status = await service_status(nats_client, "widgets", namespace=bus_settings.namespace)
    finally:
        await svc.stop()
    assert status.service == "widgets"
    assert status.ready is True
    assert status.pid == os.getpid()
    assert status.ready_at is not None
    assert status.ready_at >= status.started_at
    assert status.metrics_url == ""
    assert [s.endswith("factory.example.v1.cmd.register_widget") for s in status.commands] == [True]


async def test_ready_on_start_false_waits_for_mark_ready(
    bus_settings: BusSettings, database_url: str, nats_client: Client
) -> None:
    """With ready_on_start=False the service answers ready: false until its owner calls mark_ready()."""
    svc = Service(
        "widgets", bus_settings=bus_settings, store=Store(database_url), ready_on_start=False
    )
    await svc.start()
    try:
        before = await service_status(nats_client, "widgets", namespace=bus_settings.namespace)
        svc.mark_ready()
        after = await service_status(nats_client, "widgets", namespace=bus_settings.namespace)
    finally:
        await svc.stop()
    assert (before.ready, before.ready_at) == (False, None)
    assert after.ready is True
    assert after.instance == before.instance


async def test_a_stopped_or_unknown_service_is_unavailable(
    bus_settings: BusSettings, database_url: str, nats_client: Client
) -> None:
    """Once stopped (or never started) nothing answers for the service: ServiceUnavailable."""
    svc = Service("widgets", bus_settings=bus_settings, store=Store(database_url))
    await svc.start()
    await svc.stop()
    with pytest.raises(ServiceUnavailable):
        await service_status(nats_client, "widgets", namespace=bus_settings.namespace)
    with pytest.raises(ServiceUnavailable):
        await service_status(nats_client, "nobody", namespace=bus_settings.namespace)
