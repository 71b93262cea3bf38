"""Shared fixtures of the vision-engine tests: one engine per session, small synthetic videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine
from tests.vision import photos


@pytest.fixture(scope="session")
def engine() -> FaceEngine:
    return FaceEngine()


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def face_video(video_dir: Path) -> Path:
    """480x360, 25 fps, 50 frames, one face, AAC tone."""
    frames = photos.FACE_VIDEO_FRAMES
    return photos.write_video(video_dir / "face.mp4", lambda i: photos.face_video_frame(i)[0], frames)


@pytest.fixture(scope="session")
def pair_video(video_dir: Path) -> Path:
    """720x360, 25 fps, 30 frames, two people side by side, AAC tone."""
    frames = photos.PAIR_VIDEO_FRAMES
    return photos.write_video(video_dir / "pair.mp4", lambda i: photos.pair_video_frame(i)[0], frames)
