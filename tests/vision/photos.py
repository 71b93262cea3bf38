"""Public-domain face photos that ship inside scikit-image / matplotlib, and synthetic test videos.

The face boxes below were established ONCE BY HAND: each photo was drawn with a 10 px grid at 4x (astronaut)
and 2.5x (Grace Hopper) zoom and the face read off as cheek-to-cheek, forehead (below hair / hat) to chin,
then drawn onto the photo and checked by eye.  They are independent of the detector under test.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data
from matplotlib import cbook

Box = tuple[int, int, int, int]

ASTRONAUT_FACE: Box = (180, 80, 270, 188)  # skimage.data.astronaut(), 512x512, by hand (see module doc)
GRACE_FACE: Box = (158, 138, 372, 328)  # matplotlib grace_hopper.jpg, 512x600, by hand (see module doc)


@cache
def _astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@cache
def _grace() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        return cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)


def astronaut() -> np.ndarray:
    """Eileen Collins, BGR 512x512, one face at :data:`ASTRONAUT_FACE`."""
    return _astronaut().copy()


def grace_hopper() -> np.ndarray:
    """Grace Hopper, BGR 600x512 (HxW), one face at :data:`GRACE_FACE`."""
    return _grace().copy()


def cat() -> np.ndarray:
    """Chelsea the cat (no human face)."""
    return cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR)


def coffee() -> np.ndarray:
    """A cup of coffee (no face)."""
    return cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def crop_resize(
    image: np.ndarray,
    region: Box,
    face: Box,
    height: int,
    flip: bool = False,
) -> tuple[np.ndarray, Box]:
    """Crop ``region``, resize to ``height`` (keeping the aspect), optionally mirror; map ``face`` along."""
    x1, y1, x2, y2 = region
    scale = height / (y2 - y1)
    width = round((x2 - x1) * scale)
    out = cv2.resize(image[y1:y2, x1:x2], (width, height), interpolation=cv2.INTER_AREA)
    fx1, fy1, fx2, fy2 = (
        (face[0] - x1) * scale,
        (face[1] - y1) * scale,
        (face[2] - x1) * scale,
        (face[3] - y1) * scale,
    )
    if flip:
        out = np.ascontiguousarray(out[:, ::-1])
        fx1, fx2 = width - fx2, width - fx1
    return out, (round(fx1), round(fy1), round(fx2), round(fy2))


ASTRONAUT_HEAD: Box = (100, 0, 350, 300)  # head-and-shoulders regions used to build tiles and videos
GRACE_HEAD: Box = (80, 40, 450, 460)


def tiled(height: int = 300) -> tuple[np.ndarray, list[Box]]:
    """[astronaut | Grace Hopper | astronaut mirrored] side by side, and the three hand boxes mapped in."""
    parts = [
        crop_resize(_astronaut(), ASTRONAUT_HEAD, ASTRONAUT_FACE, height),
        crop_resize(_grace(), GRACE_HEAD, GRACE_FACE, height),
        crop_resize(_astronaut(), ASTRONAUT_HEAD, ASTRONAUT_FACE, height, flip=True),
    ]
    boxes: list[Box] = []
    offset = 0
    for image, (x1, y1, x2, y2) in parts:
        boxes.append((x1 + offset, y1, x2 + offset, y2))
        offset += image.shape[1]
    return np.hstack([p[0] for p in parts]), boxes


def write_video(
    path: Path,
    frame: Callable[[int], np.ndarray],
    count: int,
    *,
    fps: int = 25,
    audio: bool = True,
) -> Path:
    """Write an MP4 (H.264) of ``count`` frames ``frame(i)`` (BGR) plus, optionally, a 440 Hz AAC tone."""
    first = frame(0)
    height, width = first.shape[:2]
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        sound = out.add_stream("aac", rate=44100) if audio else None
        for i in range(count):
            image = first if i == 0 else frame(i)
            vf = av.VideoFrame.from_ndarray(image, format="bgr24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
        if sound is not None:
            _write_tone(out, sound, count / fps)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate = 44100
    samples = int(rate * seconds)
    t = np.arange(samples) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = tone[start : start + 1024]
        af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        af.sample_rate = rate
        af.pts = start
        af.time_base = Fraction(1, rate)
        out.mux(stream.encode(af))
    out.mux(stream.encode(None))


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video, BGR."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def on_canvas(head: np.ndarray, size: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    """``head`` pasted at ``at`` (x, y) on a plain grey canvas of ``size`` (width, height)."""
    width, height = size
    canvas = np.full((height, width, 3), 96, np.uint8)
    x, y = at
    h, w = min(head.shape[0], height - y), min(head.shape[1], width - x)
    canvas[y : y + h, x : x + w] = head[:h, :w]
    return canvas


# Test videos.  Faces must be >= ~90 px for the HOG detector, so the heads are scaled up a little.
FACE_VIDEO_SIZE = (480, 360)
FACE_VIDEO_FRAMES = 50  # 2 s at 25 fps
PAIR_VIDEO_SIZE = (720, 360)
PAIR_VIDEO_FRAMES = 30


def face_video_frame(i: int) -> tuple[np.ndarray, Box]:
    """Frame ``i`` of the one-person video (the astronaut drifting right 2 px a frame) and her face box."""
    head, face = crop_resize(astronaut(), ASTRONAUT_HEAD, ASTRONAUT_FACE, 360)
    x = 60 + 2 * i
    frame = on_canvas(head, FACE_VIDEO_SIZE, (x, 0))
    return frame, (face[0] + x, face[1], face[2] + x, face[3])


def pair_video_frame(i: int) -> tuple[np.ndarray, Box, Box]:
    """Frame ``i`` of the two-person video: astronaut (A) on the left, Grace Hopper (B) on the right."""
    a_head, a_face = crop_resize(astronaut(), ASTRONAUT_HEAD, ASTRONAUT_FACE, 360)
    b_head, b_face = crop_resize(grace_hopper(), GRACE_HEAD, GRACE_FACE, 360)
    ax, bx = 10 + i, 390 - i
    frame = on_canvas(a_head, PAIR_VIDEO_SIZE, (ax, 0))
    frame[:, bx : bx + b_head.shape[1]] = b_head[:, : PAIR_VIDEO_SIZE[0] - bx]
    return (
        frame,
        (a_face[0] + ax, a_face[1], a_face[2] + ax, a_face[3]),
        (b_face[0] + bx, b_face[1], b_face[2] + bx, b_face[3]),
    )


# Canonical positions of the 5 landmarks (dlib order) in a 64x64 aligned face; the inner face (brows to
# mouth, cheek to cheek) is what :func:`aligned` keeps.
_TEMPLATE = np.array([[45, 24], [37, 24], [19, 24], [27, 24], [32, 38]], np.float32)


def aligned(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The inner face of ``image`` aligned on ``landmarks``: grayscale, zero-mean, unit-variance."""
    matrix, _ = cv2.estimateAffinePartial2D(landmarks, _TEMPLATE, method=cv2.LMEDS)
    crop = cv2.warpAffine(image, matrix, (64, 64))
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)[16:46, 18:46]
    return (gray - gray.mean()) / (gray.std() + 1e-6)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def swap_distances(engine, before: np.ndarray, after: np.ndarray, new: np.ndarray, box: Box) -> tuple[float, float]:
    """(distance to the new face, distance to the old face) of the face at ``box`` of ``after``.

    ``before`` is the same picture before the swap (its landmarks align both), ``new`` the photo of the
    new face.  An unchanged face gives (large, 0); a real swap gives a first figure under the second.
    """
    face = max(engine.faces(before), key=lambda f: iou(f.box, box))
    assert iou(face.box, box) >= 0.3, f"no face found at {box} to compare"
    new_face = max(engine.faces(new), key=lambda f: f.area)
    got = aligned(after, face.landmarks)
    return distance(got, aligned(new, new_face.landmarks)), distance(got, aligned(before, face.landmarks))


