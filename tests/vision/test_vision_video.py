"""Video probing and single-face video swap."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from faceswap_flows.aifaceswap.sandbox.vision import (
    FaceEngine,
    NoFaceFound,
    NotAVideo,
    VideoInfo,
    VisionError,
    probe_video,
)
from faceswap_flows.aifaceswap.sandbox.vision.video import transcode
from tests.vision import photos


@pytest.fixture(scope="session")
def swapped(engine: FaceEngine, face_video: Path, video_dir: Path) -> tuple[Path, VideoInfo]:
    out = video_dir / "face-swapped.mp4"
    return out, engine.swap_video(face_video, out, photos.grace_hopper())


def _region_diff(a: np.ndarray, b: np.ndarray, box: photos.Box) -> float:
    x1, y1, x2, y2 = box
    return float(np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2]).mean())


def test_probe_reports_size_rate_frames_duration_audio(face_video: Path) -> None:
    info = probe_video(face_video)
    assert (info.width, info.height) == photos.FACE_VIDEO_SIZE
    assert info.fps == 25.0 and info.frames == photos.FACE_VIDEO_FRAMES
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.has_audio


def test_swap_keeps_size_rate_frame_count_and_audio(
    face_video: Path,
    swapped: tuple[Path, VideoInfo],
) -> None:
    out, info = swapped
    source = probe_video(face_video)
    assert (info.width, info.height, info.fps, info.frames) == (source.width, source.height, 25.0, 50)
    assert info.duration == pytest.approx(source.duration, abs=0.05)
    assert info.has_audio
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.format.name.startswith("mov,mp4")


def test_faces_change_in_every_frame_and_the_background_does_not(
    engine: FaceEngine, face_video: Path, swapped: tuple[Path, VideoInfo]
) -> None:
    before, after = photos.read_frames(face_video), photos.read_frames(swapped[0])
    assert len(before) == len(after) == photos.FACE_VIDEO_FRAMES
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        _, face = photos.face_video_frame(i)
        x1, y1, x2, y2 = face
        inner = (x1 + 15, y1 + 10, x2 - 15, y2 - 25)  # brows to mouth
        assert _region_diff(new, old, inner) > 12, f"face of frame {i} unchanged"
        assert _region_diff(new, old, (0, 0, 50, 360)) < 2.5, f"background of frame {i} changed"
        if i % 5 == 0:  # the new face, not just any change: closer to Grace Hopper than to the astronaut
            to_new, to_old = photos.swap_distances(engine, old, new, photos.grace_hopper(), face)
            assert to_new < to_old, (i, to_new, to_old)


def test_enhance_sharpens_the_face(
    engine: FaceEngine, face_video: Path, swapped: tuple[Path, VideoInfo], video_dir: Path
) -> None:
    out = video_dir / "face-enhanced.mp4"
    engine.swap_video(face_video, out, photos.grace_hopper(), enhance=2)
    plain, sharp = photos.read_frames(swapped[0])[10], photos.read_frames(out)[10]
    x1, y1, x2, y2 = photos.face_video_frame(10)[1]

    def detail(frame: np.ndarray) -> float:
        gray = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
        return float(cv2.Laplacian(gray, cv2.CV_64F).var())

    assert detail(sharp) > 1.15 * detail(plain)
    assert _region_diff(sharp, plain, (0, 0, 50, 360)) < 2.5


def test_enhance_must_be_0_1_or_2(engine: FaceEngine, face_video: Path, tmp_path: Path) -> None:
    with pytest.raises(VisionError, match="enhance"):
        engine.swap_video(face_video, tmp_path / "out.mp4", photos.grace_hopper(), enhance=3)


def test_face_image_without_face(engine: FaceEngine, face_video: Path, tmp_path: Path) -> None:
    with pytest.raises(NoFaceFound, match="no face found in face_image"):
        engine.swap_video(face_video, tmp_path / "out.mp4", photos.cat())


def test_video_without_any_face(engine: FaceEngine, tmp_path: Path) -> None:
    cat = cv2.resize(photos.cat(), (320, 240))
    video = photos.write_video(tmp_path / "cat.mp4", lambda i: np.roll(cat, i, axis=1), 10, audio=False)
    out = tmp_path / "out.mp4"
    with pytest.raises(NoFaceFound, match="no face found in source_video"):
        engine.swap_video(video, out, photos.astronaut())
    assert not out.exists()


def test_non_aac_audio_is_reencoded_to_aac(engine: FaceEngine, tmp_path: Path) -> None:
    src = tmp_path / "flac.mkv"
    with av.open(str(src), "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 480, 360, "yuv420p"
        audio = container.add_stream("flac", rate=44100)
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(photos.face_video_frame(i)[0], format="bgr24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        tone = (3000 * np.sin(np.arange(44100 // 2) / 10)).astype(np.int16)[None, :]
        sound = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        sound.sample_rate, sound.pts = 44100, 0
        container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    assert probe_video(src).frames == 12  # counted by demuxing: Matroska stores no frame count
    info = engine.swap_video(src, tmp_path / "out.mp4", photos.grace_hopper())
    assert info.frames == 12 and info.has_audio
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


def _zero_frame_video(path: Path, fmt: str) -> Path:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        container.start_encoding()
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("fmt", ["mp4", "avi"])
def test_zero_frame_video_is_not_a_video(engine: FaceEngine, tmp_path: Path, fmt: str) -> None:
    path = _zero_frame_video(tmp_path / f"empty.{fmt}", fmt)
    with pytest.raises(NotAVideo):
        probe_video(path)
    with pytest.raises(NotAVideo):
        engine.swap_video(path, tmp_path / "out.mp4", photos.astronaut())


def test_garbage_missing_and_audio_only_files_are_not_videos(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w", format="mp4") as container:
        photos._write_tone(container, container.add_stream("aac", rate=44100), 0.2)
    for path in (garbage, tmp_path / "missing.mp4", audio_only):
        with pytest.raises(NotAVideo):
            probe_video(path)


def test_nothing_is_pasted_once_the_face_has_left(engine: FaceEngine, tmp_path: Path) -> None:
    cat = cv2.resize(photos.cat(), photos.FACE_VIDEO_SIZE)

    def frame(i: int) -> np.ndarray:  # a face for 15 frames, then the cat
        return photos.face_video_frame(i)[0] if i < 15 else np.roll(cat, 3 * i, axis=1)

    src = photos.write_video(tmp_path / "leaves.mp4", frame, 25, audio=False)
    transcode(src, tmp_path / "baseline.mp4", lambda i, image: image)
    engine.swap_video(src, tmp_path / "out.mp4", photos.grace_hopper())
    baseline, out = photos.read_frames(tmp_path / "baseline.mp4"), photos.read_frames(tmp_path / "out.mp4")
    x1, y1, x2, y2 = photos.face_video_frame(14)[1]
    assert len(out) == len(baseline) == 25
    diffs = [_region_diff(a, b, (x1, y1, x2, y2)) for a, b in zip(baseline, out, strict=True)]
    assert min(diffs[:15]) > 10, diffs  # swapped while the face is there
    assert max(diffs[15:]) < 3, diffs  # no ghost of the face pasted on the cat
