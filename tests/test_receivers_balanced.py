"""Several receivers behind a load balancer: whoever asks "has this job's callback arrived?" through the public
URL reaches one receiver's inbox; a callback another receiver took is found in Prefect's stored events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from faceswap_flows.flows.tasks.waiting import arrived_callback, wait_for_task_callback
from faceswap_flows.receiver import ReceiverServer
from tests.support import RECEIVER_SECRET
from tests.test_receiver import callback_body, deliver, new_job, stored_events


@pytest.fixture
def other_receiver(tmp_path) -> Iterator[ReceiverServer]:
    """A second receiver with the same secret and an inbox of its own, which takes no callback here."""
    with ReceiverServer(tmp_path / "inbox.sqlite", RECEIVER_SECRET) as server:
        yield server


async def test_a_callback_the_other_receiver_took_is_found_in_the_stored_events(stack, other_receiver) -> None:
    job, task_id = new_job(), uuid.uuid4().hex
    assert deliver(stack.receiver.url, job, callback_body(task_id)).status_code == 200
    assert len(await stored_events(task_id)) == 1
    for subject, by_job in ((task_id, False), (job.job_id, True)):
        found = await arrived_callback(other_receiver.url, RECEIVER_SECRET, subject, by_job=by_job)
        assert found is not None, f"{subject} not found through a receiver that did not take it"
        assert (found["task_id"], found["job_id"]) == (task_id, job.job_id)


async def test_a_callback_in_the_inbox_asked_needs_no_prefect_query(stack) -> None:
    job, task_id = new_job(), uuid.uuid4().hex
    assert deliver(stack.receiver.url, job, callback_body(task_id)).status_code == 200
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing answers there
        found = await arrived_callback(stack.receiver.url, RECEIVER_SECRET, task_id)
    assert found is not None and (found["task_id"], found["job_id"]) == (task_id, job.job_id)


async def test_a_wait_through_the_other_receiver_ends_once_the_event_is_stored(stack, other_receiver) -> None:
    task_id = uuid.uuid4().hex
    assert deliver(stack.receiver.url, new_job(), callback_body(task_id)).status_code == 200
    assert len(await stored_events(task_id)) == 1
    started = time.monotonic()
    callback = await wait_for_task_callback(
        task_id, 30, receiver_url=other_receiver.url, secret=RECEIVER_SECRET, recheck_every=20
    )
    assert callback.task_id == task_id
    assert time.monotonic() - started < 10, "the wait did not look at the stored events before the stream"
