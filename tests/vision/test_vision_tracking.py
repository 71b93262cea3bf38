"""The video tracker finds and follows small faces (48 px) of two people who move: walk, tilt, nod, come closer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import face_set
from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine
from faceswap_flows.aifaceswap.sandbox.vision.tracking import FaceTracker
from faceswap_flows.aifaceswap.sandbox.vision.video import transcode
from tests.vision import photos

FRAMES = 40


def _followed(engine: FaceEngine, size: tuple[int, int], face: int) -> list[list[int | None]]:
    """For each person, per frame: the id of the track on their face (IoU >= 0.3), or None."""
    background = face_set.background(size, np.random.default_rng(3))
    people = face_set.walkers(size, face)
    tracker = FaceTracker(engine.detector)
    ids: list[list[int | None]] = [[] for _ in people]
    for i in range(FRAMES):
        frame, boxes = face_set.clip_frame(background, people, i)
        tracks, _ = tracker.update(i, frame)
        for person, box in enumerate(boxes):
            on = [t.id for t in tracks if photos.iou(t.face.box, box) >= 0.3]
            ids[person].append(on[0] if on else None)
    return ids


def _check(ids: list[list[int | None]]) -> None:
    for person, seen in enumerate(ids):
        found = [i for i in seen if i is not None]
        assert len(found) >= 0.95 * FRAMES, f"person {person} followed in {len(found)} of {FRAMES} frames"
        assert len(set(found)) == 1, f"person {person} changed identity: tracks {sorted(set(found))}"
    assert ids[0][0] != ids[1][0]


def test_two_48_px_faces_are_followed_in_720p(engine: FaceEngine) -> None:
    _check(_followed(engine, (1280, 720), 48))


@pytest.mark.slow
def test_two_48_px_faces_are_followed_in_1080p(engine: FaceEngine) -> None:
    _check(_followed(engine, (1920, 1080), 48))


@pytest.mark.slow
def test_multi_video_swap_swaps_both_small_faces_in_720p(engine: FaceEngine, tmp_path: Path) -> None:
    size = (1280, 720)
    background = face_set.background(size, np.random.default_rng(4))
    people = face_set.walkers(size, 48)
    src = photos.write_video(tmp_path / "walk.mp4", lambda i: face_set.clip_frame(background, people, i)[0], FRAMES)
    transcode(src, tmp_path / "plain.mp4", lambda i, frame: frame)
    astronaut, grace, luispedro = face_set.people()
    refs = [  # other shots of each person as face_ref, and the new face
        (photos.other_shot(photos.astronaut(), (60, 0, 420, 380)), grace.image),
        (photos.other_shot(luispedro.image, (0, 0, 300, 377)), astronaut.image),
    ]
    engine.swap_video_multi(src, tmp_path / "out.mp4", refs)
    before, after = photos.read_frames(tmp_path / "plain.mp4"), photos.read_frames(tmp_path / "out.mp4")
    for person, (_, new) in enumerate(refs):
        closer = 0
        for i in range(0, FRAMES, 4):
            box = face_set.placement(people[person], i)[1]
            to_new, to_old = photos.swap_distances(engine, before[i], after[i], new, box)
            closer += to_new < to_old
        assert closer >= 0.9 * len(range(0, FRAMES, 4)), f"person {person}: {closer} sampled frames swapped"
