"""``aifactory up`` until every service reports ready, and until it has stopped.

Runs ``aifactory up`` as a user does (a subprocess, an embedded nats-server on a free
port, a fresh ``--var`` in a temporary directory) ``--runs`` times on the same state
directory: the first run is a cold start (empty databases, streams created), the later
ones resume the saved state. For each run it prints:

- ``ready (up)``: what ``up`` itself reports, from its start to the last service
  answering ``service_status`` with ``ready: true`` (``services: all N ready X s after
  up started``; it includes starting nats-server and provisioning the streams);
- ``ready (wall)``: from spawning the process to the ``ready`` line (adds the CLI's
  own interpreter start and imports);
- each service's ``ready after`` (from its process start);
- ``stop``: from SIGINT to the process exit (services stopped, nats-server stopped).

    uv run python bench/up_ready.py [--runs 3]
"""

# Report lines are printed whole for readability.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aifactory.bus.embedded import free_port

READY_LINE = "ready — Ctrl-C to stop"
ALL_READY = re.compile(r"services: all (\d+) ready ([\d.]+)s after up started")
ROW = re.compile(r"^(\w+)\s+(\d+)\s+([\d.]+)s\s+(\S+)\s+(\S+)$")


def one_run(var: Path, url: str, timeout_s: float) -> dict[str, object]:
    """Start up, wait for its ready line, stop it; the figures of this run."""
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "AIFACTORY_NATS_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    spawned = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "aifactory.cli.main", "up", "--nats-url", url, "--var", str(var)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    ready_wall = None
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if READY_LINE in line:
            ready_wall = time.perf_counter() - spawned
            break
        if time.monotonic() > deadline:
            break
    stop_from = time.perf_counter()
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    stop_s = time.perf_counter() - stop_from
    lines.extend(rest.splitlines())
    if ready_wall is None:
        raise SystemExit("up did not become ready:\n" + "\n".join(lines))
    reported = next(m for line in lines if (m := ALL_READY.search(line)))
    services = {
        m.group(1): float(m.group(3))
        for line in lines
        if (m := ROW.match(line.strip())) and m.group(1) != "service"
    }
    return {
        "services": int(reported.group(1)),
        "ready_up": float(reported.group(2)),
        "ready_wall": ready_wall,
        "per_service": services,
        "stop": stop_s,
        "code": process.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aifactory-up-") as tmp:
        var = Path(tmp) / "var"
        url = f"nats://127.0.0.1:{free_port()}"
        print(
            f"aifactory up, {args.runs} runs on one --var (first cold, then resumed); load {os.getloadavg()[0]:.2f}"
        )
        print(
            "| run | state | services | ready (up) | ready (wall) | slowest service | stop | exit |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for run in range(1, args.runs + 1):
            figures = one_run(var, url, args.timeout)
            per_service = figures["per_service"]
            assert isinstance(per_service, dict)
            slowest = (
                max(per_service.items(), key=lambda item: item[1]) if per_service else ("-", 0.0)
            )
            print(
                f"| {run} | {'cold' if run == 1 else 'resumed'} | {figures['services']} "
                f"| {figures['ready_up']:.2f} s | {figures['ready_wall']:.2f} s "
                f"| {slowest[0]} {slowest[1]:.2f} s | {figures['stop']:.2f} s | {figures['code']} |"
            )
            print(
                "  per service ready after: "
                + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in per_service.items())
            )


if __name__ == "__main__":
    main()
