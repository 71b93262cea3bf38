"""decode_image / encode_image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceswap_flows.aifaceswap.sandbox.vision import NotAnImage, VisionError, decode_image, encode_image
from tests.vision import photos


def test_png_round_trip_is_exact() -> None:
    image = photos.astronaut()
    assert np.array_equal(decode_image(encode_image(image, "png")), image)


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_lossy_formats_round_trip_closely(fmt: str) -> None:
    image = photos.grace_hopper()
    data = encode_image(image, fmt)
    assert data[:4] in (b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\xff\xd8\xff\xe1", b"RIFF")
    back = decode_image(data)
    assert back.shape == image.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - image).mean() < 4


def test_grayscale_is_expanded_to_three_equal_channels() -> None:
    gray = cv2.cvtColor(photos.astronaut(), cv2.COLOR_BGR2GRAY)
    out = decode_image(cv2.imencode(".png", gray)[1].tobytes())
    assert out.shape == (*gray.shape, 3)
    assert np.array_equal(out[:, :, 0], gray) and np.array_equal(out[:, :, 2], gray)


def test_alpha_is_composited_over_white() -> None:
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[:, :, 2] = 200  # red
    bgra[:2, :, 3] = 255  # top half opaque, bottom half transparent
    out = decode_image(cv2.imencode(".png", bgra)[1].tobytes())
    assert out.shape == (4, 4, 3)
    assert out[0, 0].tolist() == [0, 0, 200]
    assert out[3, 3].tolist() == [255, 255, 255]


def test_sixteen_bit_png_is_reduced_to_eight_bits() -> None:
    deep = np.full((3, 3, 3), 0xABCD, np.uint16)
    out = decode_image(cv2.imencode(".png", deep)[1].tobytes())
    assert out.dtype == np.uint8 and int(out[0, 0, 0]) == 0xAB


@pytest.mark.parametrize(
    "data",
    [b"", b"definitely not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
    ids=["empty", "text", "truncated-png"],
)
def test_garbage_and_empty_bytes_are_not_images(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        decode_image(data)
    assert issubclass(NotAnImage, VisionError)


def test_unknown_output_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported image format"):
        encode_image(photos.cat(), "gif")
