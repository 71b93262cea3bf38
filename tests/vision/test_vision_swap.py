"""Face swap on still images: the face really changes, nothing far from it does."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from benchmarks import face_set
from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine, FaceIndexOutOfRange, NoFaceFound, VisionError
from tests.vision import photos

# Canonical positions of the 5 landmarks (dlib order) in a 64x64 aligned face, and the inner-face window
# (brows to mouth, cheek to cheek) compared by :func:`_aligned`.
_TEMPLATE = np.array([[45, 24], [37, 24], [19, 24], [27, 24], [32, 38]], np.float32)


def _aligned(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The inner face of ``image`` aligned on ``landmarks``: grayscale, zero-mean, unit-variance."""
    matrix, _ = cv2.estimateAffinePartial2D(landmarks, _TEMPLATE, method=cv2.LMEDS)
    crop = cv2.warpAffine(image, matrix, (64, 64))
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)[16:46, 18:46]
    return (gray - gray.mean()) / (gray.std() + 1e-6)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def _outside(box: photos.Box, shape: tuple[int, ...], grow: float = 0.15) -> np.ndarray:
    """Boolean mask of the pixels outside ``box`` grown by ``grow`` of its size on every side."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * grow, (y2 - y1) * grow
    mask = np.ones(shape[:2], bool)
    mask[max(0, int(y1 - dy)) : int(y2 + dy), max(0, int(x1 - dx)) : int(x2 + dx)] = False
    return mask


@pytest.mark.parametrize(
    ("target", "new"),
    [(photos.astronaut, photos.grace_hopper), (photos.grace_hopper, photos.astronaut)],
    ids=["grace-onto-astronaut", "astronaut-onto-grace"],
)
def test_swapped_face_looks_like_the_new_face(
    engine: FaceEngine, target: Callable[[], np.ndarray], new: Callable[[], np.ndarray]
) -> None:
    old_image, new_image = target(), new()
    result = engine.swap(old_image, new_image)
    (old_face,) = engine.faces(old_image)
    (new_face,) = engine.faces(new_image)
    got = _aligned(result, old_face.landmarks)
    to_new = _distance(got, _aligned(new_image, new_face.landmarks))
    to_old = _distance(got, _aligned(old_image, old_face.landmarks))
    # Unchanged output would give to_old == 0; a real swap is much closer to the new face.
    assert to_new < 0.5 * to_old


def test_pixels_far_from_the_face_are_unchanged(engine: FaceEngine) -> None:
    image = photos.astronaut()
    result = engine.swap(image, photos.grace_hopper())
    far = _outside(photos.ASTRONAUT_FACE, image.shape)
    assert np.array_equal(result[far], image[far])
    assert not np.array_equal(result, image)
    assert result.shape == image.shape and result.dtype == np.uint8


def test_inputs_are_not_modified(engine: FaceEngine) -> None:
    image, face = photos.astronaut(), photos.grace_hopper()
    engine.swap(image, face)
    assert np.array_equal(image, photos.astronaut()) and np.array_equal(face, photos.grace_hopper())


def test_box_selects_which_face_is_replaced(engine: FaceEngine) -> None:
    group, truth = photos.tiled()
    result = engine.swap(group, photos.astronaut(), box=truth[1])
    changed = np.any(result != group, axis=2)
    _, xs = np.nonzero(changed)
    x1, _, x2, _ = truth[1]
    assert xs.size > 0
    assert xs.min() >= x1 - (x2 - x1) // 2 and xs.max() < x2 + (x2 - x1) // 2


def test_no_face_in_face_image(engine: FaceEngine) -> None:
    with pytest.raises(NoFaceFound, match="no face found in face_image"):
        engine.swap(photos.astronaut(), photos.cat())


def test_no_face_in_source_image(engine: FaceEngine) -> None:
    with pytest.raises(NoFaceFound, match="no face found in source_image"):
        engine.swap(photos.coffee(), photos.astronaut())


def test_multi_swap_changes_only_the_indexed_faces(engine: FaceEngine) -> None:
    group, truth = photos.tiled()
    new_faces = {0: photos.grace_hopper(), 2: face_set.people()[2].image}  # two different new people
    result = engine.multi_swap(group, list(new_faces.values()), list(new_faces))
    middle_start = truth[1][0] - 60  # the middle tile (Grace Hopper) spans these columns
    middle_end = truth[1][2] + 60
    assert np.array_equal(result[:, middle_start:middle_end], group[:, middle_start:middle_end])
    for (index, new), other in zip(new_faces.items(), list(new_faces.values())[::-1], strict=True):
        to_new, to_old = photos.swap_distances(engine, group, result, new, truth[index])
        to_other, _ = photos.swap_distances(engine, group, result, other, truth[index])
        assert to_new < 0.7 * to_old, f"face {index} did not become its new face ({to_new:.2f} vs {to_old:.2f})"
        assert to_new < to_other, f"face {index} looks more like the other new face ({to_new:.2f}, {to_other:.2f})"
    assert np.array_equal(
        result[_outside(truth[0], group.shape) & _outside(truth[2], group.shape)],
        group[_outside(truth[0], group.shape) & _outside(truth[2], group.shape)],
    )


def test_multi_swap_index_out_of_range(engine: FaceEngine) -> None:
    group, _ = photos.tiled()
    with pytest.raises(FaceIndexOutOfRange, match=r"face index 3 .* 3 face") as info:
        engine.multi_swap(group, [photos.astronaut()], [3])
    assert isinstance(info.value, IndexError) and isinstance(info.value, VisionError)
    with pytest.raises(FaceIndexOutOfRange):
        engine.multi_swap(group, [photos.astronaut()], [-1])


def test_multi_swap_rejects_a_face_image_without_face(engine: FaceEngine) -> None:
    group, _ = photos.tiled()
    with pytest.raises(NoFaceFound, match=r"face_image\[1\]"):
        engine.multi_swap(group, [photos.astronaut(), photos.cat()], [0, 1])


def test_multi_swap_needs_one_index_per_face_image(engine: FaceEngine) -> None:
    group, _ = photos.tiled()
    with pytest.raises(VisionError, match="2 face images for 1 indexes"):
        engine.multi_swap(group, [photos.astronaut(), photos.astronaut()], [0])


def test_haar_backend_swaps_by_box_alignment() -> None:
    haar = FaceEngine(backend="haar")
    image, new = photos.astronaut(), photos.grace_hopper()
    result = haar.swap(image, new)
    (old_face,) = haar.faces(image)
    (new_face,) = haar.faces(new)
    got = _aligned(result, old_face.landmarks)
    to_new = _distance(got, _aligned(new, new_face.landmarks))
    assert to_new < _distance(got, _aligned(image, old_face.landmarks))
    far = _outside(photos.ASTRONAUT_FACE, image.shape)
    assert np.array_equal(result[far], image[far])