def stamp(frame: np.ndarray, number: int) -> np.ndarray:
    """``frame`` with ``number`` (0-255) written as 8 black/white 12x12 blocks in its top-left corner."""
    for bit in range(8):
        y, x = 12 * (bit // 2), 12 * (bit % 2)
        frame[y : y + 12, x : x + 12] = 255 if number >> bit & 1 else 0
    return frame


def read_stamp(frame: np.ndarray) -> int:
    """The number :func:`stamp` wrote (read from each block's centre, robust to lossy encoding)."""
    return sum(
        1 << bit
        for bit in range(8)
        if frame[12 * (bit // 2) + 3 : 12 * (bit // 2) + 9, 12 * (bit % 2) + 3 : 12 * (bit % 2) + 9].mean() > 128
    )


def other_shot(image: np.ndarray, region: Box) -> np.ndarray:
    """A different picture of the same person: ``region`` cropped, mirrored, darker and re-lit warmer."""
    x1, y1, x2, y2 = region
    crop = np.ascontiguousarray(image[y1:y2, x1:x2, :][:, ::-1])
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** 1.3, 0, 255).astype(np.uint8)
    warm = cv2.LUT(crop, lut).astype(np.float32) * np.array([0.9, 1.0, 1.08], np.float32)
    return cv2.resize(np.clip(warm, 0, 255).astype(np.uint8), None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
