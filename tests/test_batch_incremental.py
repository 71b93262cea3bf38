"""An incremental batch over an S3 prefix (moto over HTTP, the sandbox, a real Prefect server): a second run pays
for nothing, a run after two files were added pays for those two, and force redoes the work; and prefect.yaml's
nightly deployment over a prefix, served, paying only for new or changed files night after night."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import cv2
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.deployments import run_deployment

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.batch.flow import BatchReport, batch_faceswap
from faceswap_flows.flows.deployments import declared_deployment
from faceswap_flows.flows.options import BlockNames
from faceswap_flows.flows.provenance.consent import ConsentRecord, file_sha256, save_consent
from faceswap_flows.flows.tasks.waiting import stored_event
from tests.media import likeness, read_image
from tests.support import served_deployments, sweep_now
from tests.vision import photos


def png(image) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


async def test_a_prefix_pays_only_for_new_files(stack, s3_storage: MediaStorage) -> None:
    block = f"batch-s3-{uuid.uuid4().hex[:8]}"
    await s3_storage.asave(block, overwrite=True)
    face = photos.crop_resize(photos.grace_hopper(), photos.GRACE_HEAD, photos.GRACE_FACE, 300)[0]
    s3_storage.write_bytes("faces/ambassador.png", png(face))
    s3_storage.write_bytes("catalogue/2026-12/astronaut.png", png(photos.astronaut()))
    s3_storage.write_bytes("catalogue/2026-12/team", png(photos.tiled()[0]))  # an image without an extension
    s3_storage.write_bytes("catalogue/2026-12/notes.txt", b"shoot notes, not an image")
    s3_storage.write_bytes("catalogue/2026-12/drafts/astronaut-draft.png", png(photos.astronaut()[:, ::-1]))
    options = {"face_image": "faces/ambassador.png", "exclude": ["drafts/*"], "blocks": BlockNames(storage=block)}
    before = stack.spent()

    first = await batch_faceswap(source="catalogue/2026-12/", **options)
    assert sorted((i.id, i.status) for i in first.items) == [("astronaut.png", "stored"), ("team", "stored")]
    assert first.credits == 4 and stack.spent() == before + 4
    stored = {i.id: i.result_key for i in first.items}
    swapped = read_image(s3_storage.read_bytes(stored["astronaut.png"]))
    assert likeness(swapped, photos.grace_hopper()) > likeness(swapped, photos.astronaut())

    second = await batch_faceswap(source="catalogue/2026-12/", **options)
    assert [i.status for i in second.items] == ["done", "done"] and second.done == 2
    assert second.credits == 0 and stack.spent() == before + 4, "nothing submitted again"
    assert {i.id: i.result_key for i in second.items} == stored

    s3_storage.write_bytes("catalogue/2026-12/grace.png", png(photos.grace_hopper()))
    s3_storage.write_bytes("catalogue/2026-12/panel.png", png(photos.pair_video_frame(0)[0]))
    glob = f"{s3_storage.basepath}/catalogue/2026-12/*"  # the same files as a full s3:// glob
    plan = await batch_faceswap(source=glob, plan=True, **options)
    assert sorted((i.label, i.status) for i in plan.items) == [
        ("astronaut.png", "done"), ("grace.png", "run"), ("panel.png", "run"), ("team", "done")]  # fmt: skip
    assert plan.credits == 4 and plan.ignored == ["notes.txt"]
    third = await batch_faceswap(source=glob, **options)
    assert sorted(i.status for i in third.items) == ["done", "done", "stored", "stored"]
    assert third.credits == 4 and stack.spent() == before + 8, "only the two new files are paid for"

    redone = await batch_faceswap(source="catalogue/2026-12/", include=["astronaut.*"], force=True, **options)
    assert [(i.id, i.status) for i in redone.items] == [("astronaut.png", "stored")]
    assert redone.items[0].result_key != stored["astronaut.png"], "a stored result is never overwritten"
    assert stack.spent() == before + 10


async def served_deployment_id(name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            found = await client.read_deployments(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
            )
            if found:
                return str(found[0].id)
            await asyncio.sleep(0.5)
    raise AssertionError(f"deployment {name} was not served in {timeout}s")


async def night(stack, deployment_id: str) -> BatchReport:
    """One night's run of the deployment, as its schedule starts it (declared parameters); then the sweep that
    the store-results deployment would run stores what it submitted."""
    since = datetime.now(UTC) - timedelta(seconds=2)
    run = await run_deployment(deployment_id, timeout=300)
    assert run.state is not None and run.state.is_completed(), run.state
    (key,) = [k for k in stack.storage.list("reports/", suffixes=[".json"]) if f"-{str(run.id)[:8]}-" in k and
              not k.endswith("-provenance.json")]  # fmt: skip
    report = BatchReport.model_validate_json(stack.storage.read_bytes(key))
    submitted = [item for item in report.items if item.status == "submitted"]
    if submitted:
        await asyncio.to_thread(stack.sandbox.wait_idle)
        for _ in range(60):
            if all([await stored_event(item.task_id) for item in submitted]):
                break
            await asyncio.sleep(0.5)
        swept = await sweep_now(since)
        assert {item.result_key for item in submitted} <= set(swept.stored_keys)
    return report


@pytest.mark.slow
async def test_the_nightly_deployment_over_a_prefix_pays_only_for_new_files(stack, prefect_api, tmp_path) -> None:
    declared = declared_deployment("nightly-batch")["parameters"]
    prefix, face = declared["source"], declared["face_image"]
    head = photos.crop_resize(photos.grace_hopper(), photos.GRACE_HEAD, photos.GRACE_FACE, 300)[0]
    face_bytes = cv2.imencode(".jpg", head)[1].tobytes()
    stack.storage.write_bytes(face, face_bytes)
    assert declared["options"]["require_consent"] is True, "the nightly deployment swaps only registered face photos"
    consent = ConsentRecord(
        sha256=file_sha256(face_bytes), consented_by="the ambassador", consented_at=date.today(), scope="catalogue"
    )
    save_consent(stack.storage, consent)
    stack.storage.write_bytes(f"{prefix}left.png", png(photos.face_video_frame(20)[0]))
    stack.storage.write_bytes(f"{prefix}pair.png", png(photos.pair_video_frame(9)[0]))
    stack.storage.write_bytes(f"{prefix}shoot-notes.txt", b"not an image")
    before = stack.spent()
    with served_deployments(["nightly-batch"], prefect_api, tmp_path / "serve.log"):
        deployment_id = await served_deployment_id("nightly-batch")
        first = await night(stack, deployment_id)
        assert sorted(i.status for i in first.items) == ["submitted", "submitted"] and stack.spent() == before + 4
        assert all(stack.storage.exists(i.result_key) for i in first.items)
        assert all(i.result_key.startswith("results/nightly/") for i in first.items)
        second = await night(stack, deployment_id)
        assert [i.status for i in second.items] == ["done", "done"] and stack.spent() == before + 4
        stack.storage.write_bytes(f"{prefix}right.png", png(photos.face_video_frame(40)[0]))
        stack.storage.write_bytes(f"{prefix}pair.png", png(photos.pair_video_frame(21)[0]))  # changed
        third = await night(stack, deployment_id)
        assert sorted(i.status for i in third.items) == ["done", "submitted", "submitted"]
        assert stack.spent() == before + 8, "the new file and the changed one only"
