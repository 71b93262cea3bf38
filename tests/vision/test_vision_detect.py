"""Face detection: boxes against hand-established boxes, ordering, face-free images, fallbacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from benchmarks import face_set
from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine
from faceswap_flows.aifaceswap.sandbox.vision import detect as detect_module
from tests.vision import photos

Photo = Callable[[], np.ndarray]


def _scaled(box: photos.Box, factor: float) -> photos.Box:
    return (round(box[0] * factor), round(box[1] * factor), round(box[2] * factor), round(box[3] * factor))


def test_backend_is_dlib_with_5_point_landmarks(engine: FaceEngine) -> None:
    assert engine.backend == "dlib-hog+5pt"


@pytest.mark.parametrize(
    ("image", "truth"),
    [(photos.astronaut, photos.ASTRONAUT_FACE), (photos.grace_hopper, photos.GRACE_FACE)],
    ids=["astronaut", "grace_hopper"],
)
def test_one_face_found_where_it_really_is(engine: FaceEngine, image: Photo, truth: photos.Box) -> None:
    boxes = engine.detect(image())
    assert len(boxes) == 1
    assert photos.iou(boxes[0], truth) >= 0.5


def test_landmarks_sit_on_the_eyes_and_nose(engine: FaceEngine) -> None:
    (face,) = engine.faces(photos.astronaut())
    x1, y1, x2, y2 = photos.ASTRONAUT_FACE
    left, right = face.eye_centers
    assert x1 < left[0] < (x1 + x2) / 2 < right[0] < x2
    assert y1 < left[1] < face.landmarks[4][1] < y2  # eyes above the nose


def test_tiled_image_gives_three_faces_left_to_right(engine: FaceEngine) -> None:
    image, truth = photos.tiled()
    boxes = engine.detect(image)
    assert len(boxes) == 3
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    for box, expected in zip(boxes, truth, strict=True):
        assert photos.iou(box, expected) >= 0.5


def test_faces_in_one_column_are_sorted_top_to_bottom(engine: FaceEngine) -> None:
    head, face = photos.crop_resize(photos.astronaut(), photos.ASTRONAUT_HEAD, photos.ASTRONAUT_FACE, 300)
    lower = (face[0], face[1] + 300, face[2], face[3] + 300)
    boxes = engine.detect(np.vstack([head, head]))
    assert len(boxes) == 2
    assert boxes[0][1] < boxes[1][1]
    assert photos.iou(boxes[0], face) >= 0.5 and photos.iou(boxes[1], lower) >= 0.5


@pytest.mark.parametrize("image", [photos.cat, photos.coffee], ids=["cat", "coffee"])
def test_no_boxes_on_face_free_images(engine: FaceEngine, image: Photo) -> None:
    assert engine.detect(image()) == []


def test_large_image_is_scanned_in_strips_and_mapped_back(engine: FaceEngine) -> None:
    big = cv2.resize(photos.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    boxes = engine.detect(big)
    assert len(boxes) == 1
    assert photos.iou(boxes[0], _scaled(photos.ASTRONAUT_FACE, 3)) >= 0.5


def test_old_policy_misses_small_faces_then_its_retry_finds_them() -> None:
    # At 256 px the astronaut's face is ~44 px, under the HOG detector's ~56 px minimum; the old
    # policy's retry at twice the resolution finds it.
    boxes = FaceEngine(min_face=None, max_detect_side=256).detect(photos.astronaut())
    assert len(boxes) == 1 and photos.iou(boxes[0], photos.ASTRONAUT_FACE) >= 0.5


@pytest.mark.parametrize(
    ("size", "widths", "seed"),
    [((1024, 768), [40, 44, 48, 56, 64], 11), ((1600, 1200), [42, 48, 60, 90, 150, 240], 12)],
    ids=["1024x768", "1600x1200"],
)
def test_faces_from_40_px_wide_are_found_in_multi_person_pictures(
    engine: FaceEngine, size: tuple[int, int], widths: list[int], seed: int
) -> None:
    picture = face_set.picture(size, widths, np.random.default_rng(seed))
    assert len(picture.faces) == len(widths)
    boxes = engine.detect(picture.image)
    for truth in picture.faces:
        assert max(photos.iou(b, truth) for b in boxes) >= 0.4, (truth, boxes)
    assert len(boxes) == len(picture.faces), boxes


def test_the_old_policy_misses_the_small_faces_the_new_one_finds(engine: FaceEngine) -> None:
    picture = face_set.picture((1600, 1200), [48, 64, 80], np.random.default_rng(13))
    old = FaceEngine(min_face=None).detect(picture.image)
    new = engine.detect(picture.image)
    assert len(old) < len(new) == 3


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_no_boxes_on_face_free_mosaics_of_real_photos(engine: FaceEngine, seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert engine.detect(face_set.background((1600, 1200), rng)) == []


@pytest.mark.slow
def test_a_48_px_face_in_a_12_megapixel_photo(engine: FaceEngine) -> None:
    picture = face_set.picture((4032, 3024), [48, 160, 320], np.random.default_rng(14))
    boxes = engine.detect(picture.image)
    assert len(boxes) == 3
    for truth in picture.faces:
        assert max(photos.iou(b, truth) for b in boxes) >= 0.4


def test_min_face_must_be_sensible() -> None:
    with pytest.raises(ValueError, match="min_face"):
        FaceEngine(min_face=8)


def test_grayscale_and_rgba_inputs_are_accepted(engine: FaceEngine) -> None:
    gray = cv2.cvtColor(photos.astronaut(), cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(photos.astronaut(), cv2.COLOR_BGR2BGRA)
    assert photos.iou(engine.detect(gray)[0], photos.ASTRONAUT_FACE) >= 0.5
    assert photos.iou(engine.detect(bgra)[0], photos.ASTRONAUT_FACE) >= 0.5


def test_concurrent_detection_gives_the_sequential_results(engine: FaceEngine) -> None:
    images = [photos.astronaut(), photos.grace_hopper(), photos.tiled()[0], photos.cat()] * 3
    expected = [engine.detect(image) for image in images]
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(engine.detect, images)) == expected


def test_haar_fallback_detects_the_same_faces() -> None:
    haar = FaceEngine(backend="haar")
    assert haar.backend == "haar"
    assert photos.iou(haar.detect(photos.astronaut())[0], photos.ASTRONAUT_FACE) >= 0.5
    assert photos.iou(haar.detect(photos.grace_hopper())[0], photos.GRACE_FACE) >= 0.5
    assert haar.detect(photos.cat()) == [] and haar.detect(photos.coffee()) == []


def test_without_dlib_the_engine_falls_back_to_haar_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with caplog.at_level(logging.WARNING, logger="aifaceswap.sandbox.vision"):
        engine = FaceEngine()
    assert engine.backend == "haar"
    assert "dlib is not installed" in caplog.text
    assert len(engine.detect(photos.astronaut())) == 1


def test_without_the_landmark_model_faces_are_aligned_by_box(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(detect_module, "_landmark_model_path", lambda: None)
    with caplog.at_level(logging.WARNING, logger="aifaceswap.sandbox.vision"):
        engine = FaceEngine()
    assert engine.backend == "dlib-hog"
    assert "face-recognition-models not installed" in caplog.text
    (face,) = engine.faces(photos.astronaut())
    assert not face.exact
    assert photos.iou(face.box, photos.ASTRONAUT_FACE) >= 0.5


def test_scan_plan_scales_strips_and_caps() -> None:
    from faceswap_flows.aifaceswap.sandbox.vision.scan import HOG_FACE, plan

    passes = plan(1024, 768, 40)  # small image: upsampled 1.5x, 2 overlapping strips + a coarse pass
    assert [p.scale for p in passes] == [1.5, 1.5, 0.5]
    assert passes[0].top == 0 and passes[1].bottom == 1152 and passes[0].bottom - passes[1].top >= 2 * HOG_FACE
    phone = plan(4032, 3024, 40)  # 27.4 Mpx scanned: under the cap, still 1.5x
    assert phone[0].scale == 1.5
    big = plan(6000, 4000, 40)  # over the cap: the smallest face found grows to ~56 px
    assert round(HOG_FACE / big[0].scale) == 56
    assert len(plan(300, 200, 40)) == 1  # too small to split: one pass


@pytest.mark.parametrize("image", [photos.astronaut, photos.grace_hopper], ids=["astronaut", "grace_hopper"])
@pytest.mark.parametrize("angle", [-10, 10])
def test_faces_tilted_by_10_degrees_are_found(engine: FaceEngine, image: Photo, angle: int) -> None:
    picture = image()
    h, w = picture.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    tilted = cv2.warpAffine(picture, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
    truth = photos.ASTRONAUT_FACE if image is photos.astronaut else photos.GRACE_FACE
    centre = matrix @ np.array([(truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2, 1.0])
    boxes = engine.detect(tilted)
    assert any(b[0] < centre[0] < b[2] and b[1] < centre[1] < b[3] for b in boxes), boxes
