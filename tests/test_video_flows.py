"""The video flows end to end against a real Prefect API, the sandbox (which really swaps faces), the receiver
and local storage; test videos are made at test time from photos that ship inside installed packages."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from prefect.exceptions import ParameterTypeError
from pydantic import ValidationError

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine
from faceswap_flows.flows.budget import BudgetExceeded
from faceswap_flows.flows.exceptions import FaceSelectionFailed
from faceswap_flows.flows.media.video import VideoFacts, video_facts
from faceswap_flows.flows.options import OutputOptions, SwapOptions, VideoOptions
from faceswap_flows.flows.video import multi_video_faceswap, video_faceswap
from tests.vision import photos

FPS = 25
FACE_FRAMES = 30  # 1.2 s: billed as 2 s
PAIR_FRAMES = 30  # 1.2 s
LONG_FRAMES = 50  # 2 s, for trimming
NOISE = 5.0  # mean absolute difference (0-255) two H.264 encodes alone may cause in a region (seen: < 3)
SWAPPED = 10.0  # mean absolute difference a swapped face region shows at least


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flow-videos")


@pytest.fixture(scope="module")
def face_video(video_dir: Path) -> Path:
    """480x360, 25 fps, 1.2 s, the astronaut drifting right, AAC tone."""
    return photos.write_video(video_dir / "face.mp4", lambda i: photos.face_video_frame(i)[0], FACE_FRAMES, fps=FPS)


@pytest.fixture(scope="module")
def long_video(video_dir: Path) -> Path:
    """The same scene, 2 s long, each frame stamped with its number (no two frames alike)."""
    return photos.write_video(
        video_dir / "long.mp4", lambda i: photos.stamp(photos.face_video_frame(i)[0], i), LONG_FRAMES, fps=FPS
    )


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    """Finds the landmarks that align a result's face with the old and the new face."""
    return FaceEngine()


@pytest.fixture(scope="module")
def pair_video(video_dir: Path) -> Path:
    """720x360, 25 fps, 1.2 s: person A (astronaut) on the left, person B (Grace Hopper) on the right."""
    return photos.write_video(video_dir / "pair.mp4", lambda i: photos.pair_video_frame(i)[0], PAIR_FRAMES, fps=FPS)


def region_diff(a: np.ndarray, b: np.ndarray, box: photos.Box) -> float:
    x1, y1, x2, y2 = box
    return float(np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2]).mean())


def stored_video(stack, key: str, folder: Path) -> tuple[Path, VideoFacts]:
    assert key.endswith(".mp4"), key
    local = folder / Path(key).name
    local.write_bytes(stack.storage.read_bytes(key))
    return local, video_facts(local, "result")


async def test_video_faceswap_swaps_the_face_in_every_frame(
    stack, face_video: Path, tmp_path: Path, engine: FaceEngine
) -> None:
    source = video_facts(face_video)
    before = stack.spent()
    outcome = await video_faceswap(str(face_video), str(stack.files["grace"]))
    assert outcome.status == "stored" and outcome.operation == "video_faceswap"
    expected = 2 * math.ceil(FACE_FRAMES / FPS)
    assert outcome.credits == expected == 4
    assert stack.spent() == before + expected

    result, facts = stored_video(stack, outcome.result_key, tmp_path)
    assert (facts.width, facts.height) == (source.width, source.height) == photos.FACE_VIDEO_SIZE
    assert facts.fps == pytest.approx(source.fps) == FPS
    assert facts.has_audio
    old, new = photos.read_frames(face_video), photos.read_frames(result)
    assert len(new) == len(old) == FACE_FRAMES
    for i, (was, now) in enumerate(zip(old, new, strict=True)):
        x1, y1, x2, y2 = photos.face_video_frame(i)[1]
        inner = (x1 + 15, y1 + 10, x2 - 15, y2 - 25)  # brows to mouth
        assert region_diff(now, was, inner) > SWAPPED, f"the face of frame {i} did not change"
        assert region_diff(now, was, (0, 0, 50, 360)) < NOISE, f"the background of frame {i} changed"
        if i % 10 == 0:
            to_new, to_old = photos.swap_distances(engine, was, now, photos.grace_hopper(), (x1, y1, x2, y2))
            assert to_new < to_old, f"frame {i}: not closer to the new face ({to_new:.2f} vs {to_old:.2f})"


