"""The v2 part arithmetic at every boundary: the server's part size choice (5 MiB doubling
up to 5 GiB, at most 10,000 parts), the part count and each part's size, and the settings
that bound them. Pure functions: no server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.upload.parts import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    choose_part_size,
    expected_part_size,
    part_count,
)
from services.upload.settings import UploadSettings

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB


@pytest.mark.parametrize(
    "size,part_size,count",
    [
        (0, 5 * MIB, 1),  # an empty file is one empty part
        (1, 5 * MIB, 1),
        (5 * MIB, 5 * MIB, 1),  # exactly one part
        (5 * MIB + 1, 5 * MIB, 2),  # one byte over
        (5 * MIB * MAX_PARTS, 5 * MIB, 10_000),  # exact multiple at the part limit
        (5 * MIB * MAX_PARTS + 1, 10 * MIB, 5_001),  # one byte over: the next size
        (10 * MIB * MAX_PARTS, 10 * MIB, 10_000),
        (10 * MIB * MAX_PARTS + 1, 20 * MIB, 5_001),
        (1 * TIB, 160 * MIB, 6_554),
        (5 * TIB, 640 * MIB, 8_192),  # S3's object limit
        (5 * TIB + 1, 640 * MIB, 8_193),
        (MAX_PART_SIZE * MAX_PARTS - 1, 5 * GIB, 10_000),
        (MAX_PART_SIZE * MAX_PARTS, 5 * GIB, 10_000),  # 48.8 TiB: 10,000 parts of 5 GiB
    ],
)
def test_the_part_size_is_the_smallest_that_needs_at_most_10000_parts(size, part_size, count):
    chosen = choose_part_size(size)
    assert (chosen, part_count(size, chosen)) == (part_size, count)
    assert MIN_PART_SIZE <= chosen <= MAX_PART_SIZE
    # Every part but the last is the part size; the last holds the remainder.
    if size:
        assert expected_part_size(0, size=size, part_size=chosen) == min(chosen, size)
    last = expected_part_size(count - 1, size=size, part_size=chosen)
    assert 0 < last <= chosen or size == 0
    assert chosen * (count - 1) + last == size


def test_a_file_no_part_size_can_hold_is_refused():
    with pytest.raises(ValueError, match="more than 10000 parts"):
        choose_part_size(MAX_PART_SIZE * MAX_PARTS + 1)


def test_a_smaller_minimum_for_a_test_store_still_keeps_10000_parts():
    assert choose_part_size(1_100 * 1024, min_part_size=1024) == 1024
    assert part_count(1_100 * 1024, 1024) == 1_100
    assert choose_part_size(10_000 * 1024 + 1, min_part_size=1024) == 2048
    # A ladder that does not land on 5 GiB is capped there.
    assert choose_part_size(MAX_PART_SIZE * MAX_PARTS, min_part_size=3 * MIB) == MAX_PART_SIZE


def test_last_part_sizes_at_exact_multiples_and_one_byte_over():
    assert expected_part_size(1, size=10 * MIB, part_size=5 * MIB) == 5 * MIB
    assert expected_part_size(2, size=10 * MIB + 1, part_size=5 * MIB) == 1
    with pytest.raises(ValueError):
        expected_part_size(2, size=10 * MIB, part_size=5 * MIB)


def test_the_v2_limits_are_settings_bounded_by_what_10000_parts_hold():
    settings = UploadSettings(_env_file=None)
    assert settings.v2_max_file_size_bytes == 5 * TIB
    assert settings.max_file_size_bytes == GIB  # v1 keeps its limit
    assert settings.min_part_size_bytes == 5 * MIB
    assert (
        UploadSettings(
            _env_file=None, v2_max_file_size_bytes=MAX_PART_SIZE * MAX_PARTS
        ).v2_max_file_size_bytes
        == MAX_PART_SIZE * MAX_PARTS
    )
    with pytest.raises(ValidationError, match="v2_max_file_size_bytes"):
        UploadSettings(_env_file=None, v2_max_file_size_bytes=MAX_PART_SIZE * MAX_PARTS + 1)
    with pytest.raises(ValidationError, match="min_part_size_bytes"):
        UploadSettings(_env_file=None, min_part_size_bytes=0)
