"""``aifactory keys``: the local master key file and the errors that need no service."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path


def test_keys_init_writes_a_0600_master_key_once(
    cli: Callable[..., subprocess.CompletedProcess[str]], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """init writes 32 random bytes as base64 with mode 0600 under AIFACTORY_VAR_DIR, and never overwrites it."""
    env = {**cli_env, "AIFACTORY_VAR_DIR": str(tmp_path)}
    env.pop("AIFACTORY_KEYS_MASTER_KEY_FILE", None)
    first = cli(["keys", "init"], env)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "keys" / "master.key"
    assert path.stat().st_mode & 0o777 == 0o600
    original = path.read_text()
    assert len(base64.b64decode(original.strip(), validate=True)) == 32
    second = cli(["keys", "init"], env)
    assert second.returncode == 1
    assert "never overwritten" in second.stderr
    assert path.read_text() == original


def test_keys_init_honours_an_explicit_path(
    cli: Callable[..., subprocess.CompletedProcess[str]], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """--path puts the master key exactly there."""
    target = tmp_path / "custody" / "root.key"
    result = cli(["keys", "init", "--path", str(target)], cli_env)
    assert result.returncode == 0, result.stderr
    assert target.exists()


def test_keys_commands_report_unreachable_nats_in_one_line(
    cli: Callable[..., subprocess.CompletedProcess[str]], cli_env: dict[str, str]
) -> None:
    """A keys command with no NATS answering exits 2 with one line suggesting `aifactory up`."""
    result = cli(["keys", "list", "acme", "--nats-url", "nats://127.0.0.1:1"], cli_env)
    assert result.returncode == 2
    assert "cannot reach NATS" in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_bad_arguments_are_usage_errors(
    cli: Callable[..., subprocess.CompletedProcess[str]], cli_env: dict[str, str]
) -> None:
    """An invalid tenant id, principal or duration is refused before any NATS call, with exit 2."""
    for args, fragment in (
        (
            ["keys", "rotate", "ACME!", "datasets", "--nats-url", "nats://127.0.0.1:1"],
            "invalid argument",
        ),
        (
            ["keys", "list", "acme", "--as", "root", "--nats-url", "nats://127.0.0.1:1"],
            "--as/--site",
        ),
        (
            [
                "keys",
                "destroy",
                "acme",
                "k",
                "--waiting-period",
                "soon",
                "--nats-url",
                "nats://127.0.0.1:1",
            ],
            "--waiting-period",
        ),
    ):
        result = cli(args, cli_env)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr
