"""The agent loop: what it publishes each interval, and its command line."""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec
import pytest

from aifactory.agent.agent import HEARTBEAT_SUBJECT, TELEMETRY_SUBJECT, NodeAgent
from aifactory.agent.config import AgentSettingsError, parse_args, parse_interval
from aifactory.agent.simulator import Profile, SimulatedNode
from aifactory.contracts.health.v1 import NodeHeartbeat, NodeTelemetry

AT = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)


class Sent:
    """Collects what the agent publishes."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def __call__(self, subject: str, body: bytes) -> None:
        self.messages.append((subject, body))


def _agent(profile: Profile, sent: Sent, **kwargs: object) -> NodeAgent:
    return NodeAgent(
        node_id="gpu-a001",
        reader=SimulatedNode(profile, gpus=2, fault_after=1, clock=lambda: AT),
        publish=sent,
        interval_s=0.5,
        clock=lambda: AT,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_telemetry_every_interval_repeats_the_sessions_xids() -> None:
    """Each tick publishes a decodable NodeTelemetry; an Xid, once seen, is repeated in every later message."""
    sent = Sent()
    agent = _agent(Profile("xid", 48), sent)
    for _ in range(4):
        await agent.tick()
    decoded = [msgspec.json.decode(body, type=NodeTelemetry) for _, body in sent.messages]
    assert {subject for subject, _ in sent.messages} == {TELEMETRY_SUBJECT}
    assert [t.seq for t in decoded] == [1, 2, 3, 4]
    assert [len(t.xids) for t in decoded] == [0, 1, 1, 1]
    assert decoded[-1].interval_ms == 500
    assert {t.session for t in decoded} == {agent.session}


async def test_heartbeats_fill_the_intervals_between_telemetry() -> None:
    """With telemetry every 3 intervals the others carry a NodeHeartbeat with the visible GPU count."""
    sent = Sent()
    agent = _agent(Profile("healthy"), sent, telemetry_every=3)
    for _ in range(6):
        await agent.tick()
    subjects = [subject for subject, _ in sent.messages]
    assert subjects == [HEARTBEAT_SUBJECT, HEARTBEAT_SUBJECT, TELEMETRY_SUBJECT] * 2
    heartbeat = msgspec.json.decode(sent.messages[0][1], type=NodeHeartbeat)
    assert heartbeat.accelerators == 2


async def test_silent_profile_stops_publishing() -> None:
    """A silent node publishes until its fault begins, then nothing at all."""
    sent = Sent()
    agent = NodeAgent(
        node_id="gpu-a001",
        reader=SimulatedNode(Profile("silent"), gpus=1, fault_after=3),
        publish=sent,
        interval_s=0.5,
    )
    for _ in range(6):
        await agent.tick()
    assert [msgspec.json.decode(b, type=NodeTelemetry).seq for _, b in sent.messages] == [1, 2]
    assert agent.seq == 6


async def test_run_stops_when_asked() -> None:
    """run() ticks until the stop event is set, then returns."""
    stop = asyncio.Event()
    sent: list[str] = []

    async def publish(subject: str, _body: bytes) -> None:
        sent.append(subject)
        if len(sent) == 3:
            stop.set()

    agent = NodeAgent(
        node_id="n1",
        reader=SimulatedNode(Profile("healthy"), gpus=1),
        publish=publish,
        interval_s=0.01,
    )
    task = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(task, 5)
    assert agent.sent == 3


@pytest.mark.parametrize(
    ("text", "seconds"), [("1s", 1.0), ("200ms", 0.2), ("0.5", 0.5), ("2m", 120.0)]
)
def test_intervals_parse(text: str, seconds: float) -> None:
    """Intervals accept ms, s, m and bare seconds."""
    assert parse_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "argv",
    [
        ["--node", "Bad Node"],
        ["--node", "n1", "--interval", "5ms"],
        ["--node", "n1", "--interval", "soon"],
        ["--node", "n1", "--simulate", "lava"],
        ["--node", "n1", "--gpus", "65"],
        ["--node", "n1", "--telemetry-every", "0"],
    ],
)
def test_bad_options_are_refused_with_a_reason(argv: list[str]) -> None:
    """Malformed node ids, intervals, profiles and counts raise AgentSettingsError."""
    with pytest.raises(AgentSettingsError):
        parse_args(argv, env={})


def test_options_and_environment_make_settings() -> None:
    """The command line and AIFACTORY_* environment give the agent's settings."""
    settings = parse_args(
        ["--node", "gpu-a001", "--interval", "200ms", "--simulate", "xid:79", "--gpus", "4"],
        env={"AIFACTORY_NATS_URL": "nats://example:4222", "AIFACTORY_SUBJECT_PREFIX": "t1"},
    )
    assert settings.interval_s == pytest.approx(0.2)
    assert settings.simulate == Profile("xid", 79)
    assert settings.gpus == 4
    assert settings.bus.nats_url == "nats://example:4222"
    assert settings.bus.namespace.prefix == "t1"


def test_nodes_option_lists_several_simulated_nodes() -> None:
    """--nodes a,b,c makes one agent report for each node, simulated (healthy by default)."""
    settings = parse_args(["--nodes", "gpu-a001,gpu-a002, gpu-a003"], env={})
    assert settings.nodes == ("gpu-a001", "gpu-a002", "gpu-a003")
    assert settings.node_id == "gpu-a001"
    assert settings.simulate == Profile("healthy")


def test_a_single_node_keeps_its_own_interface() -> None:
    """--node ID still means one node, read through NVML when no profile is given."""
    settings = parse_args(["--node", "gpu-a001"], env={})
    assert settings.nodes == ("gpu-a001",)
    assert settings.simulate is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--nodes", "gpu-a001,Bad Node"],
        ["--nodes", "gpu-a001,gpu-a001"],
        ["--nodes", "gpu-a001,,gpu-a002"],
    ],
)
def test_bad_node_lists_are_refused(argv: list[str]) -> None:
    """A malformed, empty or repeated id in --nodes raises AgentSettingsError."""
    with pytest.raises(AgentSettingsError):
        parse_args(argv, env={})


def test_node_and_nodes_together_are_a_usage_error() -> None:
    """--node and --nodes exclude each other (argparse exits with a usage error)."""
    with pytest.raises(SystemExit):
        parse_args(["--node", "gpu-a001", "--nodes", "gpu-a002"], env={})


def test_fault_on_signal_is_an_option() -> None:
    """--fault-on-signal leaves the simulated fault to SIGUSR1 (off by default)."""
    armed = parse_args(["--node", "gpu-a001", "--simulate", "silent", "--fault-on-signal"], env={})
    assert armed.fault_on_signal is True
    assert parse_args(["--node", "gpu-a001"], env={}).fault_on_signal is False
