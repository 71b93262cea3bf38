"""The sweep's live source (flows/sweep/live.py): Prefect's event stream hands it the callback events of sweep jobs as
they happen, whichever receiver took them, and a callback event starts a sweep at once instead of at the next poll."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from faceswap_flows.flows.provenance.records import OutputOptions
from faceswap_flows.flows.sweep.flow import StoreResultsReport
from faceswap_flows.flows.sweep.live import LiveCallbacks
from faceswap_flows.flows.tasks.waiting import stored_event
from tests.support import sweep_now
from tests.test_store_results import (
    posted,
    seconds_until_stored,
    submit_and_settle,
    sweep_event,
    sweep_while_posting,
)


@pytest.fixture(scope="module")
async def result_image(stack) -> str:
    """The result URL of a real sweep job (the sandbox serves it)."""
    jobs, _ = await submit_and_settle(stack, [OutputOptions()], "sweep")
    return (await stored_event(jobs[0].task_id))["result_image"]


async def test_the_live_source_takes_the_sweep_jobs_of_its_window_only() -> None:
    """What the stream delivers is sifted here (the server filters the names and resources, not the label, and
    lets an event from the future through); nothing is posted, so no later sweep of the session meets these jobs."""
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
    live = LiveCallbacks(now - timedelta(seconds=30), now + timedelta(seconds=60))
    for event in events.values():
        live._arrive(event)
    await live.wait(5)  # returns at once: something arrived
    assert [payload["task_id"] for payload in live.take()] == [ids["sweep"]]
    assert live.take() == []


async def test_a_callback_event_starts_a_sweep_at_once_not_at_the_next_poll(stack, result_image: str) -> None:
    """The run looks at its sources once a minute here; the job's event, posted while it waits, is stored long before
    that (without the live source it is found only by the final read, a minute in)."""
    stored_after, report, key = await sweep_while_posting(
        stack, result_image, wait_seconds=4, settle_seconds=40, poll_seconds=60
    )
    assert key in report.stored_keys and report.failed == 0
    assert stored_after < 30, f"stored {stored_after:.1f} s after its event: by the poll, not by the event"


async def test_the_first_sweep_reads_the_stored_backlog_though_the_stream_is_connected(
    stack, result_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job finished before the run (in its look-back, older than the minute the stream replays) is in no live
    event: the first sweep reads it from the stored events, not the read before the run ends, a minute later here."""
    monkeypatch.setattr(LiveCallbacks, "listening", property(lambda live: True))
    task_id = f"sweep-backlog-{uuid.uuid4().hex[:8]}"
    key = f"results/test/{task_id}.png"
    await posted([sweep_event(task_id, result_image, key, datetime.now(UTC) - timedelta(seconds=120))])
    run = asyncio.create_task(sweep_now(datetime.now(UTC) - timedelta(seconds=150), settle_seconds=30, poll_seconds=60))
    stored_after = await seconds_until_stored(stack, key, run)
    report: StoreResultsReport = await run
    assert key in report.stored_keys and report.failed == 0
    assert stored_after < 20, f"stored {stored_after:.1f} s into the run: by the last read, not the first sweep"
