"""Host ranges: ``gpu-a[001-128]`` expands to ``gpu-a001 ... gpu-a128``, and back.

A pattern holds zero or more bracket groups; each group is a comma list of numbers
or ``first-last`` spans, zero-padded to the width of ``first`` (``[1-3]`` gives
``1 2 3``, ``[01-03]`` gives ``01 02 03``). Several groups multiply
(``r[1-2]-n[1-2]`` gives four names). ``compress_ids`` is the inverse used by the
export: it folds runs of consecutive numbers sharing a prefix and width back into
one pattern. Pure functions, no I/O.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

MAX_EXPANSION = 100_000
"""The most names one pattern may produce (an absurd range is an error, not a hang)."""

_GROUP = re.compile(r"\[([^\[\]]*)\]")
_SPAN = re.compile(r"^(\d+)(?:-(\d+))?$")
_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


class RangeError(ValueError):
    """A host range pattern is malformed or expands to too many names."""


def _expand_group(body: str, pattern: str) -> list[str]:
    values: list[str] = []
    for item in body.split(","):
        match = _SPAN.match(item.strip())
        if match is None:
            raise RangeError(f"{pattern!r}: {item.strip()!r} is not a number or a first-last span")
        first, last = match.group(1), match.group(2) or match.group(1)
        start, stop = int(first), int(last)
        if stop < start:
            raise RangeError(f"{pattern!r}: span {first}-{last} runs backwards")
        if stop - start + 1 > MAX_EXPANSION:
            raise RangeError(f"{pattern!r}: span {first}-{last} exceeds {MAX_EXPANSION} names")
        width = len(first)
        values.extend(str(n).zfill(width) for n in range(start, stop + 1))
    return values


def expand_ids(pattern: str) -> list[str]:
    """Every name ``pattern`` denotes, in order; ``RangeError`` when it is malformed."""
    if "[" not in pattern and "]" not in pattern:
        return [pattern]
    literals = _GROUP.split(pattern)
    # split() alternates literal text and group bodies: lit, body, lit, body, ..., lit
    texts, bodies = literals[0::2], literals[1::2]
    if any("[" in t or "]" in t for t in texts):
        raise RangeError(f"{pattern!r}: unbalanced or nested brackets")
    groups = [_expand_group(body, pattern) for body in bodies]
    total = 1
    for group in groups:
        total *= len(group)
    if total > MAX_EXPANSION:
        raise RangeError(f"{pattern!r} expands to {total} names, over {MAX_EXPANSION}")
    names = []
    for combo in itertools.product(*groups):
        parts = [texts[0]]
        for value, text in zip(combo, texts[1:], strict=True):
            parts.extend((value, text))
        names.append("".join(parts))
    return names


def compress_ids(ids: Iterable[str]) -> list[str]:
    """Fold runs of consecutive numbered names into patterns (inverse of ``expand_ids``)."""
    runs: list[tuple[str, int, int, int]] = []  # prefix, width, first, last
    singles: list[str] = []
    keyed: list[tuple[str, int, int]] = []
    for name in ids:
        match = _TRAILING_NUMBER.match(name)
        if match is None:
            singles.append(name)
            continue
        keyed.append((match.group(1), len(match.group(2)), int(match.group(2))))
    keyed.sort()
    for prefix, width, number in keyed:
        if runs and runs[-1][0] == prefix and runs[-1][1] == width and runs[-1][3] == number - 1:
            runs[-1] = (prefix, width, runs[-1][2], number)
        else:
            runs.append((prefix, width, number, number))
    out = list(singles)
    for prefix, width, first, last in runs:
        if first == last:
            out.append(f"{prefix}{str(first).zfill(width)}")
        else:
            out.append(f"{prefix}[{str(first).zfill(width)}-{str(last).zfill(width)}]")
    return sorted(out)
