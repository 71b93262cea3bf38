"""The sweep's live source (flows/sweep/live.py): Prefect's event stream hands it the callback events of sweep jobs as
they happen, whichever receiver took them, and a callback event starts a sweep at once instead of at the next poll."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client

from faceswap_flows.flows.provenance.records import RECORD_SUFFIX, OutputOptions
from faceswap_flows.flows.sweep.flow import StoreResultsReport
from faceswap_flows.flows.sweep.live import LiveCallbacks
from faceswap_flows.flows.tasks.waiting import stored_event
from faceswap_flows.receiver.events import post_events
from tests.support import sweep_now
from tests.test_store_results import submit_and_settle, sweep_event


@pytest.fixture(scope="module")
async def result_image(stack) -> str:
    """The result URL of a real sweep job (the sandbox serves it)."""
    jobs, _ = await submit_and_settle(stack, [OutputOptions()], "sweep")
    return (await stored_event(jobs[0].task_id))["result_image"]


async def listening(live: LiveCallbacks) -> None:
    for _ in range(300):
        if live.listening:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the live callback events were not subscribed in 30 s")


async def test_the_live_source_takes_the_sweep_jobs_of_its_window_only(stack) -> None:
    now = datetime.now(UTC)
    ids = {name: f"live-{name}-{uuid.uuid4().hex[:8]}" for name in ("sweep", "trigger", "before", "after")}
    events = {name: sweep_event(task_id, "https://x.invalid/r.png", f"results/test/{task_id}.png", now) for
              name, task_id in ids.items()}  # fmt: skip
    trigger = events["trigger"]
    events["trigger"] = trigger.model_copy(
        update={"resource": type(trigger.resource)({**trigger.resource.root, "aifaceswap.store-by": "trigger"})}
    )
    events["before"] = events["before"].model_copy(update={"occurred": now - timedelta(minutes=10)})
    events["after"] = events["after"].model_copy(update={"occurred": now + timedelta(minutes=10)})
    async with LiveCallbacks(now - timedelta(seconds=30), now + timedelta(seconds=60)) as live:
        await listening(live)
        async with get_client() as client:
            await post_events(client, list(events.values()))
        await live.wait(30)
        taken = live.take()
        await asyncio.sleep(1.0)  # anything else would have come by now
        taken += live.take()
    assert [payload["task_id"] for payload in taken] == [ids["sweep"]]


async def test_a_callback_event_starts_a_sweep_at_once_not_at_the_next_poll(stack, result_image: str) -> None:
    """The run looks at its sources once a minute here; the job's event, posted while it waits, is stored long before
    that (without the live source it is found only by the final read, a minute in)."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    task_id = f"sweep-live-{uuid.uuid4().hex[:8]}"
    key = f"results/test/{task_id}.png"
    run = asyncio.create_task(sweep_now(since, settle_seconds=40, poll_seconds=60))
    await asyncio.sleep(4)
    async with get_client() as client:
        await post_events(client, [sweep_event(task_id, result_image, key, datetime.now(UTC))])
    posted = time.monotonic()
    for _ in range(900):
        if stack.storage.exists(key + RECORD_SUFFIX) or run.done():
            break
        await asyncio.sleep(0.1)
    stored_after = time.monotonic() - posted
    report: StoreResultsReport = await run
    assert key in report.stored_keys and report.failed == 0
    assert stored_after < 30, f"stored {stored_after:.1f} s after its event: by the poll, not by the event"
