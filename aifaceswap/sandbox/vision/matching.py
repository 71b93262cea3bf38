"""Appearance matching of faces against reference crops (``face_ref``) for multi-face video swaps.

A face is described by two cheap, alignment-normalised features of its 64x64 aligned crop:

* a hue/saturation histogram (16 x 8 bins) inside the face ellipse — skin, hair line, glasses colour —
  after a grey-world correction (each channel scaled to the same mean inside the ellipse), so a colour
  cast of the light does not move it;
* a 24x24 grayscale thumbnail of the inner face, zero-mean and unit-norm — coarse structure — kept with
  its mirror image, as a person's mirror image (selfie cameras) is the same person.

Similarity is the mean of the Bhattacharyya coefficient of the histograms and the (clipped) correlation
of the thumbnails (the better of straight and mirrored), in [0, 1].  Faces are assigned to references
one-to-one, best pair first, when the similarity reaches :data:`MATCH_THRESHOLD` (0.7: a re-lit, mirrored,
recropped other shot of the same person scores ~0.85-0.95, the other person of the tests ~0.6).  This
tells different people apart when they look clearly different (different skin tone, hair, glasses); it
is no face-recognition model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detect import FaceDetector
from .faces import Face, landmarks_from_box
from .swap import face_mask_geometry, similarity_transform

__all__ = ["MATCH_THRESHOLD", "FaceDescriptor", "assign", "describe", "describe_crop", "similarity"]

MATCH_THRESHOLD = 0.7
_SIZE = 64
_TEMPLATE_FACE = Face((10, 12, 54, 56), landmarks_from_box((10, 12, 54, 56), "dlib"))
_HIST_MASK = np.zeros((_SIZE, _SIZE), np.uint8)
_center, _axes, _angle = face_mask_geometry(_TEMPLATE_FACE)
cv2.ellipse(_HIST_MASK, (_center, (2 * _axes[0], 2 * _axes[1]), _angle), 255, -1)


@dataclass(frozen=True, eq=False)
class FaceDescriptor:
    """Appearance features of one face (see the module docstring)."""

    hist: np.ndarray
    thumb: np.ndarray
    mirror: np.ndarray


def _aligned(image: np.ndarray, face: Face) -> np.ndarray:
    matrix = similarity_transform(face.landmarks, _TEMPLATE_FACE.landmarks)
    size = (_SIZE, _SIZE)
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def describe(image: np.ndarray, face: Face) -> FaceDescriptor:
    """Descriptor of ``face`` in the BGR ``image``."""
    crop = _aligned(image, face)
    means = np.array(cv2.mean(crop, mask=_HIST_MASK)[:3], np.float32)
    balanced = crop.astype(np.float32) * (means.mean() / np.maximum(means, 1.0))
    hsv = cv2.cvtColor(np.clip(balanced, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], _HIST_MASK, [16, 8], [0, 180, 0, 256]).ravel()
    hist /= max(float(hist.sum()), 1.0)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)[14:62, 8:56]
    thumb = cv2.resize(gray, (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
    thumb -= thumb.mean()
    thumb /= max(float(np.linalg.norm(thumb)), 1e-6)
    return FaceDescriptor(hist, thumb.ravel(), np.ascontiguousarray(thumb[:, ::-1]).ravel())


def describe_crop(detector: FaceDetector, crop: np.ndarray) -> FaceDescriptor:
    """Descriptor of the main face of a reference crop.

    A tight crop may be too tight for the detector, so it is retried with a replicated 30 % border; if
    still nothing is found the whole crop is taken as the face box.
    """
    faces = detector.detect(crop)
    if faces:
        return describe(crop, max(faces, key=lambda f: f.area))
    h, w = crop.shape[:2]
    py, px = round(0.3 * h), round(0.3 * w)
    padded = cv2.copyMakeBorder(crop, py, py, px, px, cv2.BORDER_REPLICATE)
    faces = detector.detect(padded)
    if faces:
        return describe(padded, max(faces, key=lambda f: f.area))
    box = (0, 0, w, h)
    return describe(crop, Face(box, landmarks_from_box(box, "dlib"), 0.0, False))


def similarity(a: FaceDescriptor, b: FaceDescriptor) -> float:
    """Appearance similarity in [0, 1] (1 = identical)."""
    hist = float(np.sum(np.sqrt(a.hist * b.hist)))
    corr = float(np.clip(max(np.dot(a.thumb, b.thumb), np.dot(a.thumb, b.mirror)), 0.0, 1.0))
    return 0.5 * hist + 0.5 * corr


def assign(
    faces: list[FaceDescriptor], refs: list[FaceDescriptor], threshold: float = MATCH_THRESHOLD
) -> dict[int, int]:
    """One-to-one assignment {face index: ref index}, best pair first, pairs below ``threshold`` dropped."""
    pairs = sorted(
        ((similarity(f, r), fi, ri) for fi, f in enumerate(faces) for ri, r in enumerate(refs)), reverse=True
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for score, fi, ri in pairs:
        if score < threshold or fi in out or ri in used:
            continue
        out[fi] = ri
        used.add(ri)
    return out
