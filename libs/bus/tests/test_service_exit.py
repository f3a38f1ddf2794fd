"""A service's exit status: 0 after SIGINT/SIGTERM, 1 when one of its tasks ends on its own."""

from __future__ import annotations

import asyncio
import os
import signal

from aifactory.bus.service import serve_until_signal


async def _forever() -> None:
    await asyncio.Event().wait()


async def _crash() -> None:
    await asyncio.sleep(0.01)
    raise RuntimeError("consumer lost its stream")


async def test_a_task_that_dies_gives_exit_status_1() -> None:
    """A background task raising ends the wait with 1 (the failure is visible to a supervisor)."""
    healthy = asyncio.create_task(_forever())
    crashing = asyncio.create_task(_crash())
    try:
        assert await serve_until_signal([healthy, crashing], service="test") == 1
    finally:
        healthy.cancel()


async def test_a_task_that_returns_gives_exit_status_1() -> None:
    """A background task that just returns is a failure too: services' tasks run forever."""
    ended = asyncio.create_task(asyncio.sleep(0.01))
    assert await serve_until_signal([ended], service="test") == 1


async def test_sigterm_gives_exit_status_0() -> None:
    """SIGTERM ends the wait with 0 and leaves no signal handler behind."""
    healthy = asyncio.create_task(_forever())
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    try:
        assert await serve_until_signal([healthy], service="test") == 0
    finally:
        healthy.cancel()
    assert not loop.remove_signal_handler(signal.SIGTERM)
