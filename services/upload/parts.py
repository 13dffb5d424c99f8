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
