"""NATS subject patterns: which streams a tail filter touches, and with what filter.

A filter such as ``factory.>`` and a stream subject such as
``factory.example.*.evt.>`` overlap when some subject matches both; their
intersection is itself one pattern (here ``factory.example.*.evt.>``), which is the
consumer filter to use on that stream: JetStream only accepts consumer filters that
lie inside the stream's subjects.
"""

from __future__ import annotations


def intersect(first: str, second: str) -> str | None:
    """The pattern matching exactly the subjects both patterns match, or ``None``."""
    a, b = first.split("."), second.split(".")
    out: list[str] = []
    for i in range(max(len(a), len(b))):
        if i < len(a) and a[i] == ">":
            rest = b[i:]
            return ".".join(out + rest) if rest else None
        if i < len(b) and b[i] == ">":
            rest = a[i:]
            return ".".join(out + rest) if rest else None
        if i >= len(a) or i >= len(b):
            return None
        if a[i] == "*":
            out.append(b[i])
        elif b[i] in ("*", a[i]):
            out.append(a[i])
        else:
            return None
    return ".".join(out)


def stream_filters(wanted: str, stream_subjects: list[str]) -> list[str]:
    """The consumer filters selecting ``wanted`` within a stream's subjects (maybe none)."""
    filters: list[str] = []
    for subject in stream_subjects:
        both = intersect(wanted, subject)
        if both is not None and both not in filters:
            filters.append(both)
    return filters
