"""Distinct photos for a realistic batch: each item gets its own source photo (and, if asked, its own face photo),
made at run time from the public-domain photos the packages ship (astronaut, Grace Hopper) by a small crop,
a mirror image and a colour shift, so every file has its own SHA-256 and still shows the same face."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, ImageOps


def variant(photo: Image.Image, index: int) -> Image.Image:
    """Variant ``index`` of ``photo``: crop 0-27 px off the edges, mirrored every other 14, channels shifted."""
    margin = 3 * (index % 10)
    width, height = photo.size
    picture = photo.convert("RGB").crop((margin, margin, width - margin, height - margin))
    if (index // 10) % 2:
        picture = ImageOps.mirror(picture)
    shift = index // 20
    red, green, blue = (shift % 9) * 2, (shift // 9 % 9) * 2, (shift // 81 % 9) * 2
    bands = zip(picture.split(), (red, green, blue), strict=True)
    return Image.merge("RGB", [band.point(lambda v, s=s: min(255, v + s)) for band, s in bands])


def write_distinct(bases: list[Path], folder: Path, count: int, prefix: str) -> list[Path]:
    """``count`` distinct PNG files in ``folder``, cycling through ``bases``; raises if two share a SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    originals = [Image.open(path) for path in bases]
    paths, digests = [], set()
    for i in range(count):
        path = folder / f"{prefix}-{i}.png"
        variant(originals[i % len(originals)], i // len(originals)).save(path, compress_level=1)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        paths.append(path)
    if len(digests) != count:
        raise RuntimeError(f"{count - len(digests)} of {count} {prefix} photos are not distinct")
    return paths
