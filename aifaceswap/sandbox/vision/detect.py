"""Face detection and 5-point landmarks, with a fallback chain: dlib HOG (+ 5-point model) -> OpenCV Haar.

* ``dlib-hog+5pt``: dlib's HOG frontal-face detector (no model file needed) and the CC0 5-point landmark
  model ``shape_predictor_5_face_landmarks.dat`` shipped by the ``face-recognition-models`` package.
* ``dlib-hog``: dlib is installed but the landmark model is not; landmarks are estimated from the box.
* ``haar``: dlib is not installed; OpenCV's ``haarcascade_frontalface_default.xml`` (``cv2.data``) is
  used and landmarks are estimated from the box.

The 68-point model of ``face-recognition-models`` is never loaded: its training data (iBUG 300-W)
excludes commercial use.

Thread safety: dlib's detector and OpenCV's cascade keep per-call scratch state, so every detector
object is used by one thread at a time; a small pool hands out instances (one extra instance is
built, ~0.5 s for dlib, when two threads detect at the same moment).  The shape predictor is
read-only and shared.
"""

from __future__ import annotations

import logging
import math
import os
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.util import find_spec
from typing import Any

import cv2
import numpy as np

from .faces import Box, Face, box_iou, clip_box, expand_box, landmarks_from_box
from .scan import Pass, plan

__all__ = ["FaceDetector"]

log = logging.getLogger("aifaceswap.sandbox.vision")

_LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"
_HAAR_MODEL = "haarcascade_frontalface_default.xml"
# Size (px) a face is resized to when re-detecting it near its last position (dlib HOG finds >= 80 px).
_TRACK_FACE_SIZE = 110
# Finds scoring from threshold - _CONFIRM_BAND up to the threshold are re-detected with the face enlarged
# to each of _CONFIRM_SIZES px and kept if they reach the threshold there (small, tilted faces often do).
_CONFIRM_BAND = 0.5
_CONFIRM_SIZES = (90, 120)


