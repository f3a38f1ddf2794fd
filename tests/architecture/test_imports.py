"""Layering rules, checked on the source: what may import what.

- ``aifactory.contracts`` imports only msgspec, the standard library and itself, so
  integrators can depend on it alone.
- A service (``services/<name>``) never imports another service; services talk over
  NATS through the contracts.
- Libraries (``libs/*``) never import a service.
- The CLI does not import the database layer (it starts fast and only talks over NATS).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").glob("*") if (p / "pyproject.toml").exists())


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _is_package(module: str, service: str) -> bool:
    return module == f"aifactory.{service}" or module.startswith(f"aifactory.{service}.")


def _sources(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if "tests" not in p.parts)


def test_contracts_import_only_msgspec_and_stdlib() -> None:
    """Every module under contracts/src imports only msgspec, the standard library or aifactory.contracts."""
    offenders = []
    for path in _sources(ROOT / "contracts" / "src"):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or top in ("msgspec", "__future__")
                or name.startswith("aifactory.contracts")
            )
            if not allowed:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_services_never_import_each_other() -> None:
    """No service's source imports another service's package."""
    offenders = []
    for service in SERVICES:
        others = [s for s in SERVICES if s != service]
        for path in _sources(ROOT / "services" / service):
            offenders.extend(
                f"{path.relative_to(ROOT)} imports {name}"
                for name in _imports(path)
                if any(_is_package(name, other) for other in others)
            )
    assert offenders == []


def test_libraries_never_import_services() -> None:
    """No library module imports a service package (libs never depend on apps)."""
    offenders = []
    for path in _sources(ROOT / "libs"):
        offenders.extend(
            f"{path.relative_to(ROOT)} imports {name}"
            for name in _imports(path)
            if any(_is_package(name, service) for service in SERVICES)
        )
    assert offenders == []


def test_import_scan_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The scanner itself finds a planted forbidden import (so the rules above can fail)."""
    planted = tmp_path / "bad.py"
    planted.write_text("import faststream\nfrom aifactory.inventory.domain import x\n")
    assert list(_imports(planted)) == ["faststream", "aifactory.inventory.domain"]


def test_cli_starts_without_the_database_layer() -> None:
    """Importing the ``aifactory`` command loads neither SQLAlchemy nor sqlmodel (it only talks over NATS)."""
    probe = (
        "import sys, aifactory.cli.main; "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
