"""The scale plan of a detection: at which scales, and on which strips, the HOG detector runs.

dlib's HOG window is 80 px: it finds a face whose cheek-to-cheek width is >= ~55-60 px *at the scale it
sees* (measured: at 1.0x, faces of 48 px are missed and 56 px half missed; at 1.5x every face >= 40 px
is found).  So an image is resized by ``HOG_FACE / min_face`` (1.5 for 40 px faces: small images are
upsampled) and scanned in horizontal strips, one per worker thread (dlib releases the GIL), that overlap
by more than the largest face a strip must hold.  Larger faces, which a strip may cut, are found by one
more pass on the whole image at a third of that scale.  The scanned area is capped at ``max_pixels``
(28 Mpx: a 4032x3024 photo at 1.5x); above it the scale shrinks and so does the smallest face found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["HOG_FACE", "Pass", "plan"]

HOG_FACE = 60
"""Face width (px, cheek to cheek) dlib's HOG detector finds reliably at the scale it sees."""
_COARSE = 3.0  # the whole-image pass runs at scale / _COARSE
_MARGIN = 1.6  # strip overlap, in units of the coarse pass's smallest face at the strip's scale


@dataclass(frozen=True)
class Pass:
    """Run the detector on rows ``top:bottom`` (of the image resized by ``scale``)."""

    scale: float
    top: int
    bottom: int


def plan(width: int, height: int, min_face: int, *, strips: int = 2, max_pixels: float = 28e6) -> list[Pass]:
    """The passes that find every face >= ``min_face`` px wide in a ``width`` x ``height`` image."""
    scale = HOG_FACE / max(1, min_face)
    scale = min(scale, math.sqrt(max_pixels / max(1, width * height)))
    rows = round(height * scale)
    passes: list[Pass] = []
    coarse = scale / _COARSE
    overlap = round(_MARGIN * HOG_FACE * _COARSE)  # holds every face under the coarse pass's smallest
    if strips > 1 and rows > 2 * overlap and round(height * coarse) >= HOG_FACE:
        step = math.ceil(rows / strips)
        for i in range(strips):
            top, bottom = max(0, i * step - overlap // 2), min(rows, (i + 1) * step + overlap // 2)
            passes.append(Pass(scale, top, bottom))
        passes.append(Pass(coarse, 0, round(height * coarse)))
    else:
        passes.append(Pass(scale, 0, rows))
    return passes
