"""The demo's simulated node agents, as child processes of the demo.

Healthy nodes share one agent process (``python -m aifactory.agent --nodes a,b,...``);
the two nodes that will fail get one process each with their fault armed:
``--simulate xid:79 --fault-on-signal`` and ``--simulate silent --fault-on-signal``;
the demo sends SIGUSR1 when the fault is due. The CLI never imports the agent: it
runs its module, like ``aifactory up`` runs the services.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aifactory.cli.demo.factory import DemoFactory
from aifactory.cli.demo.faults import XID_CODE, FaultPlan
from aifactory.cli.service_logs import log_file_of
from aifactory.cli.supervisor import ChildCommand

AGENT_MODULE = "aifactory.agent"
INTERVAL_S = 1.0


def _command(name: str, args: list[str], nats_url: str) -> ChildCommand:
    env = dict(os.environ)
    env["AIFACTORY_NATS_URL"] = nats_url
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("AIFACTORY_LOG_FORMAT", "json")
    argv = (sys.executable, "-m", AGENT_MODULE, *args, "--interval", f"{INTERVAL_S:g}s")
    return ChildCommand(name=name, argv=argv, env=env)


def fault_agent_name(node_id: str) -> str:
    """The child name of the agent process of a node that will fail."""
    return f"agent-{node_id}"


def agent_commands(factory: DemoFactory, plan: FaultPlan, *, nats_url: str) -> list[ChildCommand]:
    """The agent processes for ``factory``: the healthy nodes, then one per faulty node.

    The faulty nodes' faults start on SIGUSR1 (``--fault-on-signal``), which the
    demo sends when the fault is due.
    """
    faulty = {plan.xid_node, plan.silent_node}
    healthy = [node.node_id for node in factory.nodes if node.node_id not in faulty]
    return [
        _command("agents", ["--nodes", ",".join(healthy), "--simulate", "healthy"], nats_url),
        _command(
            fault_agent_name(plan.xid_node),
            ["--node", plan.xid_node, "--simulate", f"xid:{XID_CODE}", "--fault-on-signal"],
            nats_url,
        ),
        _command(
            fault_agent_name(plan.silent_node),
            ["--node", plan.silent_node, "--simulate", "silent", "--fault-on-signal"],
            nats_url,
        ),
    ]


def agent_log_file(var_dir: Path, command: ChildCommand) -> Path:
    """Where an agent process's output goes."""
    return log_file_of(var_dir, command.name)
