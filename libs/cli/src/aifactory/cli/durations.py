"""Reading ``--since``: a duration back from now (``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``)
or an absolute RFC 3339 time (``2026-11-26T09:00:00Z``)."""

from __future__ import annotations

import datetime as dt
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(rf"(?:{_PART.pattern})+")


class InvalidSince(ValueError):
    """A ``--since`` value is neither a duration nor a time with a timezone."""


def parse_duration(text: str) -> dt.timedelta:
    """``10m`` -> 10 minutes; units ms, s, m, h, d, w, combinable (``1h30m``)."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        raise InvalidSince(
            f"--since takes a duration like 30s, 10m, 2h, 1d or a time like "
            f"2026-11-26T09:00:00Z; got {text!r}"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    return dt.timedelta(seconds=seconds)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """The UTC instant ``--since`` names: ``now`` minus a duration, or an absolute time."""
    stripped = text.strip()
    if stripped[:1].isdigit() and ("-" in stripped or "T" in stripped):
        try:
            moment = dt.datetime.fromisoformat(stripped.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidSince(f"--since: {text!r} is not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise InvalidSince(f"--since: {text!r} has no timezone; add Z or +hh:mm")
        return moment.astimezone(dt.UTC)
    return now.astimezone(dt.UTC) - parse_duration(stripped)