async def test_video_faceswap_trims_and_charges_the_trimmed_duration(stack, long_video: Path, tmp_path: Path) -> None:
    start, end = 0.4, 1.2
    full = video_facts(long_video)
    assert 2 * math.ceil(full.duration) >= 4
    before = stack.spent()
    outcome = await video_faceswap(
        str(long_video), str(stack.files["grace"]), video_options=VideoOptions(trim_start=start, trim_end=end)
    )
    expected = 2 * math.ceil(end - start)
    assert outcome.credits == expected == 2
    assert stack.spent() == before + expected

    result, facts = stored_video(stack, outcome.result_key, tmp_path)
    frames = photos.read_frames(result)
    assert abs(len(frames) - (end - start) * FPS) <= 1, len(frames)
    assert facts.duration == pytest.approx(end - start, abs=0.1)
    assert facts.has_audio
    # the result starts where the cut starts: every source frame carries its number, read back from the result
    first = round(start * FPS)
    assert [photos.read_stamp(frame) for frame in frames] == list(range(first, first + len(frames)))
    source_frames = photos.read_frames(long_video)
    x1, y1, x2, y2 = photos.face_video_frame(first)[1]
    assert region_diff(frames[0], source_frames[first], (x1 + 15, y1 + 10, x2 - 15, y2 - 25)) > SWAPPED


@pytest.mark.parametrize(("index", "face"), [(0, "grace"), (1, "astronaut")])
async def test_multi_video_faceswap_changes_only_the_chosen_person(
    stack, pair_video: Path, tmp_path: Path, index: int, face: str, engine: FaceEngine
) -> None:
    before = stack.spent()
    outcome = await multi_video_faceswap(str(pair_video), [str(stack.files[face])], face_indexes=[index])
    expected = 2 + (1 + 1) * 2 * math.ceil(PAIR_FRAMES / FPS)
    assert outcome.credits == expected == 10, "the frame's face detection is in the bill"
    assert stack.spent() == before + expected

    result, facts = stored_video(stack, outcome.result_key, tmp_path)
    assert (facts.width, facts.height) == photos.PAIR_VIDEO_SIZE and facts.has_audio
    old, new = photos.read_frames(pair_video), photos.read_frames(result)
    assert len(new) == len(old) == PAIR_FRAMES
    chosen, other = [], []
    for i, (was, now) in enumerate(zip(old, new, strict=True)):
        boxes = photos.pair_video_frame(i)[1:]
        chosen.append(region_diff(now, was, boxes[index]))
        other.append(region_diff(now, was, boxes[1 - index]))
    assert min(chosen) > SWAPPED, chosen
    assert max(other) < NOISE, other
    new_face = photos.grace_hopper() if face == "grace" else photos.astronaut()
    for i in (0, PAIR_FRAMES - 1):
        box = photos.pair_video_frame(i)[1 + index]
        to_new, to_old = photos.swap_distances(engine, old[i], new[i], new_face, box)
        assert to_new < to_old, f"frame {i}: the chosen face is not closer to its new face ({to_new:.2f}, {to_old:.2f})"


# --- inputs the flows refuse before anything is spent ------------------------------------------------------


@pytest.fixture(scope="module")
def bad_videos(video_dir: Path) -> dict[str, Path]:
    corrupt = video_dir / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = video_dir / "empty.mp4"
    empty.write_bytes(b"")
    return {"corrupt": corrupt, "empty": empty}


async def refused(stack, error: type[Exception], pattern: str, call, cost: int = 0) -> None:
    before = stack.spent()
    with pytest.raises(error, match=pattern):
        await call
    assert stack.spent() == before + cost


