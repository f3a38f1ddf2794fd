"""A whole Service over real NATS: commands with typed replies and errors, outbox to stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client

from aifactory.bus.rpc import (
    CommandFailed,
    CommandRejected,
    RequestContext,
    ServiceUnavailable,
    request,
)
from aifactory.bus.service import Service
from aifactory.bus.settings import BusSettings
from aifactory.contracts.cloudevents import H_TYPE, parse_headers
from aifactory.contracts.envelope import build_message
from aifactory.contracts.example.v1 import RegisterWidget, WidgetRegistered, WidgetRegistration
from aifactory.contracts.replies import ERROR_REPLY_TYPE, ErrorReply
from aifactory.store.store import Store
from aifactory.store.uow import NewEvent, UnitOfWork
from aifactory.testing.waiting import wait_until

from .conftest import WidgetRow

pytestmark = pytest.mark.integration


async def register_widget(
    command: RegisterWidget, uow: UnitOfWork, ctx: RequestContext
) -> WidgetRegistration:
    """Test command handler: register once, emit WidgetRegistered; 'explode' fails unexpectedly."""
    if command.widget_id == "explode":
        raise RuntimeError("disk on fire")
    if command.size > 500:
        raise CommandRejected("conflict", "no room for widgets that large", {"max_size": "500"})
    if await uow.session.get(WidgetRow, command.widget_id) is not None:
        return WidgetRegistration(widget_id=command.widget_id, created=False)
    uow.session.add(WidgetRow(widget_id=command.widget_id, size=command.size, applied=1))
    uow.emit(
        NewEvent(
            WidgetRegistered(widget_id=command.widget_id, tenant=command.tenant, size=command.size),
            tenant=command.tenant,
        )
    )
    return WidgetRegistration(widget_id=command.widget_id, created=True)


async def refuse_tenant_evil(ctx: RequestContext) -> None:
    """Test authorisation hook: the tenant header 'evil' may not send commands."""
    if ctx.tenant == "evil":
        raise CommandRejected("unauthorized", "tenant evil may not register widgets")


@pytest_asyncio.fixture
async def service(
    bus_settings: BusSettings, database_url: str, nats_client: Client
) -> AsyncIterator[Service]:
    """The widgets service running against the test NATS and database."""
    svc = Service(
        "widgets",
        bus_settings=bus_settings,
        store=Store(database_url),
        authorize=refuse_tenant_evil,
    )
    svc.command(RegisterWidget, register_widget)
    await svc.start()
    yield svc
    await svc.stop()


def _cmd(widget_id: str = "w1", size: int = 3) -> RegisterWidget:
    return RegisterWidget(widget_id=widget_id, tenant="acme", size=size)


async def test_command_gets_typed_reply_and_event_reaches_stream(
    service: Service, nats_client: Client
) -> None:
    """A valid command is answered with its typed reply and its event is relayed to the stream once."""
    ns = service.bus.namespace
    reply = await request(nats_client, _cmd(), WidgetRegistration, namespace=ns, tenant="acme")
    assert reply == WidgetRegistration(widget_id="w1", created=True)
    again = await request(nats_client, _cmd(), WidgetRegistration, namespace=ns, tenant="acme")
    assert again.created is False

    stream = ns.stream("FACTORY_EXAMPLE")
    info = await wait_until(
        lambda: nats_client.jetstream().stream_info(stream), lambda i: i.state.messages >= 1
    )
    assert info.state.messages == 1, "a command that changes nothing emits nothing"
    raw = await nats_client.jetstream().get_msg(stream, 1)
    assert parse_headers(raw.headers).source == "/aifactory/widgets"
    assert msgspec.json.decode(raw.data, type=WidgetRegistered).widget_id == "w1"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed"),
        (b'{"widget_id":"w1","tenant":"acme","size":3,"colour":"red"}', "unknown field"),
        (b'{"widget_id":"w1","tenant":"acme","size":-4}', ">= 1"),
        (b'{"widget_id":"w1","tenant":"acme"}', "missing required field"),
    ],
)
async def test_invalid_command_body_gets_typed_error_not_timeout(
    service: Service, nats_client: Client, body: bytes, fragment: str
) -> None:
    """A command whose body does not decode is answered with an invalid_request ErrorReply."""
    subject = service.bus.namespace.subject("factory.example.v1.cmd.register_widget")
    response = await nats_client.request(subject, body, timeout=5)
    assert response.headers is not None
    assert response.headers[H_TYPE] == ERROR_REPLY_TYPE
    error = msgspec.json.decode(response.data, type=ErrorReply)
    assert error.code == "invalid_request"
    assert fragment in error.message.lower()


async def test_wrong_ce_type_on_command_subject_is_refused(
    service: Service, nats_client: Client
) -> None:
    """A request whose ce-type is not the subject's command gets unknown_request."""
    message = build_message(_cmd(), source="/test")
    headers = {**message.headers, H_TYPE: "io.aifactory.example.widget_registered.v1"}
    subject = service.bus.namespace.subject(message.subject)
    response = await nats_client.request(subject, message.body, timeout=5, headers=headers)
    assert msgspec.json.decode(response.data, type=ErrorReply).code == "unknown_request"


