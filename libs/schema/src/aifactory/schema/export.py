"""Writing and checking the generated contract documents in the repository.

``write_all`` regenerates ``contracts/schemas/<domain>/v<N>/<name>.json`` for every
registered message and ``docs/asyncapi.yaml``, writing only files whose text changed
and removing nothing (a published schema stays, so the gate can still see it). It
refuses to overwrite a checked-in schema with a breaking change, because the
checked-in files are the gate's baseline: re-exporting would silently accept the
break. ``check_all`` is what CI asks: are the generated files current, and is every
registered message compatible with its checked-in schema? The CLI's
``aifactory contracts export | check`` calls these two functions.
"""

from __future__ import annotations

from pathlib import Path

from aifactory.contracts.catalog import load_all
from aifactory.contracts.registry import Registry
from aifactory.schema.asyncapi import render_asyncapi
from aifactory.schema.compat import Finding, check_registry
from aifactory.schema.jsonschema import registry_schemas, render_schema

SCHEMAS_DIR = Path("contracts") / "schemas"
ASYNCAPI_PATH = Path("docs") / "asyncapi.yaml"
EXPORT_COMMAND = "uv run aifactory contracts export"


class BreakingChangeError(Exception):
    """Exporting would overwrite a published schema with an incompatible one."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        lines = "\n".join(f"  {finding}" for finding in findings)
        super().__init__(
            f"refusing to export: {len(findings)} breaking change(s) against the checked-in "
            f"schemas:\n{lines}\nKeep the published version as it is and add the change as a new "
            "major version (contracts/src/aifactory/contracts/<domain>/v<N+1>.py). If that version "
            "was never published, delete its checked-in schema file and export again."
        )


def generated_files(registry: Registry) -> dict[Path, str]:
    """Every generated file's text, keyed by its path relative to the repository root."""
    files = {
        SCHEMAS_DIR / path: render_schema(schema)
        for path, schema in registry_schemas(registry).items()
    }
    files[ASYNCAPI_PATH] = render_asyncapi(registry)
    return files


def write_all(
    repo_root: Path, *, registry: Registry | None = None, allow_breaking: bool = False
) -> list[Path]:
    """Regenerate the schema files and the AsyncAPI document under ``repo_root``.

    Returns the files it created or changed. Raises ``BreakingChangeError`` (and writes
    nothing) when a registered message is incompatible with its checked-in schema,
    unless ``allow_breaking``.
    """
    registry = registry if registry is not None else load_all()
    if not allow_breaking:
        breaking = [f for f in check_registry(registry, repo_root / SCHEMAS_DIR) if f.breaking]
        if breaking:
            raise BreakingChangeError(breaking)
    changed: list[Path] = []
    for relative, text in generated_files(registry).items():
        target = repo_root / relative
        if _holds(target, text):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
        changed.append(target)
    return changed


def check_all(repo_root: Path, *, registry: Registry | None = None) -> list[str]:
    """Human-readable problems with the checked-in contract documents; empty when all is well.

    Reports breaking changes against the checked-in schemas first, then generated
    files that are missing or out of date.
    """
    registry = registry if registry is not None else load_all()
    problems = [
        f"breaking change in {SCHEMAS_DIR.as_posix()}/{finding}"
        for finding in check_registry(registry, repo_root / SCHEMAS_DIR)
        if finding.breaking
    ]
    for relative, text in generated_files(registry).items():
        target = repo_root / relative
        if not target.is_file():
            problems.append(f"{relative.as_posix()} is missing; run `{EXPORT_COMMAND}`")
        elif not _holds(target, text):
            problems.append(f"{relative.as_posix()} is out of date; run `{EXPORT_COMMAND}`")
    return problems


def _holds(target: Path, text: str) -> bool:
    """Whether ``target`` exists with exactly the bytes of ``text``."""
    return target.is_file() and target.read_bytes() == text.encode("utf-8")
