"""Run the node agent: ``python -m aifactory.agent --node ID [--interval 1s] [--simulate PROFILE]``.

Reads the GPUs through NVML when no profile is given and NVML works; otherwise (no
library, no driver, no GPU) it says why and simulates a healthy node. Publishes
until SIGINT/SIGTERM; exit code 2 on bad options or unreachable NATS.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from aifactory.agent.agent import NodeAgent
from aifactory.agent.config import AgentSettings, AgentSettingsError, parse_args
from aifactory.agent.nvml import open_nvml
from aifactory.agent.readers import AcceleratorReader
from aifactory.agent.simulator import Profile, SimulatedNode
from aifactory.bus.connection import Bus, BusUnavailable
from aifactory.observability.logging import configure_logging

log = structlog.get_logger("aifactory.agent")


def choose_reader(settings: AgentSettings) -> AcceleratorReader:
    """NVML when no profile is asked for and it works; the simulator otherwise."""
    if settings.simulate is None:
        reader, why = open_nvml()
        if reader is not None:
            return reader
        log.warning("nvml_unavailable_simulating", reason=why)
    profile = settings.simulate or Profile("healthy")
    return SimulatedNode(
        profile, gpus=settings.gpus, fault_after=settings.fault_after, seed=settings.seed
    )


async def run(settings: AgentSettings) -> int:
    """Connect, publish until a signal, close; 2 when NATS is unreachable."""
    bus = Bus(settings.bus, service="agent")
    try:
        await bus.connect()
    except BusUnavailable as error:
        log.error("nats_unreachable", error=str(error))  # noqa: TRY400 - the message says it all
        return 2
    reader = choose_reader(settings)
    namespace = settings.bus.namespace

    async def publish(subject: str, body: bytes) -> None:
        await bus.nc.publish(namespace.subject(subject), body)

    agent = NodeAgent(
        node_id=settings.node_id,
        reader=reader,
        publish=publish,
        interval_s=settings.interval_s,
        telemetry_every=settings.telemetry_every,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "agent_started",
        node_id=settings.node_id,
        source=reader.source,
        accelerator=reader.accelerator,
        profile=settings.simulate.name if settings.simulate else None,
        interval_s=settings.interval_s,
        session=agent.session,
    )
    try:
        await agent.run(stop)
    finally:
        reader.close()
        await bus.close()
        log.info("agent_stopped", node_id=settings.node_id, sent=agent.sent)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse options, run the agent."""
    configure_logging("agent")
    try:
        settings = parse_args(sys.argv[1:] if argv is None else argv)
    except AgentSettingsError as error:
        print(f"aifactory agent: {error}", file=sys.stderr)  # noqa: T201 - a usage error
        return 2
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
