"""Which factory services are installed, and how ``aifactory up`` runs each.

A service is a module ``aifactory.<name>`` runnable with ``python -m``: a package with
a ``__main__.py`` or a plain module. Discovery uses ``importlib.util.find_spec`` and
looks for ``__main__.py`` on disk, so no service code is imported by the CLI (the
CLI never imports a service's internals). Each child gets the NATS URL in
``AIFACTORY_NATS_URL``, the state directory in ``AIFACTORY_VAR_DIR`` and, when ``up``
gives it one, its ``/metrics`` port in ``AIFACTORY_<NAME>_METRICS_PORT`` (a port set in
the environment wins); logs are JSON lines (``up`` writes them to ``var/logs``) unless
``AIFACTORY_LOG_FORMAT`` says otherwise. The rest of the environment
(``AIFACTORY_SUBJECT_PREFIX``, log level) is inherited.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from aifactory.cli.supervisor import ChildCommand

SERVICE_NAMES: tuple[str, ...] = ("inventory", "scheduling", "health", "billing", "keys")
"""The factory's services, in start order."""


def is_runnable(module: str) -> bool:
    """Whether ``python -m module`` would run something, without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    locations = spec.submodule_search_locations
    if locations is None:
        return True
    return any((Path(location) / "__main__.py").is_file() for location in locations)


def installed_services(
    names: Iterable[str] = SERVICE_NAMES, package: str = "aifactory"
) -> list[str]:
    """The names among ``names`` whose module ``<package>.<name>`` is runnable."""
    return [name for name in names if is_runnable(f"{package}.{name}")]


def metrics_port_variable(name: str) -> str:
    """The environment variable that sets service ``name``'s ``/metrics`` port."""
    return f"AIFACTORY_{name.upper()}_METRICS_PORT"


def service_command(
    name: str,
    *,
    nats_url: str,
    var_dir: Path,
    metrics_port: int | None = None,
    base_env: Mapping[str, str] | None = None,
    package: str = "aifactory",
) -> ChildCommand:
    """The child process that runs service ``name`` against ``nats_url``."""
    env = dict(os.environ if base_env is None else base_env)
    env["AIFACTORY_NATS_URL"] = nats_url
    env["AIFACTORY_VAR_DIR"] = str(var_dir.resolve())
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("AIFACTORY_LOG_FORMAT", "json")
    if metrics_port is not None and not env.get(metrics_port_variable(name), "").strip():
        env[metrics_port_variable(name)] = str(metrics_port)
    return ChildCommand(name=name, argv=(sys.executable, "-m", f"{package}.{name}"), env=env)
