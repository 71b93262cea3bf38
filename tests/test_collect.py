"""`faceswap-flows collect` (the store-result flow by task or job id) reads the receiver's inbox first: a result is
collectable the moment its callback arrived, not seconds later when Prefect has stored the event."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from faceswap_flows.flows.collect import store_result
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.options import SwapOptions
from faceswap_flows.flows.provenance.labels import embedded_label
from faceswap_flows.flows.tasks.job import SwapOutcome
from faceswap_flows.flows.tasks.waiting import stored_event
from tests.media import read_image


async def arrived_unstored(stack) -> SwapOutcome:
    """A job submitted without waiting, once its callback is in the receiver's inbox."""
    submitted = await faceswap(
        str(stack.files["astronaut"]), str(stack.files["grace"]), options=SwapOptions(wait=False)
    )
    deadline = time.monotonic() + 30
    while stack.receiver.inbox.get(submitted.task_id) is None:
        assert time.monotonic() < deadline, "the callback never arrived"
        await asyncio.sleep(0.02)
    return submitted


async def test_collect_right_after_the_callback_arrived(stack) -> None:
    submitted = await arrived_unstored(stack)
    collected = await store_result(submitted.task_id)  # at once: Prefect has most likely not stored the event yet
    assert collected.status == "stored" and collected.job_id == submitted.job_id
    assert read_image(stack.storage.read_bytes(collected.result_key)) is not None
    assert collected.credits == 2, "the job's credits, from the ledger"
    again = await store_result("", job_id=submitted.job_id)  # by job id, as SubmissionOutcomeUnknown names it
    assert again.task_id == submitted.task_id


async def test_collect_finds_a_callback_that_only_the_inbox_has(stack) -> None:
    """A callback in the inbox whose event Prefect does not have (not emitted yet): collected from the inbox."""
    submitted = await faceswap(
        str(stack.files["grace"]), str(stack.files["astronaut"]), options=SwapOptions(wait=False)
    )
    deadline = time.monotonic() + 30
    while (entry := stack.receiver.inbox.get(submitted.task_id)) is None:
        assert time.monotonic() < deadline, "the callback never arrived"
        await asyncio.sleep(0.02)
    task_id, job_id = f"inbox-only-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    job = entry.job.model_copy(update={"job_id": job_id, "result_key": f"results/collected/{task_id}.png"})
    stack.receiver.inbox.record(job, entry.callback.model_copy(update={"task_id": task_id}))
    stack.receiver.inbox.mark_emitted([task_id])  # never sent to Prefect
    assert await stored_event(task_id) is None, "Prefect has no event of it"
    collected = await store_result(task_id)
    assert collected.status == "stored" and collected.job_id == job_id
    assert read_image(stack.storage.read_bytes(collected.result_key)) is not None
    by_job = await store_result("", job_id=job_id)
    assert by_job.task_id == task_id


async def collected_with(stack, **override: bool) -> dict[str, str] | None:
    """A job submitted labelled, collected with ``override``: the label embedded in the stored result."""
    submitted = await arrived_unstored(stack)
    collected = await store_result(submitted.task_id, **override)
    return embedded_label(stack.storage.read_bytes(collected.result_key))


async def test_collect_label_overrides_the_choice_made_at_submission(stack, caplog: pytest.LogCaptureFixture) -> None:
    """`label` (the flows' `output.label`) overrides the submission's choice; `label_outputs`, its old name, still
    reads (deployments saved with it) and says it is old."""
    assert await collected_with(stack) is not None, "labelled, as chosen at submission"
    assert await collected_with(stack, label=False) is None
    with caplog.at_level(logging.WARNING, logger="prefect.flow_runs"):
        assert await collected_with(stack, label_outputs=False) is None
    assert "label_outputs is the old name of this flow's `label` parameter" in caplog.text
