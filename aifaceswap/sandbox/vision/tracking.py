"""Cheap face tracking for video: a full detection every N frames, landmark tracking in between.

Between full detections each tracked face is followed by re-predicting its 5 landmarks from its last box
moved by its last motion (~1-2 ms, :meth:`FaceDetector.refine`).  When that is implausible, or without a
landmark model, the face is re-detected in a small region around its last box resized so the face is
~110 px (~5 ms, :meth:`FaceDetector.detect_near`).  Landmarks are smoothed over time against jitter.
At a full detection, faces are matched to tracks by box overlap; a track that the full detection
misses must be confirmed by the local detector.  Landmark tracking is also rejected when the aligned
face no longer looks like the previous frame's (16x16 patch correlation < 0.5: the face left or was
covered).  A lost face is not returned (nothing is pasted) but kept for ``coast`` frames, so it keeps
its identity if found again; new faces appear at the next full detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import cv2
import numpy as np

from .detect import FaceDetector
from .faces import Face, box_iou, landmarks_from_box
from .swap import similarity_transform

__all__ = ["VIDEO_MIN_FACE", "FaceTracker", "Track"]

_ids = count()
VIDEO_MIN_FACE = 48
"""Smallest face (px wide) full detections look for in video frames (1.25x scan instead of 1.5x)."""
# A landmark-tracked face must still look like itself: correlation of 16x16 aligned grayscale patches.
_MIN_CONSISTENCY = 0.5
_PATCH = landmarks_from_box((2, 2, 14, 14), "dlib")


def _patch(frame: np.ndarray, face: Face) -> np.ndarray:
    """The face aligned on its landmarks, 16x16 grayscale, zero-mean and unit-norm."""
    matrix = similarity_transform(face.landmarks, _PATCH)
    patch = cv2.warpAffine(frame, matrix, (16, 16), flags=cv2.INTER_AREA).astype(np.float32)
    if patch.ndim == 3:
        patch = patch.mean(axis=2)
    patch = patch.ravel() - patch.mean()
    return patch / max(float(np.linalg.norm(patch)), 1e-6)


@dataclass
class Track:
    """A face followed across frames; ``label`` is free for the caller (e.g. the matched reference)."""

    face: Face
    id: int = field(default_factory=lambda: next(_ids))
    misses: int = 0
    label: int | None = None
    motion: tuple[float, float] = (0.0, 0.0)
    patch: np.ndarray | None = None

    def move_to(self, face: Face, frame: np.ndarray) -> None:
        """Take the new position (smoothed) and remember the motion and the look for the next frame."""
        shift = face.landmarks.mean(axis=0) - self.face.landmarks.mean(axis=0)
        self.motion = (float(shift[0]), float(shift[1]))
        self.face = _smooth(self.face, face)
        self.patch = _patch(frame, self.face)
        self.misses = 0


def _smooth(old: Face, new: Face) -> Face:
    """Blend landmarks: small moves (jitter) are damped, large moves are followed at once."""
    eye = max(new.eye_distance, 1.0)
    moved = float(np.mean(np.linalg.norm(new.landmarks - old.landmarks, axis=1))) / eye
    weight = float(np.clip(moved / 0.08, 0.4, 1.0))
    pts = (weight * new.landmarks + (1.0 - weight) * old.landmarks).astype(np.float32)
    return Face(new.box, pts, new.score, new.exact)


class FaceTracker:
    """Follows every face of a video; call :meth:`update` once per frame, in order."""

    def __init__(
        self, detector: FaceDetector, *, detect_every: int = 8, coast: int = 2, min_face: int = VIDEO_MIN_FACE
    ) -> None:
        self.detector = detector
        self.min_face = min_face
        self.detect_every = max(1, detect_every)
        self.coast = coast
        self.tracks: list[Track] = []
        self._last_full: int | None = None

    def _due(self, index: int) -> bool:
        if self._last_full is None:
            return True
        wait = self.detect_every if self.tracks else max(1, self.detect_every // 2)
        return index - self._last_full >= wait

    def update(self, index: int, frame: np.ndarray) -> tuple[list[Track], bool]:
        """Faces seen in this frame, and whether a full detection ran (new tracks may have appeared).

        A track that was lost in this frame is kept (for ``coast`` frames, to be found again with its
        label) but not returned, so nothing is pasted where the face may no longer be.
        """
        full = self._due(index)
        if full:
            self._last_full = index
            self._associate(self.detector.detect(frame, min_face=self.min_face), frame)
        else:
            for track in self.tracks:
                self._follow(track, frame, cheap=True)
        self.tracks = [t for t in self.tracks if t.misses <= self.coast]
        return [t for t in self.tracks if t.misses == 0], full

    def _follow(self, track: Track, frame: np.ndarray, cheap: bool = False) -> None:
        found = self.detector.refine(frame, track.face, track.motion) if cheap else None
        if (
            found is not None
            and track.patch is not None
            and float(np.dot(_patch(frame, found), track.patch)) < _MIN_CONSISTENCY
        ):
            found = None  # the landmarks landed on something that does not look like the face
        if found is None:
            found = self.detector.detect_near(frame, track.face)
        if found is None:
            track.misses += 1
            track.motion = (0.0, 0.0)
        else:
            track.move_to(found, frame)

    def _associate(self, faces: list[Face], frame: np.ndarray) -> None:
        """Greedy IoU matching of fresh detections to the existing tracks."""
        pairs = sorted(
            (
                (box_iou(track.face.box, face.box), ti, fi)
                for ti, track in enumerate(self.tracks)
                for fi, face in enumerate(faces)
            ),
            reverse=True,
        )
        used_t: set[int] = set()
        used_f: set[int] = set()
        for iou, ti, fi in pairs:
            if iou < 0.3 or ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            self.tracks[ti].move_to(faces[fi], frame)
        for ti, track in enumerate(self.tracks):
            if ti not in used_t:
                self._follow(track, frame)
        for fi, face in enumerate(faces):
            if fi not in used_f:
                self.tracks.append(Track(face, patch=_patch(frame, face)))
