"""Choosing faces: crops of detected boxes, and the detected face most like a reference photo.

A compact appearance signature (gradient orientations over a grid, plus a coarse grey thumbnail) is
enough to tell the people of one photo apart; it needs only numpy and Pillow.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from faceswap_flows.aifaceswap.models import FaceBox

SIGNATURE_SIZE = 64
GRID = 4
BINS = 9


def load_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def crop(image: Image.Image, box: FaceBox, margin: float = 0.0) -> Image.Image:
    """The box's region, grown by ``margin`` of its size on each side and clipped to the image."""
    dx, dy = int(box.width * margin), int(box.height * margin)
    return image.crop(
        (max(0, box.x1 - dx), max(0, box.y1 - dy), min(image.width, box.x2 + dx), min(image.height, box.y2 + dy))
    )


def signature(face: Image.Image) -> np.ndarray:
    """A unit vector describing a face crop's appearance."""
    grey = np.asarray(face.convert("L").resize((SIGNATURE_SIZE, SIGNATURE_SIZE)), dtype=np.float32) / 255.0
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    orientation = (np.arctan2(gy, gx) % np.pi) / np.pi * BINS
    cell = SIGNATURE_SIZE // GRID
    histograms = []
    for row in range(GRID):
        for col in range(GRID):
            window = (slice(row * cell, (row + 1) * cell), slice(col * cell, (col + 1) * cell))
            histogram = np.bincount(
                np.minimum(orientation[window].astype(int), BINS - 1).ravel(),
                weights=magnitude[window].ravel(),
                minlength=BINS,
            )
            histograms.append(histogram / (np.linalg.norm(histogram) + 1e-6))
    thumbnail = np.asarray(face.convert("L").resize((8, 8)), dtype=np.float32).ravel()
    thumbnail = (thumbnail - thumbnail.mean()) / (thumbnail.std() + 1e-6) / 8
    vector = np.concatenate([*histograms, thumbnail])
    return vector / (np.linalg.norm(vector) + 1e-9)


def most_similar(reference: Image.Image, candidates: list[Image.Image]) -> tuple[int, list[float]]:
    """Index of the candidate most like ``reference``, and every candidate's similarity (cosine)."""
    if not candidates:
        raise ValueError("no candidate faces to compare with")
    wanted = signature(reference)
    scores = [float(np.dot(wanted, signature(candidate))) for candidate in candidates]
    return int(np.argmax(scores)), scores
