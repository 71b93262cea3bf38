"""Paste a prepared source face onto a target face: align, colour-match, blend, optionally sharpen.

All work happens in a region of interest (ROI) around the target face, so the cost does not depend on
the size of the target image, and pixels outside the face mask are left bit-for-bit unchanged.

* Alignment: a similarity transform (rotation + uniform scale + translation) from the source's 5
  landmarks to the target's, ``cv2.estimateAffinePartial2D``; with box-estimated landmarks (no landmark
  model) this reduces to aligning the boxes.
* Mask: an ellipse in the target's face frame (from the eye line and the nose), covering brows to
  below the mouth and cheek to cheek.
* Colour: per-channel mean/std transfer in YCrCb (statistics inside the mask), applied as one 3x4
  colour matrix on BGR pixels.
* Blend: alpha blend (``cv2.blendLinear``) with a feathered mask: the ellipse shrunk by 12 % of the eye
  distance, then blurred by as much, so alpha fades to exactly 0 at the ellipse.
  ``cv2.seamlessClone`` is not used: in the OpenCV 4.14 wheel it returns different results on identical
  calls (every other call leaves the destination almost unchanged).
* Enhance (video option): 1 or 2 applies an unsharp mask (Gaussian sigma = 1 % of the eye distance
  + 0.6 px, amount 0.4 or 0.8) inside the face mask only, to restore detail lost by the warp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .faces import Face, clip_box, expand_box

__all__ = ["SourceFace", "face_mask_geometry", "paste_face", "prepare_source", "similarity_transform"]

# Face ellipse in units of the eye distance, in the face frame (x along the eye line, y towards the nose).
_MASK_CENTER_DOWN = 0.42
_MASK_HALF_WIDTH = 0.95
_MASK_HALF_HEIGHT = 1.08
_ENHANCE_AMOUNT = {0: 0.0, 1: 0.4, 2: 0.8}


@dataclass(frozen=True, eq=False)
class SourceFace:
    """A face prepared once for pasting: a crop of the face image around it, and its landmarks."""

    image: np.ndarray
    landmarks: np.ndarray
    exact: bool


def prepare_source(image: np.ndarray, face: Face) -> SourceFace:
    """Crop ``image`` around ``face`` (generously, so the warp never needs pixels outside the crop)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = expand_box(face.box, 0.6, w, h)
    crop = np.ascontiguousarray(image[y1:y2, x1:x2])
    pts = (face.landmarks - np.array([x1, y1], np.float32)).astype(np.float32)
    return SourceFace(crop, pts, face.exact)


