"""The credit prices of the spec's pricing table, for estimates and budget guards before anything is spent."""

from __future__ import annotations

import math
from enum import StrEnum


class Operation(StrEnum):
    """The six paid operations of the API, named as their endpoints."""

    FACESWAP = "faceswap"
    EXTRACT_FACE = "extract_face"
    MULTI_FACESWAP = "multi_faceswap"
    VIDEO_FACESWAP = "video_faceswap"
    EXTRACT_BASE64_FACE = "extract_base64_face"
    MULTI_VIDEO_FACESWAP = "multi_video_faceswap"


FLAT_PRICES: dict[Operation, int] = {
    Operation.FACESWAP: 2,
    Operation.EXTRACT_FACE: 2,
    Operation.MULTI_FACESWAP: 5,
    Operation.EXTRACT_BASE64_FACE: 2,
}
VIDEO_PRICE_PER_SECOND: dict[int, int] = {0: 2, 1: 4, 2: 6}
"""Basic video face swap, by enhance level: none, up to 1080p, up to 2k."""


def billed_seconds(duration: float) -> int:
    """Seconds a video is charged for: whole seconds, rounded up (a conservative reading of the spec)."""
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    return math.ceil(round(duration, 6))


def estimate_credits(
    operation: Operation | str,
    *,
    duration: float | None = None,
    enhance: int = 0,
    face_count: int | None = None,
) -> int:
    """Credits one call costs, by the spec's pricing table.

    >>> estimate_credits("faceswap")
    2
    >>> estimate_credits("video_faceswap", duration=5, enhance=1)
    20
    >>> estimate_credits("multi_video_faceswap", duration=5, enhance=0, face_count=1)
    20
    """
    operation = Operation(operation)
    if operation in FLAT_PRICES:
        return FLAT_PRICES[operation]
    if enhance not in VIDEO_PRICE_PER_SECOND:
        raise ValueError(f"enhance must be 0, 1 or 2, got {enhance!r}")
    if duration is None:
        raise ValueError(f"{operation.value} is priced per second: pass duration (seconds)")
    seconds = billed_seconds(duration)
    if operation is Operation.VIDEO_FACESWAP:
        return VIDEO_PRICE_PER_SECOND[enhance] * seconds
    if face_count is None or not 1 <= face_count <= 3:
        raise ValueError(f"multi_video_faceswap takes 1 to 3 faces: pass face_count, got {face_count!r}")
    return (face_count + 1 + enhance) * 2 * seconds
