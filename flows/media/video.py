"""Video helpers on PyAV: read a duration, cut a time range, grab a frame. The service does none of these."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import MAX_VIDEO_REFS
from faceswap_flows.flows.exceptions import VideoError


@dataclass(frozen=True)
class VideoFacts:
    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool


def _open(path: Path, field: str) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoError(f"{field}: {path} does not exist: check the path")
    if path.stat().st_size == 0:
        raise VideoError(f"{field}: {path} is empty: pass an MP4 file with at least one frame")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise VideoError(f"{field}: {path} is not a video FFmpeg can read ({error}): pass an MP4 file") from None


def video_facts(path: str | Path, field: str = "source_video") -> VideoFacts:
    """Duration (seconds), size, frame rate and audio of a video, read from the file itself."""
    with _open(Path(path), field) as container:
        if not container.streams.video:
            raise VideoError(f"{field}: {path} has no video stream: pass a video file")
        stream = container.streams.video[0]
        duration = 0.0
        if container.duration:
            duration = container.duration / av.time_base
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        if stream.frames == 0 and duration <= 0:
            raise VideoError(f"{field}: {path} has no frames: pass a video at least one frame long")
        if duration <= 0:
            raise VideoError(f"{field}: {path} has no duration: re-encode it as a standard MP4")
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        return VideoFacts(
            duration, stream.codec_context.width, stream.codec_context.height, fps, bool(container.streams.audio)
        )


def trim_video(source: str | Path, target: str | Path, start: float, end: float | None) -> VideoFacts:
    """Cut [start, end) seconds of ``source`` into ``target`` (H.264 + AAC), re-encoding so cuts are exact."""
    facts = video_facts(source)
    end = facts.duration if end is None else end
    if start < 0:
        raise VideoError(f"trim_start: must be 0 s or later, got {start}: choose a start inside the video")
    if start >= facts.duration:
        raise VideoError(
            f"trim_start: {start} s is past the end of the video, which lasts {facts.duration:.2f} s: "
            "choose a start inside it"
        )
    if end > facts.duration + 1e-3:
        raise VideoError(
            f"trim_end: {end} s is past the end of the video, which lasts {facts.duration:.2f} s: "
            f"choose `trim_end` <= {facts.duration:.2f}, or leave it out to keep the rest of the video"
        )
    if end <= start:
        raise VideoError(f"trim_start: {start} s is not before `trim_end` {end} s: choose `trim_start` < `trim_end`")
    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or Fraction(25)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        aout = out.add_stream("aac", rate=ain.codec_context.sample_rate) if ain else None
        streams = [s for s in (vin, ain) if s is not None]
        for frame in inp.decode(*streams):
            if frame.time is None or not start <= frame.time < end:
                continue
            if isinstance(frame, av.VideoFrame):
                frame.pts = None
                out.mux(vout.encode(frame.reformat(format="yuv420p")))
            elif aout is not None:
                frame.pts = None
                out.mux(aout.encode(frame))
        out.mux(vout.encode())
        if aout is not None:
            out.mux(aout.encode())
    return video_facts(target)


def grab_frame(path: str | Path, at: float = 0.0, field: str = "source_video") -> Image.Image:
    """The frame shown at ``at`` seconds, as an RGB image."""
    facts = video_facts(path, field)
    if not 0 <= at < facts.duration:
        raise VideoError(
            f"frame_time: {at} s is outside the video ({facts.duration:.2f} s long): choose a time inside it"
        )
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if at > 0 and stream.time_base:
            container.seek(int(at / stream.time_base), stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            chosen = frame
            if frame.time is not None and frame.time >= at - 1e-6:
                break
        if chosen is None:
            raise VideoError(f"{field}: no frame could be decoded at {at} s")
        return chosen.to_image().convert("RGB")


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def chosen_faces(face_images: list[str], face_indexes: list[int] | None) -> list[int]:
    """The faces of a multi_video_faceswap frame to replace, one per face image (default 0, 1, ...), checked
    before any cost."""
    indexes = list(face_indexes) if face_indexes is not None else list(range(len(face_images)))
    if not 1 <= len(face_images) <= MAX_VIDEO_REFS or len(indexes) != len(face_images):
        raise InputValidationError(
            f"face_images: give 1 to {MAX_VIDEO_REFS} face images and one face index each; "
            f"got {len(face_images)} image(s) and {len(indexes)} index(es)"
        )
    if len(set(indexes)) != len(indexes):
        raise InputValidationError(f"face_indexes: {indexes} repeats a face: each face may be replaced once")
    return indexes
