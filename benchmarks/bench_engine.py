"""Benchmark of the sandbox's face engine (detection, image swap, video swap) on this machine's CPU.

Run: ``.venv/bin/python benchmarks/bench_engine.py`` (about a minute).  Every figure comes with a
baseline measured in the same run on the same inputs:

* detection on 1024-px photos vs the same detector on the full-resolution image (no downscale);
* video swap at 1280x720 vs a plain decode + re-encode of the same video (the I/O floor), and vs
  swapping with a full-frame detection on every frame (no tracking).

Targets: detection >= 30 images/s on 1024-px images; video swap >= 25 frames/s at 720p.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data
from matplotlib import cbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def _make_video(path: Path, frames: int, size: tuple[int, int] = (1280, 720), fps: int = 25) -> Path:
    """A talking-head-like clip: the astronaut (face ~230 px) drifting and bobbing, with a tone track."""
    width, height = size
    head = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[0:400, 60:400]
    head = cv2.resize(head, None, fx=2.6, fy=2.6, interpolation=cv2.INTER_CUBIC)[: height + 40]
    backdrop = cv2.resize(head[:40, :40], (width, height), interpolation=cv2.INTER_LINEAR)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "20"}
        audio = out.add_stream("aac", rate=44100)
        for i in range(frames):
            frame = backdrop.copy()
            x = int(200 + 150 * np.sin(i / 25))
            y = int(10 + 8 * np.sin(i / 7))
            part = head[: height - y, : min(head.shape[1], width - x)]
            frame[y : y + part.shape[0], x : x + part.shape[1]] = part
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
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


def _fps(fn: Callable[[], object], frames: int) -> float:
    start = time.perf_counter()
    fn()
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames of the 720p test video (default 150)")
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    t0 = time.perf_counter()
    engine = FaceEngine()
    full = FaceEngine(max_detect_side=4096)  # same detector, no downscale: the baseline
    photos = _photos()
    sizes = [p.shape[1::-1] for p in photos]
    print(f"backend: {engine.backend}; photos (w, h): {sizes}; OpenCV threads: {cv2.getNumThreads()}")

    n = 30
    detect = _rate(lambda: [engine.detect(p) for p in photos], n) * len(photos)
    baseline = _rate(lambda: [full.detect(p) for p in photos], 5) * len(photos)
    rows.append(
        (
            "detect, 1024-px photo",
            f"{detect:.1f} images/s",
            f"{baseline:.1f} images/s (no downscale)",
            ">= 30",
        )
    )
    batch = photos * 10
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(engine.detect, batch))  # warm-up: the second thread gets its own detector
        start = time.perf_counter()
        for _ in range(3):
            list(pool.map(engine.detect, batch))
        pooled = 3 * len(batch) / (time.perf_counter() - start)
    rows.append(("detect, 1024-px photo, 2 threads", f"{pooled:.1f} images/s", "", ">= 30"))

    encoded = [cv2.imencode(".jpg", p)[1] for p in photos]
    decode = _rate(lambda: [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in encoded], n) * len(photos)
    swap = _rate(lambda: engine.swap(photos[0], photos[1]), 10)
    rows.append(
        ("swap, 1024-px photos", f"{1000 / swap:.0f} ms", f"{1000 / decode:.1f} ms (JPEG decode)", ""),
    )

    with tempfile.TemporaryDirectory() as tmp:
        src = _make_video(Path(tmp) / "src.mp4", args.frames)
        info = probe_video(src)
        face = photos[1]
        plain = _fps(lambda: transcode(src, Path(tmp) / "plain.mp4", lambda i, f: f), info.frames)
        fast = _fps(lambda: engine.swap_video(src, Path(tmp) / "swap.mp4", face), info.frames)
        out = probe_video(Path(tmp) / "swap.mp4")
        every = FaceEngine(detect_every=1)
        short = min(50, info.frames)
        clip = _make_video(Path(tmp) / "clip.mp4", short)
        slow = _fps(lambda: every.swap_video(clip, Path(tmp) / "slow.mp4", face), short)
        assert (out.width, out.height, out.frames) == (info.width, info.height, info.frames), out
    size = f"{info.width}x{info.height}"
    io_floor = f"{plain:.1f} frames/s (decode+encode only)"
    rows.append((f"video swap, {size}", f"{fast:.1f} frames/s", io_floor, ">= 25"))
    rows.append((f"video swap, {size}, detect every frame", f"{slow:.1f} frames/s", "(no tracking)", ""))

    widths = [max(len(r[i]) for r in [*rows, ("case", "figure", "baseline", "target")]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format("case", "figure", "baseline", "target"))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
