"""Part arithmetic: how a file splits into parts."""

from __future__ import annotations

import pytest

from services.upload.parts import MAX_PARTS, expected_part_size, part_count

PART = 5 * 1024 * 1024


@pytest.mark.parametrize(
    "size,count",
    [
        (0, 1),  # one empty part
        (1, 1),
        (PART - 1, 1),
        (PART, 1),
        (PART + 1, 2),
        (3 * PART + 123, 4),
        (1024**3, 205),  # 1 GiB
        (PART * MAX_PARTS, MAX_PARTS),
    ],
)
def test_part_count(size, count):
    assert part_count(size, PART) == count


def test_every_part_is_full_but_the_last_which_holds_the_remainder():
    size = 3 * PART + 123
    sizes = [expected_part_size(i, size=size, part_size=PART) for i in range(4)]
    assert sizes == [PART, PART, PART, 123]
    assert sum(sizes) == size


def test_a_file_of_exactly_n_parts_has_a_full_last_part():
    assert expected_part_size(1, size=2 * PART, part_size=PART) == PART


def test_a_zero_byte_file_is_one_empty_part():
    assert expected_part_size(0, size=0, part_size=PART) == 0


@pytest.mark.parametrize("index", [-1, 4, 100])
def test_indexes_outside_the_file_are_refused(index):
    with pytest.raises(ValueError, match="outside 0..3"):
        expected_part_size(index, size=3 * PART + 1, part_size=PART)


@pytest.mark.parametrize("size,part_size", [(-1, PART), (10, 0), (10, -5)])
def test_negative_sizes_are_refused(size, part_size):
    with pytest.raises(ValueError):
        part_count(size, part_size)
