"""A consumer whose fetches keep failing gives up (the service exits 1) instead of idling forever."""

from __future__ import annotations

from typing import Any, cast

import nats.errors
import pytest

from aifactory.bus.consumer import ConsumerStalled, EventConsumer
from aifactory.bus.settings import Namespace
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.example.v1 import WidgetRegistered


class _FailingSubscription:
    def __init__(self) -> None:
        self.fetches = 0

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        self.fetches += 1
        raise nats.errors.NoRespondersError

    async def unsubscribe(self) -> None:
        return None


class _JetStream:
    def __init__(self) -> None:
        self.subscription = _FailingSubscription()

    async def pull_subscribe_bind(self, *, durable: str, stream: str) -> _FailingSubscription:
        return self.subscription


async def _noop(*_: Any) -> list[Any]:
    return []


async def test_fetches_failing_past_the_limit_raise_consumer_stalled() -> None:
    """Fetch errors are retried with backoff, then end the loop with ConsumerStalled naming the consumer."""
    js = _JetStream()
    consumer = EventConsumer(
        js=cast(Any, js),
        store=cast(Any, None),
        spec=ConsumerSpec(stream="FACTORY_EXAMPLE", durable="gone", filter_subjects=("x.>",)),
        dead_letters=cast(Any, None),
        namespace=Namespace(""),
        handlers={WidgetRegistered: _noop},
        fetch_give_up_s=0.3,
    )
    with pytest.raises(ConsumerStalled, match="gone: fetching has failed"):
        await consumer.run()
    assert js.subscription.fetches >= 3
