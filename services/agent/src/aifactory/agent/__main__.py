"""Run the node agent: ``python -m aifactory.agent --node ID [--interval 1s] [--simulate PROFILE]``.

Reads the GPUs through NVML when no profile is given and NVML works; otherwise (no
library, no driver, no GPU) it says why and simulates a healthy node. With
``--nodes a,b,c`` one process simulates several nodes (one agent loop each, one
NATS connection). SIGUSR1 starts the simulated fault of every simulated node now
(with ``--fault-on-signal``, only SIGUSR1 does). Publishes until SIGINT/SIGTERM;
exit code 2 on bad options or unreachable NATS.
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
from aifactory.agent.simulator import NEVER, Profile, SimulatedNode
from aifactory.bus.connection import Bus, BusUnavailable
from aifactory.observability.logging import configure_logging

log = structlog.get_logger("aifactory.agent")


def choose_reader(settings: AgentSettings, index: int = 0) -> AcceleratorReader:
    """NVML when no profile is asked for and it works; the simulator otherwise.

    ``index`` is the node's place in ``--nodes``: each simulated node gets its own seed.
    """
    if settings.simulate is None:
        reader, why = open_nvml()
        if reader is not None:
            return reader
        log.warning("nvml_unavailable_simulating", reason=why)
    profile = settings.simulate or Profile("healthy")
    fault_after = NEVER if settings.fault_on_signal else settings.fault_after
    return SimulatedNode(
        profile, gpus=settings.gpus, fault_after=fault_after, seed=settings.seed + index
    )


def _trigger_faults(agents: list[NodeAgent]) -> None:
    """SIGUSR1: start every simulated node's fault now."""
    for agent in agents:
        if isinstance(agent.reader, SimulatedNode):
            agent.reader.trigger_fault()
            log.warning("agent_fault_triggered", node_id=agent.node_id)


async def run(settings: AgentSettings) -> int:
    """Connect, publish until a signal, close; 2 when NATS is unreachable."""
    bus = Bus(settings.bus, service="agent")
    try:
        await bus.connect()
    except BusUnavailable as error:
        log.error("nats_unreachable", error=str(error))  # noqa: TRY400 - the message says it all
        return 2
    namespace = settings.bus.namespace

    async def publish(subject: str, body: bytes) -> None:
        await bus.nc.publish(namespace.subject(subject), body)

    agents = [
        NodeAgent(
            node_id=node_id,
            reader=choose_reader(settings, index),
            publish=publish,
            interval_s=settings.interval_s,
            telemetry_every=settings.telemetry_every,
        )
        for index, node_id in enumerate(settings.nodes)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _trigger_faults, agents)
    for agent in agents:
        log.info(
            "agent_started",
            node_id=agent.node_id,
            source=agent.reader.source,
            accelerator=agent.reader.accelerator,
            profile=settings.simulate.name if settings.simulate else None,
            interval_s=settings.interval_s,
            session=agent.session,
        )
    try:
        await asyncio.gather(*(agent.run(stop) for agent in agents))
    finally:
        for agent in agents:
            agent.reader.close()
        await bus.close()
        for agent in agents:
            log.info("agent_stopped", node_id=agent.node_id, sent=agent.sent)
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
