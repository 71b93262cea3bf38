"""Done means done, whoever stored it, and failures are remembered (issue #27, items 2 and 4): a batch whose answers
were lost, collected by hand, is not paid again by ``retry_failed`` or a rerun; a rerun collects an arrived callback
for free and does not resend a job whose outcome is unknown; a job the service failed (a photo without a face) is not
paid again night after night unless ``retry_failed`` names it or ``force``, whether the batch's wait or the
store-results sweep saw it fail. Charges are counted on the sandbox's own ledger."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceswap_flows.blocks import MediaStorage, WebhookReceiver
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.collect import store_result
from faceswap_flows.flows.exceptions import ResultNotAvailable
from faceswap_flows.flows.options import BlockNames, SwapOptions
from faceswap_flows.flows.tasks.waiting import stored_event
from faceswap_flows.flows.work_index import read_entry
from tests.support import RECEIVER_SECRET, SANDBOX_KEY, sweep_now
from tests.vision import photos

LOST_ANSWERS = {"error_after_accept_rate": 1.0, "delay_webhook_rate": 1.0}
JOB_IN_ERROR = re.compile(r"collect --job (\w+)")


def charges(stack) -> int:
    """Paid calls the sandbox charged (refunds of failed jobs do not undo a charge)."""
    return sum(1 for entry in stack.sandbox.ledger(SANDBOX_KEY)["entries"] if entry["kind"] == "charge")


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


async def own_blocks(stack, storage: MediaStorage, grace: float = 300.0) -> BlockNames:
    """A fresh storage (its own batch index) and the stack's receiver with ``grace`` for unknown outcomes."""
    name = uuid.uuid4().hex[:8]
    await storage.asave(f"remembered-{name}", overwrite=True)
    receiver = WebhookReceiver(public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET)
    receiver.lost_answer_grace_seconds = grace
    await receiver.asave(f"remembered-receiver-{name}", overwrite=True)
    return BlockNames(storage=f"remembered-{name}", receiver=f"remembered-receiver-{name}")


def three_swaps(stack, folder: Path) -> str:
    pairs = [("astronaut", "grace"), ("grace", "astronaut"), ("group", "grace")]
    files = stack.files
    rows = [{"id": f"{s}-{f}", "source_image": str(files[s]), "face_image": str(files[f])} for s, f in pairs]
    manifest = folder / "three.jsonl"
    manifest.write_text("\n".join(json.dumps(row) for row in rows))
    return str(manifest)


