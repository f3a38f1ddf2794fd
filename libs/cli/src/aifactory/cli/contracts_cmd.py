"""``aifactory contracts export`` and ``check``: the checked-in schema documents.

Both delegate to ``aifactory.schema.export`` (imported only when the command runs,
so the rest of the CLI never pays for it): ``write_all(root)`` regenerates the JSON
Schemas and the AsyncAPI document and returns the files it changed, refusing a
breaking change to a checked-in schema unless ``--allow-breaking``;
``check_all(root)`` compares them with the code and returns the problems, such as
a breaking change against the checked-in schemas. ``check`` exits 1 when there are
any, so CI can run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aifactory.cli.console import (
    USAGE_EXIT_CODE,
    CliError,
    exit_on_error,
    stderr_console,
    stdout_console,
)
from aifactory.cli.repo_root import find_repo_root

contracts_app = typer.Typer(
    help="Generate and check the contracts' JSON Schemas and AsyncAPI document.",
    no_args_is_help=True,
)

RootOption = Annotated[
    Path | None,
    typer.Option("--root", help="Repository root (default: found from the working directory)."),
]


def _root(explicit: Path | None) -> Path:
    if explicit is not None:
        if not explicit.is_dir():
            raise CliError(f"--root {explicit} is not a directory", USAGE_EXIT_CODE)
        return explicit.resolve()
    found = find_repo_root(Path.cwd())
    if found is None:
        raise CliError(
            f"no aifactory repository at or above {Path.cwd()} (looked for contracts/schemas "
            "or a pyproject.toml with [tool.uv.workspace]); "
            "run inside the repository or pass --root",
            USAGE_EXIT_CODE,
        )
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


@contracts_app.command("export")
def export(
    root: RootOption = None,
    allow_breaking: Annotated[
        bool,
        typer.Option(
            "--allow-breaking",
            help="Overwrite checked-in schemas even with breaking changes "
            "(only for versions never published).",
        ),
    ] = False,
) -> None:
    """Regenerate the schema documents and list the files that changed."""
    with exit_on_error("contracts export"):
        from aifactory.schema.export import BreakingChangeError, write_all

        repo = _root(root)
        try:
            changed = write_all(repo, allow_breaking=allow_breaking)
        except BreakingChangeError as error:
            raise CliError(str(error)) from None
        out = stdout_console()
        for path in changed:
            out.print(f"wrote {_relative(path, repo)}")
        out.print(
            f"contracts: {len(changed)} file(s) changed" if changed else "contracts: up to date"
        )


@contracts_app.command("check")
def check(root: RootOption = None) -> None:
    """Compare the schema documents with the code; exit 1 on any problem."""
    with exit_on_error("contracts check"):
        from aifactory.schema.export import check_all

        repo = _root(root)
        problems = check_all(repo)
        if not problems:
            stdout_console().print("contracts: no problems")
            return
        err = stderr_console()
        for problem in problems:
            err.print(f"- {problem}")
        err.print(
            f"contracts: {len(problems)} problem(s); run `aifactory contracts export` "
            "if the changes are intended and compatible",
            style="red",
        )
        raise typer.Exit(1)
