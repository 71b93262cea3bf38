"""The :class:`FaceEngine`: detect faces, swap them in images and videos."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .detect import FaceDetector
from .errors import FaceIndexOutOfRange, NoFaceFound, TooManyRefs, VisionError
from .faces import Box, Face, box_iou
from .images import as_bgr
from .matching import FaceDescriptor, assign, describe, describe_crop
from .swap import SourceFace, paste_face, prepare_source
from .tracking import FaceTracker, Track
from .video import VideoInfo, probe_video, transcode

__all__ = ["MAX_REFS", "FaceEngine"]

log = logging.getLogger("aifaceswap.sandbox.vision")

MAX_REFS = 3


class FaceEngine:
    """Classical-CV face detection and face swapping (CPU only, no model download).

    Construction loads the detector and the landmark model once (~0.5 s).  One engine can be shared by
    the threads of a pool: detectors are handed out one per concurrent call (see :mod:`.detect`),
    everything else is stateless; each video call keeps its own tracker.

    ``min_face``: the smallest face width (px) detection must find (:class:`.detect.FaceDetector`);
    ``None`` selects the old policy, detection on a copy downscaled to at most ``max_detect_side ** 2``
    pixels (boxes are mapped back).  ``backend``: ``"auto"`` (dlib HOG, falling back to Haar),
    ``"dlib"`` or ``"haar"``.  ``detect_every``: full detections every N video frames, local tracking in
    between.
    """

    def __init__(
        self,
        *,
        min_face: int | None = 40,
        max_detect_side: int = 512,
        backend: str = "auto",
        detect_every: int = 8,
    ) -> None:
        self._detector = FaceDetector(min_face=min_face, max_detect_side=max_detect_side, backend=backend)
        self.backend: str = self._detector.name
        self.detect_every = detect_every

    @property
    def detector(self) -> FaceDetector:
        """The underlying detector (lower level: :meth:`FaceDetector.refine`, ``detect_near``...)."""
        return self._detector

    # -- images -----------------------------------------------------------------------------------
    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face with its landmarks, sorted left to right (ties: top to bottom)."""
        if image.size == 0:
            return []
        return self._detector.detect(as_bgr(image))

    def detect(self, image: np.ndarray) -> list[Box]:
        """Boxes (x1, y1, x2, y2) of every face, sorted left to right (ties: top to bottom); [] if none."""
        return [f.box for f in self.faces(image)]

    def prepare(self, face_image: np.ndarray, what: str = "face_image") -> SourceFace:
        """The main (largest) face of ``face_image``, ready to paste; raises ``NoFaceFound(what)``."""
        image = as_bgr(face_image)
        return prepare_source(image, self._main_face(image, what))

    def _main_face(self, image: np.ndarray, what: str) -> Face:
        faces = self._detector.detect(image) if image.size else []
        if not faces:
            raise NoFaceFound(what)
        return max(faces, key=lambda f: f.area)

    def _face_for_box(self, image: np.ndarray, box: Box) -> Face:
        """The detected face that best overlaps ``box``, else landmarks predicted inside ``box``."""
        faces = self._detector.detect(image)
        best = max(faces, key=lambda f: box_iou(f.box, box), default=None)
        if best is not None and box_iou(best.box, box) >= 0.4:
            return best
        return self._detector.face_at(image, box)

    def swap(self, target: np.ndarray, face_image: np.ndarray, *, box: Box | None = None) -> np.ndarray:
        """A copy of ``target`` whose main face (or the face at ``box``) is replaced by ``face_image``'s.

        Raises ``NoFaceFound("no face found in source_image")`` / ``("... in face_image")``.
        """
        image = as_bgr(target)
        face = self._main_face(image, "source_image") if box is None else self._face_for_box(image, box)
        source = self.prepare(face_image)
        result = image.copy()
        paste_face(result, face, source)
        return result

    def multi_swap(
        self,
        target: np.ndarray,
        face_images: Sequence[np.ndarray],
        indexes: Sequence[int],
    ) -> np.ndarray:
        """A copy of ``target`` where ``face_images[i]`` replaces face ``indexes[i]`` (0-based)."""
        if len(face_images) != len(indexes):
            raise VisionError(f"{len(face_images)} face images for {len(indexes)} indexes")
        image = as_bgr(target)
        faces = self._detector.detect(image) if image.size else []
        if not faces:
            raise NoFaceFound("source_image")
        for index in indexes:
            if not 0 <= index < len(faces):
                raise FaceIndexOutOfRange(index, len(faces))
        sources = [self.prepare(img, f"face_image[{i}]") for i, img in enumerate(face_images)]
        result = image.copy()
        for index, source in zip(indexes, sources, strict=True):
            paste_face(result, faces[index], source)
        return result

    # -- videos -----------------------------------------------------------------------------------
    def swap_video(self, src: Path, dst: Path, face_image: np.ndarray, *, enhance: int = 0) -> VideoInfo:
        """Replace the main face of every frame of ``src`` by ``face_image``'s; write MP4 to ``dst``.

        The main face is the largest face when faces first appear; it stays the same person while it is
        tracked (a lost track hands over to the largest face then in view).
        Same size, fps and frame count as the source; audio is copied (AAC) or re-encoded to AAC.
        ``enhance`` 1/2 sharpens the pasted face mildly/more (unsharp mask inside the face mask only).
        Raises ``NotAVideo``, ``NoFaceFound("... face_image")``, ``NoFaceFound("... source_video")`` (no
        frame has a face; ``dst`` is then removed).
        """
        _check_enhance(enhance)
        source = self.prepare(face_image)
        probe_video(src)
        tracker = FaceTracker(self._detector, detect_every=self.detect_every)
        swapped = 0
        main_id: int | None = None

        def process(index: int, frame: np.ndarray) -> np.ndarray:
            nonlocal swapped, main_id
            tracks, _ = tracker.update(index, frame)
            if tracks:
                # the main face is the largest when it first appears, and stays the same person while tracked
                main = next((t for t in tracks if t.id == main_id), None) or max(tracks, key=lambda t: t.face.area)
                main_id = main.id
                swapped += paste_face(frame, main.face, source, enhance=enhance)
            return frame

        transcode(src, dst, process)
        if not swapped:
            Path(dst).unlink(missing_ok=True)
            raise NoFaceFound("source_video")
        return probe_video(dst)

    def swap_video_multi(
        self,
        src: Path,
        dst: Path,
        refs: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        enhance: int = 0,
    ) -> VideoInfo:
        """Replace, in every frame, each face that looks like a ``face_ref`` crop by its new face.

        ``refs``: 1 to 3 pairs ``(face_ref crop, new face image)``.  Faces are matched to the crops by
        appearance (:mod:`.matching`) at every full detection and keep their match while tracked;
        unmatched faces are left untouched.  Raises ``TooManyRefs``, ``NotAVideo``,
        ``NoFaceFound("... ref_info[i].face_url")`` and ``NoFaceFound("... source_video")`` (no face in
        any frame; a video whose faces match no reference is written unchanged, with a warning).
        """
        _check_enhance(enhance)
        if not refs:
            raise VisionError("at least one face reference is needed")
        if len(refs) > MAX_REFS:
            raise TooManyRefs(len(refs), MAX_REFS)
        sources = [self.prepare(new, f"ref_info[{i}].face_url") for i, (_, new) in enumerate(refs)]
        wanted = [describe_crop(self._detector, as_bgr(crop)) for crop, _ in refs]
        probe_video(src)
        tracker = FaceTracker(self._detector, detect_every=self.detect_every)
        seen = swapped = 0

        def process(index: int, frame: np.ndarray) -> np.ndarray:
            nonlocal seen, swapped
            tracks, full = tracker.update(index, frame)
            seen += bool(tracks)
            if full and tracks:
                _label(tracks, frame, wanted)
            for track in tracks:
                if track.label is not None:
                    swapped += paste_face(frame, track.face, sources[track.label], enhance=enhance)
            return frame

        transcode(src, dst, process)
        if not seen:
            Path(dst).unlink(missing_ok=True)
            raise NoFaceFound("source_video")
        if not swapped:
            log.warning("no face of %s matched the face references; video left unchanged", Path(src).name)
        return probe_video(dst)


def _label(tracks: list[Track], frame: np.ndarray, refs: list[FaceDescriptor]) -> None:
    """Set each track's label to the reference it matches (or None)."""
    descriptors = [describe(frame, t.face) for t in tracks]
    matches = assign(descriptors, refs)
    for i, track in enumerate(tracks):
        track.label = matches.get(i)


def _check_enhance(enhance: int) -> None:
    if enhance not in (0, 1, 2):
        raise VisionError(f"enhance must be 0, 1 or 2, not {enhance!r}")
