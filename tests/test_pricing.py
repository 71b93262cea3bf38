"""Every row of the spec's pricing table."""

import pytest

from faceswap_flows.aifaceswap import Operation, estimate_credits
from faceswap_flows.aifaceswap.pricing import billed_seconds


@pytest.mark.parametrize(
    ("operation", "expected"),
    [("faceswap", 2), ("extract_face", 2), ("multi_faceswap", 5), ("extract_base64_face", 2)],
)
def test_flat_prices(operation: str, expected: int) -> None:
    assert estimate_credits(operation) == expected
    assert estimate_credits(Operation(operation)) == expected


@pytest.mark.parametrize(("enhance", "per_second"), [(0, 2), (1, 4), (2, 6)])
def test_basic_video_per_second_by_enhance(enhance: int, per_second: int) -> None:
    assert estimate_credits("video_faceswap", duration=5, enhance=enhance) == 5 * per_second
    assert estimate_credits("video_faceswap", duration=1, enhance=enhance) == per_second


@pytest.mark.parametrize("faces", [1, 2, 3])
@pytest.mark.parametrize(("enhance", "extra"), [(0, 1), (1, 2), (2, 3)])
def test_multi_video_formula(faces: int, enhance: int, extra: int) -> None:
    # (face count + 1|2|3) * 2 credits per second, for no enhance | 1080p | 2k
    assert estimate_credits("multi_video_faceswap", duration=5, enhance=enhance, face_count=faces) == (
        (faces + extra) * 2 * 5
    )


def test_spec_examples() -> None:
    assert estimate_credits("video_faceswap", duration=5, enhance=0) == 10  # spec: "points": 10
    assert estimate_credits("multi_video_faceswap", duration=5, enhance=0, face_count=1) == 20  # "points": 20


def test_fractional_seconds_are_billed_whole() -> None:
    assert billed_seconds(2.01) == 3
    assert billed_seconds(2.0) == 2
    assert estimate_credits("video_faceswap", duration=0.2) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operation": "video_faceswap"}, "pass duration"),
        ({"operation": "video_faceswap", "duration": 0}, "duration must be > 0"),
        ({"operation": "video_faceswap", "duration": 3, "enhance": 3}, "enhance must be 0, 1 or 2"),
        ({"operation": "multi_video_faceswap", "duration": 3}, "pass face_count"),
        ({"operation": "multi_video_faceswap", "duration": 3, "face_count": 4}, "1 to 3 faces"),
    ],
)
def test_bad_estimates(kwargs: dict, message: str) -> None:
    operation = kwargs.pop("operation")
    with pytest.raises(ValueError, match=message):
        estimate_credits(operation, **kwargs)


def test_unknown_operation() -> None:
    with pytest.raises(ValueError):
        estimate_credits("upscale")