async def test_handler_failure_and_rejection_are_typed_and_service_keeps_running(
    service: Service, nats_client: Client
) -> None:
    """A raising handler yields an internal ErrorReply, a refusal its own code, and the next command still works."""
    ns = service.bus.namespace
    with pytest.raises(CommandFailed) as failed:
        await request(nats_client, _cmd("explode"), WidgetRegistration, namespace=ns)
    assert failed.value.error.code == "internal"
    assert "disk on fire" not in failed.value.error.message, "internal details stay in the logs"
    with pytest.raises(CommandFailed) as rejected:
        await request(nats_client, _cmd("big", size=900), WidgetRegistration, namespace=ns)
    assert rejected.value.error.code == "conflict"
    assert rejected.value.error.details == {"max_size": "500"}
    ok = await request(nats_client, _cmd("w2"), WidgetRegistration, namespace=ns)
    assert ok.created is True


async def test_unauthorised_caller_is_refused(service: Service, nats_client: Client) -> None:
    """The authorize hook's refusal reaches the caller as an unauthorized ErrorReply and changes nothing."""
    with pytest.raises(CommandFailed) as refused:
        await request(
            nats_client,
            _cmd("w9"),
            WidgetRegistration,
            namespace=service.bus.namespace,
            tenant="evil",
        )
    assert refused.value.error.code == "unauthorized"
    async with service.store.session() as session:
        assert await session.get(WidgetRow, "w9") is None


async def test_request_without_service_is_unavailable(
    nats_client: Client, bus_settings: BusSettings
) -> None:
    """Requesting a command nobody serves raises ServiceUnavailable quickly, not a hang."""
    with pytest.raises(ServiceUnavailable):
        await request(
            nats_client, _cmd(), WidgetRegistration, namespace=bus_settings.namespace, timeout=2
        )


async def test_service_metrics_count_consumed_and_published(
    service: Service, nats_client: Client
) -> None:
    """The service's metrics expose the published counter after its relay published an event."""
    await request(nats_client, _cmd("m1"), WidgetRegistration, namespace=service.bus.namespace)
    text: Any = await wait_until(
        lambda: _render(service),
        lambda t: 'aifactory_messages_published_total{service="widgets",subject="outbox"} 1.0' in t,
    )
    assert "aifactory_handler_seconds" in text


async def _render(service: Service) -> str:
    return service.metrics.render()


async def test_trace_context_is_bound_in_handler_and_continues_on_emitted_event(
    service: Service, nats_client: Client
) -> None:
    """A command's traceparent is bound into the handler's log context and carried by the event it emits."""
    import structlog

    seen: dict[str, object] = {}
    original = register_widget

    async def recording(
        command: RegisterWidget, uow: UnitOfWork, ctx: RequestContext
    ) -> WidgetRegistration:
        seen.update(structlog.contextvars.get_contextvars())
        return await original(command, uow, ctx)

    # Re-register the command on a fresh service so the recording handler is used.
    svc = Service("widgets", bus_settings=service.bus_settings, store=service.store)
    svc.command(RegisterWidget, recording)
    await svc.start()
    try:
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        message = build_message(
            _cmd("traced"),
            source="/test",
            tenant="acme",
            traceparent=f"00-{trace_id}-00f067aa0ba902b7-01",
        )
        subject = svc.bus.namespace.subject(message.subject)
        # Both services serve the queue group; ask until the recording one answered.
        await wait_until(
            lambda: nats_client.request(subject, message.body, timeout=5, headers=message.headers),
            lambda _reply: "trace_id" in seen,
            what="the recording handler to run",
        )
    finally:
        await svc.stop()
    assert seen["trace_id"] == trace_id
    assert seen["tenant"] == "acme"
    stream = service.bus.namespace.stream("FACTORY_EXAMPLE")
    await wait_until(
        lambda: nats_client.jetstream().stream_info(stream), lambda i: i.state.messages >= 1
    )
    raw = await nats_client.jetstream().get_msg(stream, 1)
    assert parse_headers(raw.headers).trace_id == trace_id