class _Pool:
    """Hands out detector instances, one thread at a time each; builds more on demand."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._free.put(factory())

    @contextmanager
    def get(self) -> Iterator[Any]:
        try:
            item = self._free.get_nowait()
        except queue.Empty:
            item = self._factory()
        try:
            yield item
        finally:
            self._free.put(item)


def _resize(gray: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return gray
    h, w = gray.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)


def _suppress(found: list[tuple[Box, float]]) -> list[tuple[Box, float]]:
    """Non-maximum suppression: of boxes overlapping by IoU > 0.3, the best scoring one."""
    kept: list[tuple[Box, float]] = []
    for box, score in sorted(found, key=lambda f: -f[1]):
        if all(box_iou(box, k[0]) <= 0.3 for k in kept):
            kept.append((box, score))
    return kept


def _landmark_model_path() -> str | None:
    """Path of the 5-point model inside ``face_recognition_models`` (found without importing it)."""
    spec = find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "models", _LANDMARK_MODEL)
        if os.path.isfile(path):
            return path
    return None


class FaceDetector:
    """Finds faces down to ``min_face`` px wide (cheek to cheek) and predicts their landmarks.

    Policy (dlib): the HOG detector runs at the scale where a ``min_face`` face is ~60 px (1.5x for the
    default 40 px: small images are upsampled), in strips on ``workers`` threads, plus a whole-image pass
    at a third of that scale for large faces (:mod:`.scan`).  Finds scoring ``threshold`` (0.5; real faces
    ~1-2.5) or more are kept; those scoring from ``threshold - 0.5`` are re-detected on their region
    enlarged so the face is 90 and 120 px, and kept only if they reach ``threshold`` there.  Above 28 Mpx
    at that scale the scale shrinks (a 6000x4000 photo: faces from ~56 px).

    ``min_face=None`` restores the old policy (kept as the benchmarks' baseline): the image is shrunk to
    at most ``max_detect_side ** 2`` pixels, so faces under ~16 % of the side of a square image are
    missed; when nothing is found, one retry at twice the resolution.  The Haar backend always uses it.
    """

    name: str

    def __init__(
        self,
        *,
        min_face: int | None = 40,
        max_detect_side: int = 512,
        backend: str = "auto",
        threshold: float = 0.5,
        workers: int = 2,
    ) -> None:
        if max_detect_side < 64:
            raise ValueError("max_detect_side must be at least 64")
        if min_face is not None and min_face < 16:
            raise ValueError("min_face must be at least 16 (px)")
        self.max_detect_side = max_detect_side
        self.min_face = min_face
        self.workers = max(1, workers)
        # strips of one detection run on these threads (dlib releases the GIL); none start until used
        self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="hog")
        self.threshold = threshold
        self._predictor: Any = None
        self._kind = "dlib"
        if backend not in ("auto", "dlib", "haar"):
            raise ValueError(f"unknown backend {backend!r}; use auto, dlib or haar")
        dlib = None
        if backend in ("auto", "dlib"):
            try:
                import dlib  # type: ignore[import-not-found]
            except ImportError:
                if backend == "dlib":
                    raise
                log.warning("dlib is not installed (pip install dlib-bin): falling back to OpenCV Haar")
        if dlib is not None:
            self._pool = _Pool(dlib.get_frontal_face_detector)
            self._rect = dlib.rectangle
            model = _landmark_model_path()
            if model is None:
                log.warning("face-recognition-models not installed: no landmarks, faces aligned by box")
                self.name = "dlib-hog"
            else:
                self._predictor = dlib.shape_predictor(model)
                self.name = "dlib-hog+5pt"
        else:
            cascades = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if not cascades or not os.path.isfile(os.path.join(cascades, _HAAR_MODEL)):
                raise RuntimeError("no face detector: install dlib-bin, or opencv-python-headless<5")
            path = os.path.join(cascades, _HAAR_MODEL)
            self._pool = _Pool(lambda: cv2.CascadeClassifier(path))
            self._kind = "haar"
            self.name = "haar"
        log.info("face detector backend: %s", self.name)

    @property
    def has_landmarks(self) -> bool:
        return self._predictor is not None

    # -- raw detection on a grayscale image -------------------------------------------------------
    def _raw(self, gray: np.ndarray, threshold: float, min_size: int = 0) -> list[tuple[Box, float]]:
        """Boxes (in ``gray`` pixels) and scores."""
        if self._kind == "haar":
            min_side = max(24, min_size)
            with self._pool.get() as cascade:
                found, _, weights = cascade.detectMultiScale3(
                    gray, 1.1, 5, minSize=(min_side, min_side), outputRejectLevels=True
                )
            return [
                ((int(x), int(y), int(x + w), int(y + h)), float(s))
                for (x, y, w, h), s in zip(found, np.ravel(weights), strict=False)
            ]
        with self._pool.get() as detector:
            rects, scores, _ = detector.run(gray, 0, threshold)
        return [
            ((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(score))
            for r, score in zip(rects, scores, strict=True)
        ]

    def _landmarks(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, bool]:
        """5 landmarks for ``box`` (computed on a small ROI of the full-resolution image)."""
        if self._predictor is None:
            return landmarks_from_box(box, self._kind), False
        h, w = image.shape[:2]
        rx1, ry1, rx2, ry2 = expand_box(box, 0.25, w, h)
        roi = image[ry1:ry2, rx1:rx2]
        gray = roi if roi.ndim == 2 else cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
        x1, y1, x2, y2 = box
        rect = self._rect(x1 - rx1, y1 - ry1, x2 - rx1 - 1, y2 - ry1 - 1)
        shape = self._predictor(np.ascontiguousarray(gray), rect)
        pts = np.array([(p.x + rx1, p.y + ry1) for p in shape.parts()], dtype=np.float32)
        return pts, True

    def _faces(self, image: np.ndarray, boxes: list[tuple[Box, float]]) -> list[Face]:
        faces = []
        for box, score in boxes:
            pts, exact = self._landmarks(image, box)
            faces.append(Face(box, pts, score, exact))
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces

    # -- public ------------------------------------------------------------------------------------
    def detect(self, image: np.ndarray, *, min_face: int | None = None) -> list[Face]:
        """Every face of a BGR (or grayscale) image, sorted left to right (ties: top to bottom).

        ``min_face`` overrides the detector's smallest face width for this call (not with the old policy).
        """
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if self.min_face is not None and self._kind == "dlib":
            return self._faces(image, self._scan(gray, min_face or self.min_face))
        return self._faces(image, self._downscaled(gray))

    def _downscaled(self, gray: np.ndarray) -> list[tuple[Box, float]]:
        """The old policy: detect on a copy of at most ``max_detect_side ** 2`` pixels."""
        h, w = gray.shape[:2]
        scale = min(1.0, self.max_detect_side / math.sqrt(h * w))
        found = self._detect_scaled(gray, scale)
        if not found and scale < 1.0:
            found = self._detect_scaled(gray, min(1.0, 2.0 * scale))
        return found

    def _scan(self, gray: np.ndarray, min_face: int) -> list[tuple[Box, float]]:
        """The scale policy (:mod:`.scan`): strips on worker threads, then confirmation of weak finds."""
        h, w = gray.shape[:2]
        passes = plan(w, h, min_face, strips=self.workers)
        resized = {p.scale: _resize(gray, p.scale) for p in passes}
        low = self.threshold - _CONFIRM_BAND

        def run(p: Pass) -> list[tuple[Box, float]]:
            part = np.ascontiguousarray(resized[p.scale][p.top : p.bottom])
            found = self._raw(part, low)
            inv = 1.0 / p.scale
            return [
                (clip_box((b[0] * inv, (b[1] + p.top) * inv, b[2] * inv, (b[3] + p.top) * inv), w, h), s)
                for b, s in found
            ]

        results = [run(passes[0])] if len(passes) == 1 else list(self._threads.map(run, passes))
        confirmed = []
        for box, score in _suppress([f for r in results for f in r]):
            if score < self.threshold:
                box, score = self._confirm(gray, box)
            if score >= self.threshold:
                confirmed.append((box, score))
        return confirmed

    def _confirm(self, gray: np.ndarray, box: Box) -> tuple[Box, float]:
        """Re-detect a weak find with its face enlarged to each confirmation size; the best overlapping find."""
        h, w = gray.shape[:2]
        rx1, ry1, rx2, ry2 = expand_box(box, 0.6, w, h)
        best: tuple[Box, float] = (box, -math.inf)
        for size in _CONFIRM_SIZES:
            scale = size / max(1, box[2] - box[0])
            roi = _resize(gray[ry1:ry2, rx1:rx2], scale)
            for b, s in self._raw(np.ascontiguousarray(roi), self.threshold):
                mapped = clip_box(
                    (b[0] / scale + rx1, b[1] / scale + ry1, b[2] / scale + rx1, b[3] / scale + ry1), w, h
                )
                if box_iou(mapped, box) > 0.3 and s > best[1]:
                    best = (mapped, s)
        return best

    def _detect_scaled(self, gray: np.ndarray, scale: float) -> list[tuple[Box, float]]:
        h, w = gray.shape[:2]
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        else:
            small, scale = gray, 1.0
        found = self._raw(np.ascontiguousarray(small), self.threshold)
        inverse = 1.0 / scale
        mapped = [(clip_box(tuple(v * inverse for v in b), w, h), s) for b, s in found]  # type: ignore[arg-type]
        return [(b, s) for b, s in mapped if b[2] > b[0] and b[3] > b[1]]

    def face_at(self, image: np.ndarray, box: Box) -> Face:
        """The face in a given box (landmarks predicted inside it)."""
        h, w = image.shape[:2]
        box = clip_box(box, w, h)
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            raise ValueError(f"box {box} is empty inside a {w}x{h} image")
        pts, exact = self._landmarks(image, box)
        return Face(box, pts, 0.0, exact)

    def refine(self, image: np.ndarray, face: Face, motion: tuple[float, float] = (0.0, 0.0)) -> Face | None:
        """Follow ``face`` into a new frame by re-predicting its landmarks (~1 ms; needs the 5-point model).

        The last box, moved by the expected ``motion``, seeds the landmark model; the box then follows
        the landmarks, and the prediction is repeated once on the corrected box if it moved noticeably.
        None when there is no landmark model or the result is implausible (scale jump > 15 %, or a jump
        of more than half the eye distance).
        """
        if self._predictor is None:
            return None
        h, w = image.shape[:2]
        eye = max(face.eye_distance, 1.0)
        current = face.shifted(*motion)
        for _ in range(2):
            box = current.box
            if box[2] - box[0] < 8 or box[3] - box[1] < 8:
                return None
            pts, _ = self._landmarks(image, box)
            moved = Face(box, pts, face.score, True)
            scale = moved.eye_distance / max(current.eye_distance, 1.0)
            shift = pts.mean(axis=0) - current.landmarks.mean(axis=0)
            if not 0.85 <= scale <= 1.18 or float(np.hypot(*shift)) > 0.5 * eye:
                return None
            center = pts.mean(axis=0)
            x1, y1, x2, y2 = box
            new_box = clip_box(
                (
                    center[0] + (x1 + shift[0] - center[0]) * scale,
                    center[1] + (y1 + shift[1] - center[1]) * scale,
                    center[0] + (x2 + shift[0] - center[0]) * scale,
                    center[1] + (y2 + shift[1] - center[1]) * scale,
                ),
                w,
                h,
            )
            current = Face(new_box, pts, face.score, True)
            if float(np.hypot(*shift)) < 0.03 * eye:  # the seed box was already in place
                break
        return current

    def detect_near(self, image: np.ndarray, face: Face) -> Face | None:
        """Re-detect ``face`` in a small region around its last position (cheap; used to track in video).

        The region is resized (up, for small faces) so the face is about 110 px; the detection overlapping
        the old box best is kept (with a lower score threshold than a full detection: the position is a
        strong prior).
        """
        h, w = image.shape[:2]
        rx1, ry1, rx2, ry2 = expand_box(face.box, 0.5, w, h)
        if rx2 - rx1 < 8 or ry2 - ry1 < 8:
            return None
        roi = image[ry1:ry2, rx1:rx2]
        gray = roi if roi.ndim == 2 else cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
        scale = _TRACK_FACE_SIZE / max(1, face.width)
        if self._kind == "haar" or self.min_face is None:
            scale = min(1.0, scale)  # the old policy only shrinks
        gray = _resize(gray, scale)
        min_size = int(0.6 * face.width * scale)
        found = self._raw(np.ascontiguousarray(gray), min(0.0, self.threshold), min_size)
        best: tuple[float, Box, float] | None = None
        for box, score in found:
            mapped = clip_box(
                (box[0] / scale + rx1, box[1] / scale + ry1, box[2] / scale + rx1, box[3] / scale + ry1), w, h
            )
            iou = box_iou(mapped, face.box)
            if iou > 0.3 and (best is None or iou > best[0]):
                best = (iou, mapped, score)
        if best is None:
            return None
        return self._faces(image, [(best[1], best[2])])[0]
