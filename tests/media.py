"""Test media made at test time from photos that ship inside installed packages (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.vision import photos


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def make_photo_folder(folder: Path) -> dict[str, Path]:
    """astronaut.png, grace.png, cat.png (no face), group.png (three faces), note.txt (not an image), empty.png."""
    group, _boxes = photos.tiled()
    files = {
        "astronaut": write_png(folder / "astronaut.png", photos.astronaut()),
        "grace": write_png(folder / "grace.png", photos.grace_hopper()),
        "cat": write_png(folder / "cat.png", photos.cat()),
        "group": write_png(folder / "group.png", group),
    }
    (folder / "note.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    files["note"] = folder / "note.txt"
    files["empty"] = folder / "empty.png"
    return files


def read_image(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable image"
    return image


def inner_face(image: np.ndarray, inner: float = 0.6) -> np.ndarray:
    """The central part of the largest detected face (eyes, nose, mouth: what a swap replaces), normalised grey."""
    from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine

    boxes = FaceEngine().detect(image)
    assert boxes, "no face found to compare"
    x1, y1, x2, y2 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    dx, dy = int((x2 - x1) * (1 - inner) / 2), int((y2 - y1) * (1 - inner) / 2)
    grey = cv2.cvtColor(image[y1 + dy : y2 - dy, x1 + dx : x2 - dx], cv2.COLOR_BGR2GRAY)
    grey = cv2.equalizeHist(cv2.resize(grey, (48, 48))).astype(np.float32)
    return (grey - grey.mean()) / (grey.std() + 1e-6)


def likeness(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two faces' inner parts (1: same picture, about 0: unrelated)."""
    return float((inner_face(a) * inner_face(b)).mean())
