"""Multi-face video swap: faces are matched to face_ref crops by appearance; only matches change."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine, NoFaceFound, TooManyRefs, VisionError
from faceswap_flows.aifaceswap.sandbox.vision.matching import (
    MATCH_THRESHOLD,
    assign,
    describe,
    describe_crop,
    similarity,
)
from faceswap_flows.aifaceswap.sandbox.vision.video import transcode
from tests.vision import photos

Frames = list[np.ndarray]


def _refs() -> tuple[np.ndarray, np.ndarray]:
    """face_ref photos of person A (astronaut) and B (Grace Hopper): not cut from the video but other shots
    of the same people (cropped differently, mirrored, darker, warmer light, smaller)."""
    return (
        photos.other_shot(photos.astronaut(), (60, 0, 420, 380)),
        photos.other_shot(photos.grace_hopper(), (40, 0, 480, 520)),
    )


def _moved_toward(engine: FaceEngine, frames: Frames, baseline: Frames, person: int, new: np.ndarray) -> None:
    """In sampled frames, the person's face is closer to the new face than to their own."""
    for i in (0, photos.PAIR_VIDEO_FRAMES // 2, photos.PAIR_VIDEO_FRAMES - 1):
        box = photos.pair_video_frame(i)[1 + person]
        to_new, to_old = photos.swap_distances(engine, baseline[i], frames[i], new, box)
        assert to_new < to_old, (i, to_new, to_old)


@pytest.fixture(scope="session")
def baseline(pair_video: Path, video_dir: Path) -> Frames:
    """The pair video re-encoded unchanged by the same pipeline: the reference for 'untouched'."""
    out = transcode(pair_video, video_dir / "pair-baseline.mp4", lambda i, frame: frame)
    assert out == photos.PAIR_VIDEO_FRAMES
    return photos.read_frames(video_dir / "pair-baseline.mp4")


def _diffs(frames: list[np.ndarray], baseline: Frames) -> tuple[list[float], list[float]]:
    """Per frame: mean absolute difference to the baseline inside A's face, and inside B's face."""
    a_diff, b_diff = [], []
    for i, (got, ref) in enumerate(zip(frames, baseline, strict=True)):
        _, a_box, b_box = photos.pair_video_frame(i)
        for box, out in ((a_box, a_diff), (b_box, b_diff)):
            x1, y1, x2, y2 = box
            out.append(float(np.abs(got[y1:y2, x1:x2].astype(int) - ref[y1:y2, x1:x2]).mean()))
    return a_diff, b_diff


def test_ref_a_changes_only_a(engine: FaceEngine, pair_video: Path, baseline: Frames, tmp_path: Path) -> None:
    ref_a, _ = _refs()
    info = engine.swap_video_multi(pair_video, tmp_path / "a.mp4", [(ref_a, photos.grace_hopper())])
    assert info.frames == photos.PAIR_VIDEO_FRAMES and info.has_audio
    frames = photos.read_frames(tmp_path / "a.mp4")
    a_diff, b_diff = _diffs(frames, baseline)
    assert min(a_diff) > 10, a_diff
    assert max(b_diff) < 3.0, b_diff  # encoding noise only
    _moved_toward(engine, frames, baseline, 0, photos.grace_hopper())


def test_ref_b_changes_only_b(engine: FaceEngine, pair_video: Path, baseline: Frames, tmp_path: Path) -> None:
    _, ref_b = _refs()
    engine.swap_video_multi(pair_video, tmp_path / "b.mp4", [(ref_b, photos.astronaut())])
    frames = photos.read_frames(tmp_path / "b.mp4")
    a_diff, b_diff = _diffs(frames, baseline)
    assert max(a_diff) < 3.0, a_diff
    assert min(b_diff) > 10, b_diff
    _moved_toward(engine, frames, baseline, 1, photos.astronaut())


def test_two_refs_change_both(engine: FaceEngine, pair_video: Path, baseline: Frames, tmp_path: Path) -> None:
    ref_a, ref_b = _refs()
    refs = [(ref_b, photos.astronaut()), (ref_a, photos.grace_hopper())]  # order of refs is free
    engine.swap_video_multi(pair_video, tmp_path / "ab.mp4", refs)
    a_diff, b_diff = _diffs(photos.read_frames(tmp_path / "ab.mp4"), baseline)
    assert min(a_diff) > 10 and min(b_diff) > 10


def test_ref_matching_nobody_leaves_the_video_unchanged(
    engine: FaceEngine, pair_video: Path, baseline: Frames, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aifaceswap.sandbox.vision"):
        engine.swap_video_multi(pair_video, tmp_path / "none.mp4", [(photos.cat(), photos.astronaut())])
    a_diff, b_diff = _diffs(photos.read_frames(tmp_path / "none.mp4"), baseline)
    assert max(a_diff) < 3.0 and max(b_diff) < 3.0
    assert "matched the face references" in caplog.text


def test_too_many_or_no_refs(engine: FaceEngine, pair_video: Path, tmp_path: Path) -> None:
    ref_a, _ = _refs()
    with pytest.raises(TooManyRefs, match="4 face references given, at most 3"):
        engine.swap_video_multi(pair_video, tmp_path / "x.mp4", [(ref_a, photos.astronaut())] * 4)
    with pytest.raises(VisionError, match="at least one"):
        engine.swap_video_multi(pair_video, tmp_path / "x.mp4", [])


def test_new_face_without_face(engine: FaceEngine, pair_video: Path, tmp_path: Path) -> None:
    ref_a, ref_b = _refs()
    refs = [(ref_a, photos.astronaut()), (ref_b, photos.coffee())]
    with pytest.raises(NoFaceFound, match=r"ref_info\[1\]"):
        engine.swap_video_multi(pair_video, tmp_path / "x.mp4", refs)


def test_appearance_similarity_separates_the_two_people(engine: FaceEngine) -> None:
    ref_a, ref_b = _refs()
    refs = [describe_crop(engine.detector, ref_a), describe_crop(engine.detector, ref_b)]
    frame, _, _ = photos.pair_video_frame(photos.PAIR_VIDEO_FRAMES - 1)
    faces = [describe(frame, face) for face in engine.faces(frame)]  # left to right: A, B
    assert similarity(faces[0], refs[0]) > MATCH_THRESHOLD > similarity(faces[0], refs[1])
    assert similarity(faces[1], refs[1]) > MATCH_THRESHOLD > similarity(faces[1], refs[0])
    assert assign(faces, refs[::-1]) == {0: 1, 1: 0}
    assert assign(faces, refs[:1]) == {0: 0}
