"""Decoding and encoding of still images (BGR ``uint8`` arrays, OpenCV's convention)."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import NotAnImage

__all__ = ["as_bgr", "decode_image", "encode_image"]

_ENCODERS: dict[str, tuple[str, list[int]]] = {
    "png": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]),
    "jpg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92]),
    "jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92]),
    "webp": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 92]),
}


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a contiguous BGR ``uint8`` HxWx3 array (grayscale is expanded, alpha dropped)."""
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return _flatten_alpha(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise NotAnImage(f"unsupported image shape {image.shape}")


def _flatten_alpha(bgra: np.ndarray) -> np.ndarray:
    """Composite a BGRA image over white (transparent pixels become white, as most viewers show them)."""
    alpha = bgra[:, :, 3:4].astype(np.float32) / 255.0
    colour = bgra[:, :, :3].astype(np.float32)
    out = colour * alpha + 255.0 * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG/WebP/BMP/TIFF bytes into a BGR ``uint8`` HxWx3 array.

    Grayscale images are expanded to three channels; an alpha channel is composited over white; 16-bit
    images are reduced to 8 bits.  Raises :class:`NotAnImage` when the bytes are empty or undecodable.
    """
    if not data:
        raise NotAnImage("empty image data")
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # pragma: no cover - OpenCV reports most failures by returning None
        raise NotAnImage(f"image data could not be decoded: {exc}") from exc
    if image is None or image.size == 0:
        raise NotAnImage(f"{len(data)} bytes that do not decode to an image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    return as_bgr(image)


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    """Encode a BGR (or grayscale) image as ``"png"``, ``"jpg"`` or ``"webp"`` bytes."""
    key = fmt.lower().lstrip(".")
    if key not in _ENCODERS:
        raise ValueError(f"unsupported image format {fmt!r}; use one of png, jpg, webp")
    ext, params = _ENCODERS[key]
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:  # pragma: no cover - imencode only fails on invalid arrays
        raise ValueError(f"could not encode a {image.shape} image as {key}")
    return buffer.tobytes()
