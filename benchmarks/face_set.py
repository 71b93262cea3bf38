"""A labelled face-detection set made at run time from real photos that ship inside installed packages.

Faces (head-and-shoulders crops, face boxes read off by hand on a 10 px grid, cheek to cheek and
forehead below the hair to chin):

* ``skimage.data.astronaut()``: Eileen Collins, NASA photo, public domain;
* matplotlib's ``grace_hopper.jpg``: Grace Hopper, US Navy photo, public domain;
* mahotas' ``demos/data/luispedro.jpg``: Luis Pedro Coelho, mahotas' author, shipped under mahotas' MIT
  licence.

Each face is also used mirrored and re-lit (gamma and colour cast), so the set holds 3 people in 12 looks.
Backgrounds are mosaics of random crops (random scales) of face-free photos that ship in scikit-image
(coffee, rocket, coins, brick, grass, gravel, Hubble deep field, immunohistochemistry, retina, horse,
clock, text: CC0, public domain or "no known copyright restrictions" per their docstrings).  Faces are pasted with a
feathered elliptical head mask at known boxes; a picture holds several faces of random widths that never
overlap.  Everything depends on one seed: tune on one seed, report on another.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import skimage.data
import skimage.util
from matplotlib import cbook

Box = tuple[int, int, int, int]

# (head region, face box) in the original photo's pixels, read off by hand (see the module doc).
_ASTRONAUT = ((100, 0, 350, 300), (180, 80, 270, 188))
_GRACE = ((80, 40, 450, 460), (158, 138, 372, 328))
_LUISPEDRO = ((0, 20, 300, 377), (45, 95, 232, 316))
_BACKGROUNDS = (
    "coffee",
    "rocket",
    "coins",
    "brick",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "horse",
    "clock",
    "text",
)


@dataclass(frozen=True)
class Head:
    """A head-and-shoulders crop and its face box inside it."""

    name: str
    image: np.ndarray
    face: Box


@dataclass(frozen=True)
class Picture:
    """A labelled picture: BGR image and the true face boxes (empty for a face-free picture)."""

    image: np.ndarray
    faces: list[Box]


def _bgr(rgb: np.ndarray) -> np.ndarray:
    rgb = skimage.util.img_as_ubyte(rgb)
    if rgb.ndim == 2:
        return cv2.cvtColor(rgb, cv2.COLOR_GRAY2BGR)
    if rgb.shape[2] == 4:
        rgb = rgb[:, :, :3]
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _luispedro() -> np.ndarray:
    import mahotas

    path = os.path.join(os.path.dirname(mahotas.__file__), "demos", "data", "luispedro.jpg")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(path)
    return image


@cache
def people() -> tuple[Head, ...]:
    """The three people, each as photographed (no variants)."""
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)
    heads = []
    for name, image, (region, face) in (
        ("astronaut", _bgr(skimage.data.astronaut()), _ASTRONAUT),
        ("grace_hopper", grace, _GRACE),
        ("luispedro", _luispedro(), _LUISPEDRO),
    ):
        x1, y1, x2, y2 = region
        crop = np.ascontiguousarray(image[y1:y2, x1:x2])
        heads.append(Head(name, crop, (face[0] - x1, face[1] - y1, face[2] - x1, face[3] - y1)))
    return tuple(heads)


def _relit(image: np.ndarray, gamma: float, cast: tuple[float, float, float]) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255)
    out = cv2.LUT(image, lut.astype(np.uint8)).astype(np.float32) * np.array(cast, np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


@cache
def looks() -> tuple[Head, ...]:
    """Every person as photographed, mirrored, darker and warmer, brighter and cooler."""
    out = []
    for head in people():
        w = head.image.shape[1]
        x1, y1, x2, y2 = head.face
        mirrored = Head(head.name, np.ascontiguousarray(head.image[:, ::-1]), (w - x2, y1, w - x1, y2))
        out += [
            head,
            mirrored,
            Head(head.name, _relit(head.image, 1.4, (0.85, 0.95, 1.1)), head.face),
            Head(head.name, _relit(mirrored.image, 0.75, (1.1, 1.0, 0.9)), mirrored.face),
        ]
    return tuple(out)


@cache
def _background_photos() -> tuple[np.ndarray, ...]:
    return tuple(_bgr(getattr(skimage.data, name)()) for name in _BACKGROUNDS)


def background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A face-free ``size`` (width, height) mosaic of random crops of package photos at random scales."""
    width, height = size
    canvas = np.empty((height, width, 3), np.uint8)
    photos = _background_photos()
    tile = int(rng.integers(max(128, width // 6), max(129, width // 2)))
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            photo = photos[int(rng.integers(len(photos)))]
            scale = float(rng.uniform(0.5, 3.0)) * tile / min(photo.shape[:2])
            big = cv2.resize(photo, None, fx=max(scale, 1.0), fy=max(scale, 1.0), interpolation=cv2.INTER_LINEAR)
            ph, pw = big.shape[:2]
            th, tw = min(tile, height - y), min(tile, width - x)
            if ph < th or pw < tw:
                big = cv2.resize(big, (max(pw, tw), max(ph, th)), interpolation=cv2.INTER_LINEAR)
                ph, pw = big.shape[:2]
            oy, ox = int(rng.integers(0, ph - th + 1)), int(rng.integers(0, pw - tw + 1))
            canvas[y : y + th, x : x + tw] = big[oy : oy + th, ox : ox + tw]
    return cv2.GaussianBlur(canvas, (3, 3), 0)


def paste(canvas: np.ndarray, head: Head, width: int, at: tuple[int, int]) -> Box:
    """Paste ``head`` scaled so its face is ``width`` px wide, face box top-left at ``at``; the face box."""
    fx1, fy1, fx2, fy2 = head.face
    scale = width / (fx2 - fx1)
    small = cv2.resize(head.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    ox, oy = round(at[0] - fx1 * scale), round(at[1] - fy1 * scale)
    mask = np.zeros((sh, sw), np.float32)
    cx, cy = (fx1 + fx2) / 2 * scale, (fy1 + fy2) / 2 * scale
    axes = (round(0.9 * (fx2 - fx1) * scale), round(0.95 * (fy2 - fy1) * scale))
    cv2.ellipse(mask, (round(cx), round(cy)), axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * width))[:, :, None]
    h, w = canvas.shape[:2]
    x1, y1, x2, y2 = max(0, ox), max(0, oy), min(w, ox + sw), min(h, oy + sh)
    part = small[y1 - oy : y2 - oy, x1 - ox : x2 - ox].astype(np.float32)
    alpha = mask[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
    region = canvas[y1:y2, x1:x2].astype(np.float32)
    canvas[y1:y2, x1:x2] = np.clip(alpha * part + (1 - alpha) * region, 0, 255).astype(np.uint8)
    return (
        round(at[0]),
        round(at[1]),
        round(at[0] + (fx2 - fx1) * scale),
        round(at[1] + (fy2 - fy1) * scale),
    )


def _free(box: Box, taken: list[Box], margin: float) -> bool:
    x1, y1, x2, y2 = box
    grow = margin * (x2 - x1)
    for t in taken:
        tg = margin * (t[2] - t[0])
        if x1 - grow < t[2] + tg and t[0] - tg < x2 + grow and y1 - grow < t[3] + tg and t[1] - tg < y2 + grow:
            return False
    return True


def picture(
    size: tuple[int, int], widths: list[int], rng: np.random.Generator, heads: tuple[Head, ...] | None = None
) -> Picture:
    """A ``size`` background with one face per entry of ``widths`` (random looks, random free places)."""
    heads = heads or looks()
    canvas = background(size, rng)
    width, height = size
    boxes: list[Box] = []
    for face_width in widths:
        head = heads[int(rng.integers(len(heads)))]
        aspect = (head.face[3] - head.face[1]) / (head.face[2] - head.face[0])
        face_height = round(face_width * aspect)
        for _ in range(200):
            x = int(rng.integers(face_width // 2, max(face_width, width - 3 * face_width // 2)))
            y = int(rng.integers(face_height // 3, max(face_height // 2, height - 3 * face_height // 2)))
            box = (x, y, x + face_width, y + face_height)
            if _free(box, boxes, 0.7):
                boxes.append(paste(canvas, head, face_width, (x, y)))
                break
    return Picture(canvas, boxes)


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Walker:
    """How one person moves in a clip: face width, path, tilt and nod, all periodic in the frame index."""

    head: Head
    width: float
    center: tuple[float, float]
    reach: tuple[float, float]
    phase: float


def _pose(walker: Walker, i: int) -> tuple[float, float, float, float, float]:
    """(centre x, centre y, face width, tilt in degrees, nod squash) of ``walker`` at frame ``i``."""
    t = i / 25.0 + walker.phase
    cx = walker.center[0] + walker.reach[0] * math.sin(0.9 * t)
    cy = walker.center[1] + walker.reach[1] * math.sin(1.7 * t + 1.0)
    width = walker.width * (1.0 + 0.25 * math.sin(0.6 * t))  # walks towards and away from the camera
    return cx, cy, width, 9.0 * math.sin(1.3 * t), 1.0 - 0.08 * abs(math.sin(2.1 * t))


def placement(walker: Walker, i: int) -> tuple[np.ndarray, Box]:
    """The 2x3 matrix putting ``walker``'s head in frame ``i``, and its face box there (bounding box)."""
    cx, cy, face_width, tilt, nod = _pose(walker, i)
    fx1, fy1, fx2, fy2 = walker.head.face
    centre = ((fx1 + fx2) / 2, (fy1 + fy2) / 2)
    matrix = cv2.getRotationMatrix2D(centre, tilt, face_width / (fx2 - fx1))
    matrix[1, :2] *= nod
    matrix[:, 2] += np.array([cx, cy]) - matrix[:, :2] @ np.array(centre)
    corners = np.array([[fx1, fy1, 1], [fx2, fy1, 1], [fx1, fy2, 1], [fx2, fy2, 1]], np.float64) @ matrix.T
    box = (
        round(corners[:, 0].min()),
        round(corners[:, 1].min()),
        round(corners[:, 0].max()),
        round(corners[:, 1].max()),
    )
    return matrix, box


def clip_frame(background: np.ndarray, walkers: list[Walker], i: int) -> tuple[np.ndarray, list[Box]]:
    """Frame ``i``: every walker's head tilted, nodding, scaled and moved over a slowly panning background.

    Returns the frame and each walker's face box (the bounding box of the transformed hand box).
    """
    height, width = background.shape[:2]
    pan = round(40 * math.sin(i / 60.0)) + 40
    frame = np.ascontiguousarray(np.roll(background, pan, axis=1))
    boxes = []
    for walker in walkers:
        matrix, box = placement(walker, i)
        hh, hw = walker.head.image.shape[:2]
        corners = np.array([[0, 0, 1], [hw, 0, 1], [0, hh, 1], [hw, hh, 1]], np.float64) @ matrix.T
        x1, y1 = max(0, int(corners[:, 0].min())), max(0, int(corners[:, 1].min()))
        x2, y2 = min(width, int(corners[:, 0].max()) + 1), min(height, int(corners[:, 1].max()) + 1)
        if x2 <= x1 or y2 <= y1:
            boxes.append(box)
            continue
        local = matrix.copy()
        local[:, 2] -= (x1, y1)
        fx1, fy1, fx2, fy2 = walker.head.face
        head = cv2.warpAffine(walker.head.image, local, (x2 - x1, y2 - y1), flags=cv2.INTER_AREA)
        mask = np.zeros((hh, hw), np.float32)
        axes = (round(0.9 * (fx2 - fx1)), round(0.95 * (fy2 - fy1)))
        cv2.ellipse(mask, (round((fx1 + fx2) / 2), round((fy1 + fy2) / 2)), axes, 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.06 * (fx2 - fx1))
        alpha = cv2.warpAffine(mask, local, (x2 - x1, y2 - y1))[:, :, None]
        region = frame[y1:y2, x1:x2]
        frame[y1:y2, x1:x2] = (alpha * head + (1 - alpha) * region).astype(np.uint8)
        boxes.append(box)
    return frame, boxes


def walkers(size: tuple[int, int], face_width: float) -> list[Walker]:
    """Two people (the astronaut and mahotas' author) crossing a ``size`` frame, faces ~``face_width`` px."""
    width, height = size
    astronaut, _, luispedro = people()
    return [
        Walker(astronaut, face_width, (0.3 * width, 0.45 * height), (0.18 * width, 0.12 * height), 0.0),
        Walker(luispedro, 1.2 * face_width, (0.7 * width, 0.55 * height), (0.15 * width, 0.15 * height), 2.0),
    ]
