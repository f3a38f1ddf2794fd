"""The node agent's settings: its command line, plus the bus settings from the environment.

``python -m aifactory.agent --node ID [--interval 1s] [--simulate PROFILE]
[--gpus N] [--fault-after N] [--telemetry-every N] [--seed N]``, or ``--nodes
ID,ID,...`` instead of ``--node`` to simulate several nodes from one process (each
with the same profile, its own seed; a simulator, never NVML). ``--fault-on-signal``
leaves the simulated fault to SIGUSR1 instead of ``--fault-after``. NATS comes from
``AIFACTORY_NATS_URL`` / ``AIFACTORY_SUBJECT_PREFIX`` as for every service. A bad
value raises ``AgentSettingsError`` with a message that says what is accepted.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aifactory.agent.simulator import PROFILES, Profile, UnknownProfile, parse_profile
from aifactory.bus.settings import BusSettings, SettingsError

_NODE_ID = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
MIN_INTERVAL_S = 0.01
MAX_INTERVAL_S = 3600.0


class AgentSettingsError(ValueError):
    """A command-line option or environment value is invalid."""


def parse_interval(text: str) -> float:
    """``1s``, ``200ms``, ``0.5`` (seconds), ``1m`` -> seconds, within 10 ms .. 1 h."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise AgentSettingsError(f"--interval takes a duration like 1s or 200ms, got {text!r}")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise AgentSettingsError(f"--interval must be between 10ms and 1h, got {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything one agent run is configured with."""

    node_id: str
    """The (first) node this agent reports for."""
    bus: BusSettings
    interval_s: float = 1.0
    simulate: Profile | None = None
    gpus: int | None = None
    fault_after: int = 3
    telemetry_every: int = 1
    seed: int = 0
    node_ids: tuple[str, ...] = ()
    """Every node this agent reports for (``--nodes``); empty: just ``node_id``."""
    fault_on_signal: bool = False
    """The simulated fault starts on SIGUSR1 only (``--fault-after`` is ignored)."""

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes this agent reports for, in order."""
        return self.node_ids or (self.node_id,)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aifactory agent",
        description="Node agent: publish this node's heartbeats and GPU telemetry to the factory.",
    )
    nodes = parser.add_mutually_exclusive_group(required=True)
    nodes.add_argument("--node", help="this node's id, as inventory knows it")
    nodes.add_argument(
        "--nodes",
        metavar="ID,ID,...",
        help="simulate several nodes from this one process (comma-separated ids)",
    )
    parser.add_argument("--interval", default="1s", help="reporting interval (default 1s)")
    parser.add_argument(
        "--simulate",
        default=None,
        metavar="PROFILE",
        help=f"simulate accelerators instead of reading NVML: {', '.join(PROFILES)}",
    )
    parser.add_argument("--gpus", type=int, default=None, help="simulated accelerators")
    parser.add_argument(
        "--fault-after", type=int, default=3, help="intervals before a simulated fault"
    )
    parser.add_argument(
        "--telemetry-every",
        type=int,
        default=1,
        help="send telemetry every N intervals, heartbeats in between (default 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator random seed")
    parser.add_argument(
        "--fault-on-signal",
        action="store_true",
        help="start the simulated fault on SIGUSR1 only (not after --fault-after intervals)",
    )
    return parser


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> AgentSettings:
    """Settings from ``argv`` and the environment; ``AgentSettingsError`` when invalid.

    ``--help`` and argparse's own usage errors exit through ``SystemExit`` as usual.
    """
    args = _parser().parse_args(list(argv))
    node_ids = tuple(n.strip() for n in args.nodes.split(",")) if args.nodes else (args.node,)
    for node_id in node_ids:
        if not _NODE_ID.match(node_id):
            raise AgentSettingsError(
                "--node/--nodes take node ids (lower case letters, digits, '.', '-'), "
                f"got {node_id!r}"
            )
    if len(set(node_ids)) != len(node_ids):
        raise AgentSettingsError(f"--nodes names a node twice: {args.nodes!r}")
    try:
        profile = parse_profile(args.simulate) if args.simulate is not None else None
        bus = BusSettings.from_env(env)
    except (UnknownProfile, SettingsError) as error:
        raise AgentSettingsError(str(error)) from None
    if args.gpus is not None and not 1 <= args.gpus <= 64:
        raise AgentSettingsError(f"--gpus must be 1 to 64, got {args.gpus}")
    if not 1 <= args.telemetry_every <= 3600:
        raise AgentSettingsError(f"--telemetry-every must be 1 to 3600, got {args.telemetry_every}")
    if args.fault_after < 0:
        raise AgentSettingsError(f"--fault-after must be >= 0, got {args.fault_after}")
    simulate = profile
    if args.nodes and simulate is None:
        simulate = Profile("healthy")  # NVML reads this host only: several nodes are simulated
    return AgentSettings(
        node_id=node_ids[0],
        node_ids=node_ids if args.nodes else (),
        bus=bus,
        interval_s=parse_interval(args.interval),
        simulate=simulate,
        gpus=args.gpus,
        fault_after=args.fault_after,
        telemetry_every=args.telemetry_every,
        seed=args.seed,
        fault_on_signal=args.fault_on_signal,
    )