async def test_trim_outside_the_video_is_refused(stack, face_video: Path) -> None:
    video, grace = str(face_video), str(stack.files["grace"])
    await refused(
        stack,
        InputValidationError,
        r"trim_end: 5\.0 s is past the end of the video, which lasts 1\.2\d s: choose `trim_end` <=",
        video_faceswap(video, grace, video_options=VideoOptions(trim_end=5.0)),
    )
    await refused(
        stack,
        InputValidationError,
        r"trim_start: 3\.0 s is past the end",
        video_faceswap(video, grace, video_options=VideoOptions(trim_start=3.0)),
    )
    await refused(
        stack,
        InputValidationError,
        r"trim_start: 1\.0 s is not before `trim_end` 0\.5",
        video_faceswap(video, grace, video_options=VideoOptions(trim_start=1.0, trim_end=0.5)),
    )
    await refused(
        stack,
        InputValidationError,
        r"trim_start: must be 0 s or later",
        video_faceswap(video, grace, video_options=VideoOptions(trim_start=-1.0)),
    )


@pytest.mark.parametrize("which", ["corrupt", "empty"])
async def test_unreadable_videos_are_refused(stack, bad_videos: dict[str, Path], which: str) -> None:
    video = str(bad_videos[which])
    fix = "is not a video FFmpeg can read" if which == "corrupt" else "is empty"
    await refused(
        stack, InputValidationError, f"source_video: .*{fix}", video_faceswap(video, str(stack.files["grace"]))
    )
    await refused(
        stack,
        InputValidationError,
        f"source_video: .*{fix}",
        multi_video_faceswap(video, [str(stack.files["grace"])]),
    )


async def test_enhance_must_be_0_1_or_2(stack, face_video: Path, pair_video: Path) -> None:
    """A wrong level is refused by the parameter model, naming the field, before anything is spent: typed in code,
    or given as a deployment's JSON parameters."""
    with pytest.raises(ValidationError, match=r"enhance\n.*must be 0 .*got 3"):
        VideoOptions(enhance=3)
    grace = str(stack.files["grace"])
    await refused(
        stack,
        ParameterTypeError,
        r"video_options\.enhance.*got 3",
        video_faceswap(str(face_video), grace, video_options={"enhance": 3}),  # type: ignore[arg-type]
    )
    await refused(
        stack,
        ParameterTypeError,
        r"video_options\.enhance.*got 3",
        multi_video_faceswap(str(pair_video), [grace], video_options={"enhance": 3}),  # type: ignore[arg-type]
    )


async def test_multi_video_takes_at_most_three_faces(stack, pair_video: Path) -> None:
    faces = [str(stack.files["grace"])] * 4
    await refused(
        stack, InputValidationError, r"face_images: .*1 to 3.*got 4", multi_video_faceswap(str(pair_video), faces)
    )


async def test_multi_video_face_index_out_of_range_costs_only_the_extract(stack, pair_video: Path) -> None:
    await refused(
        stack,
        FaceSelectionFailed,
        r"face_indexes: 2 credits were charged .* found 2 face\(s\).*face_indexes \[2\] out of range",
        multi_video_faceswap(str(pair_video), [str(stack.files["grace"])], face_indexes=[2]),
        cost=2,
    )


async def test_frame_time_beyond_the_video_is_refused(stack, pair_video: Path) -> None:
    await refused(
        stack,
        InputValidationError,
        r"frame_time: 5\.0 s is outside the video",
        multi_video_faceswap(str(pair_video), [str(stack.files["grace"])], frame_time=5.0),
    )


async def test_budget_guard_refuses_video_before_spending(stack, face_video: Path, pair_video: Path) -> None:
    grace = str(stack.files["grace"])
    await refused(
        stack,
        BudgetExceeded,
        "max_credits: this needs 4 credits",
        video_faceswap(str(face_video), grace, options=SwapOptions(max_credits=3)),
    )
    await refused(
        stack,
        BudgetExceeded,
        "max_credits: this needs 10 credits",
        multi_video_faceswap(str(pair_video), [grace], options=SwapOptions(max_credits=9)),
    )


async def test_a_video_refuses_a_visible_watermark_before_any_cost(stack, face_video: Path, pair_video: Path) -> None:
    """Videos get no visible watermark: asking for one is refused, naming the field, before any credit."""
    grace, marked = str(stack.files["grace"]), OutputOptions(watermark="AI-GENERATED")
    says = r"output\.watermark: videos get no visible watermark \(asked for 'AI-GENERATED'\); leave it empty"
    await refused(stack, InputValidationError, says, video_faceswap(str(face_video), grace, output=marked))
    await refused(stack, InputValidationError, says, multi_video_faceswap(str(pair_video), [grace], output=marked))
