"""Finding the aifactory repository a ``contracts`` command works on.

The root is the nearest directory, from the working directory upwards, that holds
``contracts/schemas`` or a ``pyproject.toml`` declaring ``[tool.uv.workspace]``;
``--root`` names it explicitly.
"""

from __future__ import annotations

import tomllib
from pathlib import Path


def _is_workspace_root(directory: Path) -> bool:
    if (directory / "contracts" / "schemas").is_dir():
        return True
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    tool = document.get("tool", {})
    return isinstance(tool, dict) and "workspace" in tool.get("uv", {})


def find_repo_root(start: Path) -> Path | None:
    """The repository root at or above ``start``, or ``None``."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if _is_workspace_root(directory):
            return directory
    return None
