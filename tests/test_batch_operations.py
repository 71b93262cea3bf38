"""The batch flow end to end (real Prefect server, sandbox, receiver, storage): all four operations in one
manifest, a plan whose figures are what the run then charges, bad rows refused with their lines for free, and
a retry of the failed items only."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from faceswap_flows.aifaceswap.pricing import billed_seconds
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.batch.rows import flow_name
from faceswap_flows.flows.media.video import video_facts
from faceswap_flows.flows.options import SwapOptions
from tests.media import likeness, read_image, write_png
from tests.vision import photos

FPS = 25


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("batch-videos")
    return {
        "face": photos.write_video(folder / "face.mp4", lambda i: photos.face_video_frame(i)[0], 40, fps=FPS),
        "pair": photos.write_video(folder / "pair.mp4", lambda i: photos.pair_video_frame(i)[0], 30, fps=FPS),
    }


def mixed_manifest(stack, videos: dict[str, Path], folder: Path) -> Path:
    f = {name: str(path) for name, path in stack.files.items()}
    rows = [
        {"operation": "faceswap", "source_image": f["astronaut"], "face_image": f["grace"], "id": "portrait"},
        {"operation": "multi_faceswap", "source_image": f["group"], "face_images": f"{f['grace']}|{f['grace']}",
         "face_indexes": "0|2", "id": "team-by-index"},
        {"operation": "multi_faceswap", "source_image": f["group"], "face_images": f["astronaut"],
         "reference_images": f["grace"], "id": "team-by-reference"},
        {"operation": "video-faceswap", "source_video": str(videos["face"]), "face_image": f["grace"], "enhance": "1",
         "trim_start": "0.2", "trim_end": "1.2", "id": "clip"},
        {"operation": "multi-video-faceswap", "source_video": str(videos["pair"]), "face_images": f["grace"],
         "face_indexes": "0", "id": "panel"},
    ]  # fmt: skip
    columns = ["operation", "source_image", "source_video", "face_image", "face_images", "face_indexes",
               "reference_images", "enhance", "trim_start", "trim_end", "id"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    manifest = folder / "mixed.csv"
    manifest.write_text(buffer.getvalue())
    return manifest


def region_diff(a: np.ndarray, b: np.ndarray, box: photos.Box) -> float:
    x1, y1, x2, y2 = box
    return float(np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2]).mean())


@pytest.mark.slow
async def test_a_mixed_manifest_runs_all_four_operations_for_the_planned_credits(stack, videos, tmp_path) -> None:
    manifest = str(mixed_manifest(stack, videos, tmp_path))
    before = stack.spent()
    plan = await batch_faceswap(manifest, plan=True, force=True)
    assert stack.spent() == before, "a plan calls no paid endpoint"
    assert [item.status for item in plan.items] == ["run"] * 5
    by_op = plan.by_operation()
    trimmed = by_op["video_faceswap"]["seconds"]
    assert trimmed == pytest.approx(1.0, abs=0.1), "the trimmed second, read from the trimmed file"
    assert by_op["multi_video_faceswap"]["seconds"] == pytest.approx(1.2, abs=0.05)
    # 2; 5; 5 + 2 to find the group's faces + 2 for the reference; 4 a second at enhance 1; 2 + (1+1+0)*2*2 s
    assert {op: t["credits"] for op, t in by_op.items()} == {
        "faceswap": 2, "multi_faceswap": 14, "video_faceswap": 4 * billed_seconds(trimmed),
        "multi_video_faceswap": 10}  # fmt: skip
    planned_csv = list(csv.DictReader(io.StringIO(stack.storage.read_bytes(plan.csv_key).decode())))
    assert [row["status"] for row in planned_csv] == ["run"] * 5
    assert [int(row["credits"]) for row in planned_csv] == [item.credits for item in plan.items]

    report = await batch_faceswap(manifest, options=SwapOptions(max_credits=plan.credits), force=True)
    assert [item.status for item in report.items] == ["stored"] * 5, [item.error for item in report.items]
    assert report.credits == plan.credits == stack.spent() - before
    assert [item.credits for item in report.items] == [item.credits for item in plan.items]
    keys = [item.result_key for item in report.items]
    assert keys == [item.result_key for item in plan.items] and all(k.startswith("results/batch/") for k in keys)

    portrait = read_image(stack.storage.read_bytes(keys[0]))
    assert likeness(portrait, photos.grace_hopper()) > likeness(portrait, photos.astronaut())
    group, boxes = photos.tiled()
    by_index = read_image(stack.storage.read_bytes(keys[1]))
    assert region_diff(by_index, group, boxes[0]) > 10 and region_diff(by_index, group, boxes[2]) > 10
    assert region_diff(by_index, group, boxes[1]) < 5, "the face not asked for is left alone"
    by_reference = read_image(stack.storage.read_bytes(keys[2]))
    assert region_diff(by_reference, group, boxes[1]) > 10, "the face most like the reference (Grace) is replaced"
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(stack.storage.read_bytes(keys[3]))
    assert video_facts(clip).duration == pytest.approx(1.0, abs=0.1), "the trimmed second only"
    panel = tmp_path / "panel.mp4"
    panel.write_bytes(stack.storage.read_bytes(keys[4]))
    new, old = photos.read_frames(panel)[10], photos.pair_video_frame(10)[0]
    _frame, left, right = photos.pair_video_frame(10)
    assert region_diff(new, old, left) > 10 and region_diff(new, old, right) < region_diff(new, old, left)
    for key in keys:
        assert stack.storage.exists(key + ".provenance.json")
    saved = json.loads(stack.storage.read_bytes(report.report_key))
    assert saved["credits"] == saved["planned_credits"] == plan.credits
    rows = list(csv.DictReader(io.StringIO(stack.storage.read_bytes(report.csv_key).decode())))
    assert [r["operation"] for r in rows] == [flow_name(i.operation) for i in report.items] and rows[0]["task_id"]
    flows = ["faceswap", "multi-faceswap", "multi-faceswap", "video-faceswap", "multi-video-faceswap"]
    assert [r["operation"] for r in rows] == flows, "the report names each operation's flow, however the manifest did"


async def test_bad_rows_are_refused_with_their_lines_before_anything_is_spent(stack, tmp_path) -> None:
    f = {name: str(path) for name, path in stack.files.items()}
    manifest = tmp_path / "bad.jsonl"
    lines = [
        {"source_image": f["grace"], "face_image": f["astronaut"], "id": "good"},
        {"operation": "multi_faceswap", "source_image": f["group"], "face_images": [f["grace"]], "face_indexes": [-1]},
        {"operation": "video_faceswap", "source_video": f["astronaut"], "face_image": f["grace"]},
        {"source_image": f["note"], "face_image": f["grace"]},
        {"source_image": f["astronaut"], "face_image": f["empty"]},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + '\n{"source_image": \n')
    before = stack.spent()
    plan = await batch_faceswap(str(manifest), plan=True, force=True)
    assert [(i.line, i.status) for i in plan.items] == [(1, "run")] + [(n, "refused") for n in range(2, 7)]
    reasons = [i.reason for i in plan.items[1:]]
    assert reasons[0].startswith("manifest line 2: index: face indexes start at 0")
    assert reasons[1].startswith("manifest line 3: source_video: ") and "pass a video" in reasons[1]
    assert reasons[2].startswith("manifest line 4: source_image: ") and "is not an image" in reasons[2]
    assert reasons[3].startswith("manifest line 5: face_image: ") and "is empty" in reasons[3]
    assert reasons[4].startswith("manifest line 6: not a JSON object")
    assert plan.credits == 2 and stack.spent() == before

    state = await batch_faceswap(str(manifest), force=True, return_state=True)
    report = await state.result(raise_on_failure=False)
    assert state.is_failed() and "5 refused" in state.message
    assert [i.status for i in report.items] == ["stored"] + ["failed"] * 5
    assert all(i.error.startswith(f"refused before submission: manifest line {i.line}: ") for i in report.items[1:])
    assert stack.spent() == before + 2 == before + report.credits


async def test_retry_failed_runs_only_the_failed_items_of_a_report(stack, tmp_path) -> None:
    late = tmp_path / "late" / "portrait.png"
    f = {name: str(path) for name, path in stack.files.items()}
    manifest = tmp_path / "retry.jsonl"
    lines = [
        {"source_image": f["grace"], "face_image": f["astronaut"], "id": "ready"},
        {"source_image": str(late), "face_image": f["grace"], "id": "late"},
        {"source_image": f["group"], "face_image": f["astronaut"], "id": "ready-too"},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines))
    before = stack.spent()
    first = await (await batch_faceswap(str(manifest), force=True, return_state=True)).result(raise_on_failure=False)
    assert [i.status for i in first.items] == ["stored", "failed", "stored"] and stack.spent() == before + 4

    write_png(late, photos.face_video_frame(7)[0])  # a photo no other test swaps: not already done
    retried = await batch_faceswap(retry_failed=first.report_key)
    assert [(i.id, i.line, i.status) for i in retried.items] == [("late", 2, "stored")]
    assert retried.credits == 2 and stack.spent() == before + 6
    result = read_image(stack.storage.read_bytes(retried.items[0].result_key))
    assert likeness(result, photos.grace_hopper()) > likeness(result, photos.astronaut())
