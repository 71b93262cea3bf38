"""The :class:`Face` record and the geometry helpers shared by detection, swapping and tracking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Box", "Face", "box_iou", "clip_box", "expand_box", "landmarks_from_box"]

Box = tuple[int, int, int, int]
"""x1, y1, x2, y2 in pixels of the input image (x2/y2 exclusive)."""

# Landmark order of dlib's 5-point model: 0/1 outer/inner corner of the eye on the image's right,
# 2/3 outer/inner corner of the eye on the image's left, 4 base of the nose.
RIGHT_EYE = (0, 1)
LEFT_EYE = (2, 3)
NOSE = 4

# Where the 5 points sit inside a detector box, as fractions of its width/height, measured on the
# astronaut and Grace Hopper photos (dlib HOG boxes are tight around eyes-to-mouth; Haar boxes also
# include the forehead).  Used to align by box when no landmark model is available.
_TEMPLATES: dict[str, tuple[float, float, float, float, float, float]] = {
    # eye-centre x (image left, image right), eye y, nose x, nose y, half eye width
    "dlib": (0.285, 0.725, 0.24, 0.51, 0.57, 0.085),
    "haar": (0.30, 0.70, 0.39, 0.50, 0.70, 0.07),
}


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face: its box, its 5 landmarks (dlib order, float32 (5, 2)) and a detector score.

    ``exact`` is False when the landmarks were estimated from the box (no landmark model available).
    """

    box: Box
    landmarks: np.ndarray
    score: float = 0.0
    exact: bool = True

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    @property
    def eye_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """(image-left eye centre, image-right eye centre)."""
        pts = self.landmarks
        return pts[list(LEFT_EYE)].mean(axis=0), pts[list(RIGHT_EYE)].mean(axis=0)

    @property
    def eye_distance(self) -> float:
        left, right = self.eye_centers
        return float(np.hypot(*(right - left)))

    def shifted(self, dx: float, dy: float, scale: float = 1.0) -> Face:
        """The same face moved by (dx, dy) and scaled about the origin (maps ROI coords to image coords)."""
        x1, y1, x2, y2 = self.box
        box = (
            round(x1 * scale + dx),
            round(y1 * scale + dy),
            round(x2 * scale + dx),
            round(y2 * scale + dy),
        )
        pts = (self.landmarks * scale + np.array([dx, dy], np.float32)).astype(np.float32)
        return Face(box, pts, self.score, self.exact)


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    """Round a box and clip it to an image of ``width`` x ``height``."""
    x1, y1, x2, y2 = box
    return (
        int(min(max(round(x1), 0), width)),
        int(min(max(round(y1), 0), height)),
        int(min(max(round(x2), 0), width)),
        int(min(max(round(y2), 0), height)),
    )


def expand_box(box: Box, factor: float, width: int, height: int) -> Box:
    """Grow a box by ``factor`` of its size on every side, clipped to the image."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * factor, (y2 - y1) * factor
    return clip_box((x1 - dx, y1 - dy, x2 + dx, y2 + dy), width, height)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def landmarks_from_box(box: Box, kind: str = "dlib") -> np.ndarray:
    """Estimate the 5 landmarks of an upright frontal face from its detector box (``kind``: dlib | haar)."""
    lx, rx, ey, nx, ny, half = _TEMPLATES[kind]
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    pts = [
        (rx + half, ey),
        (rx - half, ey),
        (lx - half, ey),
        (lx + half, ey),
        (nx, ny),
    ]
    return np.array([(x1 + fx * w, y1 + fy * h) for fx, fy in pts], dtype=np.float32)
