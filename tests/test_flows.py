"""Every flow end to end against a real Prefect API, the sandbox, the receiver and local storage."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client

from faceswap_flows.aifaceswap.errors import InvalidRequestError
from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.budget import BudgetExceeded
from faceswap_flows.flows.image import extract_faces, faceswap, multi_faceswap
from faceswap_flows.flows.options import SwapOptions
from tests.media import likeness, read_image
from tests.vision import photos


async def artifacts_of(flow_run_id: str) -> dict[str, str]:
    async with get_client() as client:
        found = await client.request(
            "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
        )
    return {a["key"] or a["type"]: a["data"] for a in found.json()}


async def test_faceswap_stores_a_real_swap(stack) -> None:
    before = stack.spent()
    state = await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), return_state=True)
    outcome = await state.result()
    assert outcome.status == "stored" and outcome.credits == 2
    result = read_image(stack.storage.read_bytes(outcome.result_key))
    assert likeness(result, photos.grace_hopper()) > likeness(result, photos.astronaut())
    assert stack.spent() == before + 2
    artifacts = await artifacts_of(str(state.state_details.flow_run_id))
    assert outcome.task_id in artifacts["result-faceswap"]


async def test_extract_faces_numbers_every_face(stack) -> None:
    found = await extract_faces(str(stack.files["group"]))
    _, truth = photos.tiled()
    assert [round(photos.iou(box.as_tuple(), t), 1) >= 0.5 for box, t in zip(found.faces, truth, strict=True)] == [
        True
    ] * 3
    picture = read_image(stack.storage.read_bytes(found.picture_key))
    assert picture.shape[:2] == read_image(stack.files["group"].read_bytes()).shape[:2]


async def test_multi_faceswap_by_index(stack) -> None:
    outcome = await multi_faceswap(str(stack.files["group"]), [str(stack.files["grace"])], face_indexes=[1])
    result = read_image(stack.storage.read_bytes(outcome.result_key))
    group, boxes = photos.tiled()
    for untouched in (0, 2):
        x1, y1, x2, y2 = boxes[untouched]
        assert (result[y1:y2, x1:x2] == group[y1:y2, x1:x2]).all(), f"face {untouched} must stay as it was"
    to_new, to_old = photos.swap_distances(FaceEngine(), group, result, photos.grace_hopper(), boxes[1])
    assert to_new < 0.7 * to_old, f"face 1 did not become the new face ({to_new:.2f} vs {to_old:.2f})"
    assert outcome.credits == 5


async def test_multi_faceswap_by_reference_photo(stack, tmp_path: Path) -> None:
    import cv2

    # a different picture of the person to replace (Grace Hopper, the middle face), not the group's own pixels
    reference = tmp_path / "who.png"
    cv2.imwrite(str(reference), photos.other_shot(photos.grace_hopper(), (40, 0, 480, 520)))
    outcome = await multi_faceswap(
        str(stack.files["group"]), [str(stack.files["astronaut"])], reference_images=[str(reference)]
    )
    result = read_image(stack.storage.read_bytes(outcome.result_key))
    group, boxes = photos.tiled()
    for untouched in (0, 2):
        x1, y1, x2, y2 = boxes[untouched]
        assert (result[y1:y2, x1:x2] == group[y1:y2, x1:x2]).all(), f"face {untouched} is not Grace Hopper"
    to_new, to_old = photos.swap_distances(FaceEngine(), group, result, photos.astronaut(), boxes[1])
    assert to_new < 0.7 * to_old, f"Grace Hopper's face did not become the astronaut's ({to_new:.2f}, {to_old:.2f})"


async def test_multi_faceswap_index_out_of_range_spends_nothing(stack) -> None:
    before = stack.spent()
    with pytest.raises(InvalidRequestError, match=r"index\[0\].*face 7 does not exist.*3 face"):
        await multi_faceswap(str(stack.files["group"]), [str(stack.files["grace"])], face_indexes=[7])
    assert stack.spent() == before


async def test_budget_guard_refuses_before_spending(stack) -> None:
    before = stack.spent()
    with pytest.raises(BudgetExceeded, match="max_credits"):
        await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), options=SwapOptions(max_credits=1))
    assert stack.spent() == before


async def test_batch_with_a_bad_item_and_a_budget(stack, tmp_path: Path) -> None:
    files = stack.files
    manifest = tmp_path / "manifest.jsonl"
    lines = [
        {"id": "ok-1", "source_image": str(files["astronaut"]), "face_image": str(files["grace"])},
        {"id": "missing", "source_image": str(tmp_path / "nope.png"), "face_image": str(files["grace"])},
        {"id": "ok-2", "source_image": str(files["grace"]), "face_image": str(files["astronaut"])},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines))
    before = stack.spent()
    state = await batch_faceswap(str(manifest), max_concurrency=2, force=True, return_state=True)
    assert state.is_failed() and "2 stored" in state.message and "1 failed" in state.message
    report = await state.result(raise_on_failure=False)
    by_id = {item.id: item for item in report.items}
    assert by_id["ok-1"].status == by_id["ok-2"].status == "stored"
    assert by_id["missing"].status == "failed" and "nope.png" in by_id["missing"].error
    assert report.credits == 4 and stack.spent() == before + 4
    assert json.loads(stack.storage.read_bytes(report.report_key))["stored"] == 2

    csv_manifest = tmp_path / "manifest.csv"
    csv_manifest.write_text(
        "source_image,face_image\n"
        + "\n".join(
            f"{files[a]},{files[b]}" for a, b in (("astronaut", "grace"), ("grace", "astronaut"), ("group", "grace"))
        )
    )
    limited = await batch_faceswap(
        str(csv_manifest), options=SwapOptions(max_credits=4), max_concurrency=1, force=True, return_state=True
    )
    assert limited.is_failed() and "1 skipped" in limited.message
    report = await limited.result(raise_on_failure=False)
    assert [item.status for item in report.items] == ["stored", "stored", "skipped"]


async def test_result_is_a_real_http_fetch_of_the_sandbox_result(stack) -> None:
    outcome = await faceswap(str(stack.files["grace"]), str(stack.files["astronaut"]))
    published = httpx.get(stack.storage.url_for(outcome.result_key))
    assert published.status_code == 200 and published.content == stack.storage.read_bytes(outcome.result_key)