async def callbacks_stored(subjects: list[str], by_job: bool = True, timeout: float = 60) -> list[dict]:
    """The callback events of these jobs (or tasks) once the Prefect API has stored them all."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [await stored_event(subject, by_job=by_job) for subject in subjects]
        if all(found) or asyncio.get_running_loop().time() > deadline:
            assert all(found), f"callbacks not stored: {subjects}"
            return found  # type: ignore[return-value]
        await asyncio.sleep(0.5)


async def lost_answers_batch(stack, faults, manifest: str, blocks: BlockNames, delay: float):
    """A batch whose three answers are lost (500 after accepting; callbacks ``delay`` s late, past the grace)."""
    faults(**LOST_ANSWERS, delay_webhook_seconds=delay)
    before = charges(stack)
    state = await batch_faceswap(manifest, blocks=blocks, return_state=True)
    assert state.is_failed()
    report = await state.result(raise_on_failure=False)
    assert [item.status for item in report.items] == ["failed"] * 3 and charges(stack) == before + 3
    jobs = [JOB_IN_ERROR.search(item.error or "") for item in report.items]
    assert all(jobs), [item.error for item in report.items]
    return report, [job.group(1) for job in jobs]  # type: ignore[union-attr]


async def test_collect_then_retry_failed_or_a_rerun_pays_nothing(stack, faults, s3_storage, tmp_path: Path) -> None:
    blocks = await own_blocks(stack, s3_storage, grace=1.0)
    manifest = three_swaps(stack, tmp_path)
    report, jobs = await lost_answers_batch(stack, faults, manifest, blocks, delay=3.0)
    await asyncio.to_thread(stack.sandbox.wait_idle)
    faults()  # from here a submission would be answered, charged and stored: only the ledger can tell
    await callbacks_stored(jobs)
    collected = [await store_result("", job_id=job) for job in jobs]
    assert all(s3_storage.exists(outcome.provenance_key) for outcome in collected)
    results = sorted(s3_storage.list("results/"))
    paid = charges(stack)

    retried = await batch_faceswap(retry_failed=report.report_key, blocks=blocks)
    assert [item.status for item in retried.items] == ["done"] * 3 and retried.credits == 0
    assert [item.result_key for item in retried.items] == [outcome.result_key for outcome in collected]
    rerun = await batch_faceswap(manifest, blocks=blocks)
    assert [item.status for item in rerun.items] == ["done"] * 3
    assert charges(stack) == paid, "neither the retry nor the rerun paid again"
    assert sorted(s3_storage.list("results/")) == results, "nothing was stored twice"


async def test_a_rerun_stores_arrived_callbacks_free_and_never_resends_an_unknown_outcome(
    stack, faults, s3_storage, tmp_path: Path
) -> None:
    blocks = await own_blocks(stack, s3_storage, grace=1.0)
    manifest = three_swaps(stack, tmp_path)
    _report, jobs = await lost_answers_batch(stack, faults, manifest, blocks, delay=20.0)
    paid = charges(stack)

    waiting = await batch_faceswap(manifest, blocks=blocks, return_state=True)  # callbacks still on their way
    assert waiting.is_failed()
    unknown = await waiting.result(raise_on_failure=False)
    assert [item.status for item in unknown.items] == ["failed"] * 3 and charges(stack) == paid
    for item, job in zip(unknown.items, jobs, strict=True):
        assert f"the outcome of job {job}'s submission is unknown" in (item.error or "")
        assert f"`faceswap-flows collect --job {job}`" in (item.error or "")

    await asyncio.to_thread(stack.sandbox.wait_idle)
    faults()
    await callbacks_stored(jobs)
    plan = await batch_faceswap(manifest, blocks=blocks, plan=True)
    assert [item.status for item in plan.items] == ["collect"] * 3 and plan.credits == 0
    rerun = await batch_faceswap(manifest, blocks=blocks)
    assert [item.status for item in rerun.items] == ["stored"] * 3 and rerun.credits == 0
    assert [item.result_key for item in rerun.items] == [item.result_key for item in plan.items]
    assert all(s3_storage.exists(item.provenance_key) for item in rerun.items)
    assert charges(stack) == paid, "the arrived results were stored without paying again"
    again = await batch_faceswap(manifest, blocks=blocks)
    assert [item.status for item in again.items] == ["done"] * 3 and charges(stack) == paid


def shoot(storage: MediaStorage) -> dict[str, str]:
    """A prefix with one portrait and one photo without a face, and a face photo."""
    head = photos.crop_resize(photos.grace_hopper(), photos.GRACE_HEAD, photos.GRACE_FACE, 300)[0]
    storage.write_bytes("faces/ambassador.png", png(head))
    storage.write_bytes("shoot/astronaut.png", png(photos.astronaut()))
    storage.write_bytes("shoot/cat.png", png(photos.cat()))
    return {"source": "shoot/", "face_image": "faces/ambassador.png"}


async def test_a_face_free_photo_fails_once_and_is_paid_again_only_when_asked(stack, s3_storage) -> None:
    blocks = await own_blocks(stack, s3_storage)
    where = shoot(s3_storage)
    before = charges(stack)
    first = await batch_faceswap(**where, blocks=blocks, return_state=True)
    report = await first.result(raise_on_failure=False)
    assert sorted((i.id, i.status) for i in report.items) == [("astronaut.png", "stored"), ("cat.png", "failed")]
    assert charges(stack) == before + 2

    plan = await batch_faceswap(**where, blocks=blocks, plan=True)
    (cat,) = [item for item in plan.items if item.label == "cat.png"]
    (failed,) = [item for item in report.items if item.id == "cat.png"]
    noted = read_entry(s3_storage, cat.fingerprint or "")
    assert noted is not None and noted.failure is not None and noted.failure.seen_by == "batch"
    assert (failed.error or "").startswith(f"task {noted.failure.task_id} (job {noted.failure.job_id}): the service")
    assert failed.task_id == noted.failure.task_id == cat.task_id and noted.images == [
        "shoot/cat.png",
        "faces/ambassador.png",
    ]
    assert cat.status == "failed_before" and cat.credits == 0 and plan.credits == 0
    assert f"on {datetime.now(UTC):%Y-%m-%d}" in cat.reason and "no face" in cat.reason
    assert "`faceswap-flows run extract-faces --source shoot/cat.png`" in cat.reason
    rows = list(csv.DictReader(io.StringIO(s3_storage.read_bytes(plan.csv_key).decode())))
    assert [row["status"] for row in rows if row["item"] == "cat.png"] == ["failed before"]

    rerun = await batch_faceswap(**where, blocks=blocks, return_state=True)
    assert rerun.is_failed()
    again = await rerun.result(raise_on_failure=False)
    assert sorted((i.id, i.status) for i in again.items) == [("astronaut.png", "done"), ("cat.png", "failed")]
    (not_sent,) = [item for item in again.items if item.id == "cat.png"]
    assert (not_sent.error or "").startswith(f"failed before: task {noted.failure.task_id}") and not_sent.credits == 0
    assert charges(stack) == before + 2, "the rerun did not pay for the face-free photo again"

    retried = await batch_faceswap(retry_failed=again.report_key, blocks=blocks, return_state=True)
    assert [i.id for i in (await retried.result(raise_on_failure=False)).items] == ["cat.png"]
    assert charges(stack) == before + 3, "retry_failed named it: sent again"
    forced = await batch_faceswap(**where, include=["cat.*"], force=True, blocks=blocks, return_state=True)
    assert forced.is_failed() and charges(stack) == before + 4, "force sent it again"
    entry = read_entry(s3_storage, cat.fingerprint or "")
    assert entry is not None and entry.failure is not None and len(entry.earlier_failures) == 2


async def test_a_failure_seen_by_the_sweep_or_collect_is_remembered(stack, s3_storage) -> None:
    blocks = await own_blocks(stack, s3_storage)
    s3_storage.write_bytes("faces/grace.png", png(photos.grace_hopper()))
    s3_storage.write_bytes("pets/cat.png", png(photos.cat()))
    s3_storage.write_bytes("pets/cat-mirrored.png", png(photos.cat()[:, ::-1]))
    where = {"source": "pets/", "face_image": "faces/grace.png"}
    since = datetime.now(UTC) - timedelta(seconds=2)
    report = await batch_faceswap(**where, options=SwapOptions(wait=False), blocks=blocks)
    assert [item.status for item in report.items] == ["submitted"] * 2
    await asyncio.to_thread(stack.sandbox.wait_idle)
    failed = await callbacks_stored([item.task_id for item in report.items], by_job=False)
    assert [callback["success"] for callback in failed] == [0, 0]
    plan = await batch_faceswap(**where, blocks=blocks, plan=True, force=True)
    fingerprints = {item.label: item.fingerprint or "" for item in plan.items}
    assert all(read_entry(s3_storage, fp).failure is None for fp in fingerprints.values())  # type: ignore[union-attr]

    by_collect, by_sweep = report.items
    with pytest.raises(ResultNotAvailable, match="failed on the service's side"):
        await store_result(by_collect.task_id or "")
    swept = await sweep_now(since)
    assert swept.service_failed >= 1 and swept.failed == 0
    seen = {label: read_entry(s3_storage, fp).failure for label, fp in fingerprints.items()}  # type: ignore[union-attr]
    assert seen[by_collect.id].seen_by == "store-result flow" and seen[by_collect.id].task_id == by_collect.task_id
    assert seen[by_sweep.id].seen_by == "store-results sweep" and seen[by_sweep.id].task_id == by_sweep.task_id

    before = charges(stack)
    later = await batch_faceswap(**where, blocks=blocks, plan=True)
    assert [item.status for item in later.items] == ["failed_before"] * 2 and later.credits == 0
    assert charges(stack) == before
