"""Part arithmetic of a multipart upload: how many parts a file has and how big each is.
Parts are `part_size` bytes each except the last, which holds the remainder; a 0-byte file
is one empty part (S3 completes such an upload into an empty object)."""

from __future__ import annotations

# S3's limits on multipart uploads.
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024


def part_count(size: int, part_size: int) -> int:
    """Parts needed for `size` bytes (at least one)."""
    if size < 0 or part_size <= 0:
        raise ValueError("size must be >= 0 and part_size > 0")
    return max(1, -(-size // part_size))


def expected_part_size(index: int, *, size: int, part_size: int) -> int:
    """Bytes in the part at 0-based `index`: part_size, or the remainder for the last."""
    count = part_count(size, part_size)
    if not 0 <= index < count:
        raise ValueError(f"part index {index} is outside 0..{count - 1}")
    if index < count - 1:
        return part_size
    return size - part_size * (count - 1)


def choose_part_size(
    size: int,
    *,
    min_part_size: int = MIN_PART_SIZE,
    max_part_size: int = MAX_PART_SIZE,
    max_parts: int = MAX_PARTS,
) -> int:
    """The v2 part size for `size` bytes: the smallest of min_part_size, doubled as often as
    needed, that slices the file into at most `max_parts` parts, capped at max_part_size.
    Doubling from 5 MiB lands exactly on 5 GiB (5 MiB x 2^10), S3's largest part, and keeps
    the sizes few and round (5 TiB -> 640 MiB parts, 8,192 of them). ValueError when even
    parts of max_part_size cannot hold the file."""
    if size < 0:
        raise ValueError("size must be >= 0")
    if not 0 < min_part_size <= max_part_size:
        raise ValueError("need 0 < min_part_size <= max_part_size")
    if size > max_part_size * max_parts:
        raise ValueError(f"{size} bytes need more than {max_parts} parts of {max_part_size}")
    part_size = min_part_size
    while part_count(size, part_size) > max_parts:
        part_size *= 2
    return min(part_size, max_part_size)


def part_lengths(numbers: range, *, size: int, part_size: int) -> list[int]:
    """The byte length of each part in `numbers` (1-based): what each part's URL is signed
    for, so storage takes exactly those bytes and no more."""
    return [expected_part_size(number - 1, size=size, part_size=part_size) for number in numbers]
