"""Distinct photos for a realistic batch: each item gets its own source photo (and, if asked, its own face photo),
made at run time from the public-domain photos the packages ship (astronaut, Grace Hopper) by a small crop,
a mirror image and a colour shift, so every file has its own SHA-256 and still shows the same face. With
``side``, the photos are small square crops around the face (``face_crops``), each variant resized to ``side`` px:
the sandbox still detects and swaps a real face, at a few ms of CPU instead of ~160 ms for the whole photo."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, ImageOps


def variant(photo: Image.Image, index: int) -> Image.Image:
    """Variant ``index`` of ``photo``: crop 0-27 px off the edges, mirrored every other 10, channels shifted
    (distinct up to index 14,579 with a 9-step blue shift, beyond with a larger one)."""
    margin = 3 * (index % 10)
    width, height = photo.size
    picture = photo.convert("RGB").crop((margin, margin, width - margin, height - margin))
    if (index // 10) % 2:
        picture = ImageOps.mirror(picture)
    shift = index // 20
    red, green, blue = (shift % 9) * 2, (shift // 9 % 9) * 2, (shift // 81) * 2
    bands = zip(picture.split(), (red, green, blue), strict=True)
    return Image.merge("RGB", [band.point(lambda v, s=s: min(255, v + s)) for band, s in bands])


MARGIN = 27  # the most variant() crops off each edge


def face_crops(photos: list[Path], folder: Path, side: int) -> list[Path]:
    """A square crop of each photo around its largest face (twice the face's width, found by the sandbox's
    detector), ``side + 2 * MARGIN`` px, so that every variant of it still shows the whole face."""
    import numpy as np

    from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine

    engine, crops = FaceEngine(), []
    folder.mkdir(parents=True, exist_ok=True)
    for path in photos:
        picture = Image.open(path).convert("RGB")
        boxes = engine.detect(np.asarray(picture)[:, :, ::-1])
        if not boxes:
            raise RuntimeError(f"no face found in {path}")
        x1, y1, x2, y2 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        half, cx, cy = max(x2 - x1, y2 - y1), (x1 + x2) // 2, (y1 + y2) // 2
        crop = picture.crop((cx - half, cy - half, cx + half, cy + half))
        target = folder / f"{path.stem}-face-{side}.png"
        crop.resize((side + 2 * MARGIN,) * 2, Image.Resampling.LANCZOS).save(target)
        crops.append(target)
    return crops


def write_distinct(bases: list[Path], folder: Path, count: int, prefix: str, side: int | None = None) -> list[Path]:
    """``count`` distinct PNG files in ``folder``, cycling through ``bases`` (each resized to ``side`` x ``side``
    when given); raises if two share a SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    originals = [Image.open(path) for path in bases]
    paths, digests = [], set()
    for i in range(count):
        path = folder / f"{prefix}-{i}.png"
        picture = variant(originals[i % len(originals)], i // len(originals))
        if side is not None:
            picture = picture.resize((side, side), Image.Resampling.BILINEAR)
        picture.save(path, compress_level=1)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        paths.append(path)
    if len(digests) != count:
        raise RuntimeError(f"{count - len(digests)} of {count} {prefix} photos are not distinct")
    return paths
