"""``aifactory version`` and ``contracts``: repository discovery and the schema commands."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from aifactory.cli.repo_root import find_repo_root

Cli = Callable[..., subprocess.CompletedProcess[str]]
REPO = Path(__file__).resolve().parents[3]


def test_version_prints_cli_and_nats_server_versions(cli_env: dict[str, str], cli: Cli) -> None:
    """`aifactory version` names the CLI version and the bundled nats-server version."""
    result = cli(["version"], cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("aifactory 0.1.0")
    assert "nats-server v2." in result.stdout


def test_repo_root_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    """The nearest parent with a uv workspace pyproject (or contracts/schemas) is the root."""
    (tmp_path / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["libs/*"]\n')
    nested = tmp_path / "libs" / "cli" / "src"
    nested.mkdir(parents=True)
    (tmp_path / "libs" / "cli" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_repo_root(nested) == tmp_path.resolve()


def test_no_repo_root_outside_a_repository(tmp_path: Path) -> None:
    """A directory without markers is not a root; the search only ever goes upwards."""
    found = find_repo_root(tmp_path)
    assert found is None or not found.is_relative_to(tmp_path)


def test_this_repository_contracts_are_current(cli_env: dict[str, str], cli: Cli) -> None:
    """`contracts check` in this repository reports no problems and exits 0."""
    result = cli(["contracts", "check"], cli_env, cwd=REPO / "libs" / "cli")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contracts: no problems" in result.stdout


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    """A directory that is a repository root with a copy of this repo's checked-in schemas."""
    (tmp_path / "pyproject.toml").write_text("[tool.uv.workspace]\nmembers = []\n")
    shutil.copytree(REPO / "contracts" / "schemas", tmp_path / "contracts" / "schemas")
    return tmp_path


def test_check_fails_then_export_fixes_a_missing_document(
    scratch_repo: Path, cli_env: dict[str, str], cli: Cli
) -> None:
    """A missing generated file makes check exit 1 naming it; export writes it; check then passes."""
    result = cli(["contracts", "check", "--root", str(scratch_repo)], cli_env)
    assert result.returncode == 1
    assert "docs/asyncapi.yaml is missing" in result.stderr
    exported = cli(["contracts", "export"], cli_env, cwd=scratch_repo)
    assert exported.returncode == 0, exported.stderr
    assert "wrote docs/asyncapi.yaml" in exported.stdout
    again = cli(["contracts", "check", "--root", str(scratch_repo)], cli_env)
    assert again.returncode == 0, again.stderr


def test_export_without_changes_says_up_to_date(cli_env: dict[str, str], cli: Cli) -> None:
    """Exporting in this (current) repository changes nothing and says so."""
    result = cli(["contracts", "export", "--root", str(REPO)], cli_env)
    assert result.returncode == 0, result.stderr
    assert "contracts: up to date" in result.stdout


def test_contracts_outside_a_repository_is_a_usage_error(
    tmp_path: Path, cli_env: dict[str, str], cli: Cli
) -> None:
    """`contracts check --root` on a missing directory exits 2 with a clear message."""
    result = cli(["contracts", "check", "--root", str(tmp_path / "absent")], cli_env)
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
