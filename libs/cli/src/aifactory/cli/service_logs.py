"""What ``aifactory up`` shows of its services' logs, and where it keeps them.

Every service writes JSON log lines; ``up`` keeps all of them in
``<var>/logs/<service>.log`` and prints on the console only what an operator should
see while the factory runs: warnings and errors (as ``level event key=value ...``)
and anything that is not a JSON log record (a traceback, a crash message).
``--follow-logs`` prints every line instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

QUIET_LEVELS = frozenset({"debug", "info"})
_SKIPPED_FIELDS = frozenset({"event", "level", "timestamp", "logger", "service"})
_decoder = msgspec.json.Decoder(dict[str, Any])


def log_file_of(var_dir: Path, service: str) -> Path:
    """Where ``up`` writes a service's output."""
    return var_dir / "logs" / f"{service}.log"


def problems_only(line: str) -> str | None:
    """The console form of a warning or error record; None for routine records."""
    if not line.startswith("{"):
        return line
    try:
        record = _decoder.decode(line)
    except msgspec.DecodeError:
        return line
    level = str(record.get("level", "")).lower()
    if level in QUIET_LEVELS:
        return None
    fields = " ".join(
        f"{key}={value}" for key, value in record.items() if key not in _SKIPPED_FIELDS
    )
    return f"{level or 'log'} {record.get('event', '')} {fields}".rstrip()


def every_line(line: str) -> str | None:
    """Print every line as written (``--follow-logs``)."""
    return line
