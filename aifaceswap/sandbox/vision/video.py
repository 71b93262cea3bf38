"""Video probing and frame-by-frame re-encoding with PyAV (no ffmpeg binary needed).

:func:`transcode` decodes every frame of the first video stream, hands it to a callback as a BGR array,
and encodes the result to MP4 (H.264, ``libx264``) with the same width, height, frame rate and number of
frames.  The first audio stream is copied as is when it is AAC, and re-encoded to AAC otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from .errors import NotAVideo

__all__ = ["VideoInfo", "probe_video", "transcode"]

log = logging.getLogger("aifaceswap.sandbox.vision")

FrameFn = Callable[[int, np.ndarray], np.ndarray]
_AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError, ValueError, IndexError)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reports about a video file."""

    width: int
    height: int
    fps: float
    frames: int
    duration: float
    has_audio: bool


def _open(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise NotAVideo(f"{path.name}: no such file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except _AV_ERRORS as exc:
        raise NotAVideo(f"{path.name} is not a decodable video: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise NotAVideo(f"{path.name} has no video stream")
    return container


def _rate(stream: Any) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25, 1)


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count, duration (s) and audio presence of a video file.

    Raises :class:`NotAVideo` when the file does not open as a media file, has no video stream, or its
    video stream has no frames.  When the container does not store a frame count (e.g. WebM), packets
    are counted (demuxing only, no decoding).
    """
    with contextlib.closing(_open(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = _rate(stream)
        frames = int(stream.frames or 0)
        if frames <= 0:
            try:
                frames = sum(1 for p in container.demux(stream) if p.size)
            except _AV_ERRORS as exc:
                raise NotAVideo(f"{Path(path).name} is not a decodable video: {exc}") from exc
        if frames <= 0 or not ctx.width or not ctx.height:
            raise NotAVideo(f"{Path(path).name} has no video frames")
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = frames / float(rate)
        return VideoInfo(
            width=int(ctx.width),
            height=int(ctx.height),
            fps=float(rate),
            frames=frames,
            duration=round(duration, 6),
            has_audio=bool(container.streams.audio),
        )


def _add_audio(out: Any, audio: Any) -> tuple[Any, bool]:
    """Output audio stream for ``audio``, and whether its packets are copied (True) or re-encoded."""
    if audio.codec_context.name == "aac":
        return out.add_stream_from_template(audio), True
    stream = out.add_stream("aac", rate=audio.rate or 44100)
    if audio.layout is not None and audio.layout.nb_channels <= 2:
        stream.layout = audio.layout
    return stream, False


def transcode(
    src: str | Path,
    dst: str | Path,
    process: FrameFn,
    *,
    crf: int = 20,
    preset: str = "veryfast",
) -> int:
    """Re-encode ``src`` to ``dst`` (MP4), passing every frame through ``process(index, bgr) -> bgr``.

    ``process`` may modify its array in place and return it.  Returns the number of frames written.
    Output timestamps are frame indexes at the source's average frame rate (so the frame count and fps
    are kept; a variable-frame-rate source becomes constant-rate).  Odd sizes are encoded as yuv444p.
    """
    dst = Path(dst)
    with contextlib.closing(_open(src)) as inp:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        width, height = vin.codec_context.width, vin.codec_context.height
        if not width or not height:
            raise NotAVideo(f"{Path(src).name} has no video frames")
        ain = inp.streams.audio[0] if inp.streams.audio else None
        count = 0
        try:
            with av.open(str(dst), "w", format="mp4") as out:
                vout = out.add_stream("libx264", rate=_rate(vin))
                vout.width, vout.height = width, height
                vout.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
                vout.options = {"preset": preset, "crf": str(crf)}
                aout, copy_audio = _add_audio(out, ain) if ain is not None else (None, False)
                streams = [vin] if ain is None else [vin, ain]
                to_bgr, from_bgr = _converters(width, height)
                for packet in inp.demux(*streams):
                    if packet.stream.type == "video":
                        for frame in _decode(packet):
                            encoded = from_bgr(process(count, to_bgr(frame)))
                            encoded.pts = count
                            out.mux(vout.encode(encoded))
                            count += 1
                    elif copy_audio:
                        if packet.dts is not None:
                            packet.stream = aout
                            out.mux(packet)
                    elif aout is not None:
                        for frame in _decode(packet):
                            frame.pts = None
                            out.mux(aout.encode(frame))
                out.mux(vout.encode(None))
                if aout is not None and not copy_audio:
                    out.mux(aout.encode(None))
                if count == 0:
                    raise NotAVideo(f"{Path(src).name} has no decodable video frames")
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
    return count


def _converters(width: int, height: int) -> tuple[Callable[[Any], np.ndarray], Callable[[np.ndarray], Any]]:
    """Frame <-> BGR conversions.

    For even sizes the YUV 4:2:0 <-> BGR conversion is done by OpenCV (BT.601): it round-trips without
    bias, whereas PyAV's default swscale path darkens every generation by ~2 levels (and is slower).
    """
    if width % 2 or height % 2:
        return (
            lambda frame: frame.to_ndarray(format="bgr24"),
            lambda image: av.VideoFrame.from_ndarray(image, format="bgr24"),
        )

    def to_bgr(frame: Any) -> np.ndarray:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)

    def from_bgr(image: np.ndarray) -> Any:
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")

    return to_bgr, from_bgr


def _decode(packet: Any) -> list[Any]:
    """Frames of ``packet``; a corrupt packet is skipped (logged) instead of failing the whole video."""
    try:
        return list(packet.decode())
    except av.InvalidDataError as exc:
        log.warning("skipping a corrupt %s packet: %s", packet.stream.type, exc)
        return []
