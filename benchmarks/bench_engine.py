"""Benchmark of the sandbox's face engine (detection, image swap, video swap) on this machine's CPU.

Run: ``.venv/bin/python benchmarks/bench_engine.py`` (a few minutes).  Every figure comes with a
baseline measured in the same run on the same inputs:

* detection on 1024-px photos vs the old policy (shrink to 512 px) (recall: ``bench_detection.py``);
* video swaps of a clip made at run time (two people from package photos walking, tilting, nodding,
  coming closer, over a panning background; faces 48-72 px at 720p and 1080p, and 120-180 px at 1080p)
  vs a plain decode + re-encode of the same clip (the I/O floor); with each person's share of frames
  whose face was swapped (inner face differs from the unswapped re-encode by > 8 grey levels).

Target: video swap >= 25 frames/s at 720p.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data
from matplotlib import cbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import face_set
from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine, probe_video
from faceswap_flows.aifaceswap.sandbox.vision.video import transcode


def _photos() -> list[np.ndarray]:
    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)
    out = []
    for image in (astronaut, grace):
        scale = 1024 / max(image.shape[:2])
        out.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
    return out


def _rate(fn: Callable[[], object], n: int) -> float:
    """Calls per second of ``fn`` over ``n`` calls (after one warm-up call)."""
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def _make_video(path: Path, frames: int, size: tuple[int, int], face: int, fps: int = 25) -> Path:
    """Two people (:func:`face_set.walkers`) walking, tilting and nodding over a panning background."""
    background = face_set.background(size, np.random.default_rng(7))
    people = face_set.walkers(size, face)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = {"preset": "veryfast", "crf": "20"}
        audio = out.add_stream("aac", rate=44100)
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(face_set.clip_frame(background, people, i)[0], format="bgr24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
        samples = int(44100 * frames / fps)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
        for start in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = 44100, start, Fraction(1, 44100)
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))
    return path


def _swapped_share(size: tuple[int, int], face: int, baseline: Path, out: Path) -> list[float]:
    """Per person: the share of frames whose inner face differs from the unswapped re-encode (> 8 levels)."""
    people = face_set.walkers(size, face)
    hits: list[list[bool]] = [[] for _ in people]
    with av.open(str(baseline)) as a, av.open(str(out)) as b:
        for i, (fa, fb) in enumerate(zip(a.decode(video=0), b.decode(video=0), strict=True)):
            before, after = fa.to_ndarray(format="gray"), fb.to_ndarray(format="gray")
            for person, walker in enumerate(people):
                x1, y1, x2, y2 = face_set.placement(walker, i)[1]
                dx, dy = (x2 - x1) // 4, (y2 - y1) // 4
                region = (slice(y1 + dy, y2 - dy), slice(x1 + dx, x2 - dx))
                diff = np.abs(after[region].astype(int) - before[region]).mean()
                hits[person].append(bool(diff > 8))
    return [float(np.mean(h)) for h in hits]


Row = tuple[str, str, str, str]


def _fps(fn: Callable[[], object], frames: int) -> float:
    start = time.perf_counter()
    fn()
    return frames / (time.perf_counter() - start)


def _video_rows(engine: FaceEngine, tmp: Path, frames: int, size: tuple[int, int], face: int) -> list[Row]:
    """Multi-person video swap of the two-person clip: fps, I/O floor, and each person's swapped share."""
    src = _make_video(tmp / f"src{size[1]}.mp4", frames, size, face)
    info = probe_video(src)
    plain = _fps(lambda: transcode(src, tmp / "plain.mp4", lambda i, f: f), info.frames)
    a, _, b = face_set.people()
    refs = [(a.image, face_set.people()[1].image), (b.image, a.image)]  # face_ref photo, new face
    fast = _fps(lambda: engine.swap_video_multi(src, tmp / "swap.mp4", refs), info.frames)
    shares = _swapped_share(size, face, tmp / "plain.mp4", tmp / "swap.mp4")
    single = _fps(lambda: engine.swap_video(src, tmp / "one.mp4", refs[0][1]), info.frames)
    main_share = _swapped_share(size, face, tmp / "plain.mp4", tmp / "one.mp4")
    name = f"{info.width}x{info.height}, 2 people, faces {face}-{round(1.5 * face)} px"
    floor = f"{plain:.1f} frames/s (decode+encode only)"
    return [
        (
            f"multi video swap, {name}",
            f"{fast:.1f} frames/s; A swapped in {shares[0]:.0%}, B in {shares[1]:.0%} of frames",
            floor,
            ">= 25 fps" if size[1] == 720 else "",
        ),
        (
            f"video swap (main face), {name}",
            f"{single:.1f} frames/s; A swapped in {main_share[0]:.0%}, B (main) in {main_share[1]:.0%}",
            floor,
            "",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames of each test video (default 150)")
    args = parser.parse_args()
    rows: list[Row] = []
    t0 = time.perf_counter()
    engine = FaceEngine()
    old = FaceEngine(min_face=None)  # the old policy (shrink to 512 px): the baseline
    photos = _photos()
    sizes = [p.shape[1::-1] for p in photos]
    print(f"backend: {engine.backend}; photos (w, h): {sizes}; OpenCV threads: {cv2.getNumThreads()}")

    n = 10
    detect = _rate(lambda: [engine.detect(p) for p in photos], n) * len(photos)
    baseline = _rate(lambda: [old.detect(p) for p in photos], n) * len(photos)
    rows.append(
        (
            "detect, 1024-px photo (recall: bench_detection.py)",
            f"{detect:.1f} images/s",
            f"{baseline:.1f} images/s (old 512-px policy)",
            "",
        )
    )
    encoded = [cv2.imencode(".jpg", p)[1] for p in photos]
    decode = _rate(lambda: [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in encoded], n) * len(photos)
    swap = _rate(lambda: engine.swap(photos[0], photos[1]), 10)
    rows.append(
        ("swap, 1024-px photos", f"{1000 / swap:.0f} ms", f"{1000 / decode:.1f} ms (JPEG decode)", ""),
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows += _video_rows(engine, Path(tmp), args.frames, (1280, 720), 48)
        rows += _video_rows(engine, Path(tmp), args.frames, (1920, 1080), 48)
        rows += _video_rows(engine, Path(tmp), args.frames, (1920, 1080), 120)

    widths = [max(len(r[i]) for r in [*rows, ("case", "figure", "baseline", "target")]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format("case", "figure", "baseline", "target"))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
