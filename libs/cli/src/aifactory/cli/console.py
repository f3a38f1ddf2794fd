"""Terminal output and errors shared by the CLI's commands.

Commands print progress on stdout and problems on stderr through rich consoles with
markup and highlighting off, so text that looks like markup (``[inventory]``,
JSON) prints verbatim and nothing is coloured when the output is not a terminal.
A command that cannot go on raises ``CliError``; ``exit_on_error`` turns it into one
clear line on stderr and the error's exit code, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

USAGE_EXIT_CODE = 2
"""Exit code for a bad option or an unreachable dependency (as argument errors use)."""


class CliError(Exception):
    """A command cannot continue; the message says why and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def stdout_console() -> Console:
    """A console for a command's normal output."""
    return Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


def stderr_console() -> Console:
    """A console for warnings and errors."""
    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


@contextmanager
def exit_on_error(command: str) -> Iterator[None]:
    """Print a ``CliError`` as ``aifactory <command>: <message>`` and exit with its code."""
    try:
        yield
    except CliError as error:
        stderr_console().print(f"aifactory {command}: {error.message}", style="red")
        raise typer.Exit(error.exit_code) from None
