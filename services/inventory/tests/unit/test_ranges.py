"""Host range expansion and compression."""

from __future__ import annotations

import pytest

from aifactory.inventory.ranges import MAX_EXPANSION, RangeError, compress_ids, expand_ids


def test_plain_name_expands_to_itself() -> None:
    """A name without brackets is one name."""
    assert expand_ids("gpu-a001") == ["gpu-a001"]


def test_padded_range_keeps_the_width_of_its_first_number() -> None:
    """gpu-a[001-003] expands to three zero-padded names in order."""
    assert expand_ids("gpu-a[001-003]") == ["gpu-a001", "gpu-a002", "gpu-a003"]


def test_range_of_128_expands_fully() -> None:
    """gpu-a[001-128] gives 128 names from gpu-a001 to gpu-a128."""
    names = expand_ids("gpu-a[001-128]")
    assert len(names) == 128
    assert (names[0], names[-1]) == ("gpu-a001", "gpu-a128")


def test_comma_lists_and_several_groups_multiply() -> None:
    """r[1-2]-n[1,3] gives every combination, in order."""
    assert expand_ids("r[1-2]-n[1,3]") == ["r1-n1", "r1-n3", "r2-n1", "r2-n3"]


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("gpu[5-1]", "backwards"),
        ("gpu[a-b]", "not a number"),
        ("gpu[1-2", "unbalanced"),
        ("gpu[[1-2]]", "unbalanced"),
        (f"gpu[0-{MAX_EXPANSION + 5}]", "exceeds"),
        ("a[0-999]b[0-999]", "over"),
    ],
)
def test_malformed_or_absurd_range_is_refused(pattern: str, fragment: str) -> None:
    """A malformed or absurdly large range raises RangeError saying why."""
    with pytest.raises(RangeError, match=fragment):
        expand_ids(pattern)


def test_compress_is_the_inverse_of_expand() -> None:
    """Compressing expanded names gives back the range patterns (gaps split runs)."""
    names = expand_ids("gpu-a[001-064]") + expand_ids("gpu-a[066-070]") + ["login1", "gpu-b7"]
    patterns = compress_ids(names)
    assert patterns == ["gpu-a[001-064]", "gpu-a[066-070]", "gpu-b7", "login1"]
    assert sorted(n for p in patterns for n in expand_ids(p)) == sorted(names)


def test_compress_keeps_different_widths_apart() -> None:
    """n9 and n10 differ in width, so n9, n10 stay two entries that expand back exactly."""
    assert compress_ids(["n10", "n9", "n11"]) == ["n9", "n[10-11]"]