def face_mask_geometry(face: Face) -> tuple[tuple[float, float], tuple[float, float], float]:
    """(centre, half-axes, angle in degrees) of the face ellipse of ``face`` in image pixels."""
    left, right = face.eye_centers
    eye_dist = max(face.eye_distance, 4.0)
    along = (right - left) / eye_dist
    down = np.array([-along[1], along[0]], np.float32)
    if float(np.dot(face.landmarks[4] - (left + right) / 2, down)) < 0:  # nose must be "down"
        down = -down
    center = (left + right) / 2 + _MASK_CENTER_DOWN * eye_dist * down
    angle = math.degrees(math.atan2(float(along[1]), float(along[0])))
    axes = (_MASK_HALF_WIDTH * eye_dist, _MASK_HALF_HEIGHT * eye_dist)
    return (float(center[0]), float(center[1])), axes, angle


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) mapping the ``src`` points onto the ``dst`` points."""
    # A huge RANSAC threshold keeps every point an inlier; OpenCV then refines on all of them (LM).
    matrix, _ = cv2.estimateAffinePartial2D(
        src.reshape(-1, 1, 2), dst.reshape(-1, 1, 2), method=cv2.RANSAC, ransacReprojThreshold=1e5
    )
    if matrix is None:  # degenerate landmarks: fall back to aligning the point clouds' centres/spread
        scale = float(np.std(dst) / max(np.std(src), 1e-6))
        shift = dst.mean(axis=0) - scale * src.mean(axis=0)
        matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]], np.float64)
    return matrix


# BGR -> YCrCb (OpenCV's 8-bit definition) as an affine map, so a per-channel transfer in YCrCb is one
# 3x4 colour matrix applied to BGR pixels with cv2.transform (no round trip through another colour space).
_YCC = np.array(
    [
        [0.114, 0.587, 0.299],
        [-0.081282, -0.418531, 0.499813],
        [0.499704, -0.331068, -0.168636],
    ],
    np.float64,
)
_YCC_INV = np.linalg.inv(_YCC)
_YCC_OFFSET = np.array([0.0, 128.0, 128.0])


def _colour_matrix(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """3x4 BGR matrix giving ``src`` the YCrCb mean/std of ``dst`` inside ``mask`` (stats on every 2nd px)."""
    sub = np.ascontiguousarray(mask[::2, ::2])
    src_ycc = cv2.cvtColor(np.ascontiguousarray(src[::2, ::2]), cv2.COLOR_BGR2YCrCb)
    dst_ycc = cv2.cvtColor(np.ascontiguousarray(dst[::2, ::2]), cv2.COLOR_BGR2YCrCb)
    s_mean, s_std = cv2.meanStdDev(src_ycc, mask=sub)
    d_mean, d_std = cv2.meanStdDev(dst_ycc, mask=sub)
    gain = np.clip(d_std.ravel() / np.maximum(s_std.ravel(), 1.0), 0.6, 1.6)
    shift = d_mean.ravel() - gain * s_mean.ravel()
    linear = _YCC_INV @ np.diag(gain) @ _YCC
    offset = _YCC_INV @ (gain * _YCC_OFFSET + shift - _YCC_OFFSET)
    return np.hstack([linear, offset[:, None]]).astype(np.float32)


def paste_face(target: np.ndarray, face: Face, source: SourceFace, *, enhance: int = 0) -> bool:
    """Replace ``face`` of ``target`` (modified IN PLACE) by ``source``; False if the face is too small.

    Only pixels inside the face ellipse can change.
    """
    if enhance not in _ENHANCE_AMOUNT:
        raise ValueError("enhance must be 0, 1 or 2")
    h, w = target.shape[:2]
    (cx, cy), (ax, ay), angle = face_mask_geometry(face)
    eye_dist = face.eye_distance
    if eye_dist < 6:
        return False
    feather = max(1, round(0.12 * eye_dist))
    reach = max(ax, ay) + 2
    x1, y1, x2, y2 = clip_box((cx - reach, cy - reach, cx + reach, cy + reach), w, h)
    rw, rh = x2 - x1, y2 - y1
    if rw < 8 or rh < 8:
        return False
    roi = target[y1:y2, x1:x2]

    # Core of the face: the ellipse shrunk by the feather radius; blurring it over the feather radius
    # gives an alpha that fades to zero at the ellipse, so nothing outside the ellipse changes.
    core = np.zeros((rh, rw), np.uint8)
    inner = (2 * max(ax - feather, 1.0), 2 * max(ay - feather, 1.0))
    cv2.ellipse(core, ((cx - x1, cy - y1), inner, angle), 255, -1, cv2.LINE_8)
    if cv2.countNonZero(core) < 16:
        return False
    alpha = cv2.stackBlur(core, (2 * feather + 1, 2 * feather + 1)).astype(np.float32) * (1.0 / 255.0)

    dst_pts = face.landmarks - np.array([x1, y1], np.float32)
    matrix = similarity_transform(source.landmarks, dst_pts)
    warped = cv2.warpAffine(source.image, matrix, (rw, rh), borderMode=cv2.BORDER_REPLICATE)
    warped = cv2.transform(warped, _colour_matrix(warped, roi, core))
    out = cv2.blendLinear(warped, roi, alpha, 1.0 - alpha)
    if enhance:
        out = _sharpen(out, alpha, eye_dist, _ENHANCE_AMOUNT[enhance])
    roi[...] = out  # where alpha == 0 (outside the ellipse) blendLinear returns the original pixels exactly
    return True


def _sharpen(image: np.ndarray, alpha: np.ndarray, eye_dist: float, amount: float) -> np.ndarray:
    """Unsharp mask weighted by ``alpha`` (so nothing outside the face changes)."""
    sigma = 0.6 + 0.01 * eye_dist
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    weight = alpha * amount
    return cv2.blendLinear(image, blurred, 1.0 + weight, -weight)
