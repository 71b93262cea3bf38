"""Waiting for a job's callback event without races.

The callback may arrive before the submit call returns, between submit and the wait, or during the wait.
The waiter subscribes first, then looks at what already happened: the receiver's inbox (exact and
immediate) and the events the API has stored; then it takes the live stream, re-reading the stored
events now and then, which also catches an event that was neither stored nor streamed at subscribe time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from aifaceswap.client import tls_context
from aifaceswap.models import TaskCallback
from receiver.events import FAILED, SUCCEEDED, task_resource_id

logger = logging.getLogger("faceswap.flows")


class ArrivedCallback(TaskCallback):
    """A callback as it arrived, with the facts of the job its token named."""

    job_id: str | None = None
    operation: str | None = None
    flow_run_id: str | None = None
    storage_block: str | None = None
    result_key: str | None = None


class CallbackTimeout(TimeoutError):
    """No callback arrived in time. The job may still finish: collect it later by its task_id."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(
            f"no callback for task_id {task_id} within {timeout:.0f}s; the job may still finish: "
            f"collect it later with `faceswap-flows collect {task_id}` (or the store-result flow)"
        )
        self.task_id = task_id


def task_event_filter(task_id: str) -> EventFilter:
    return EventFilter(
        event=EventNameFilter(name=[SUCCEEDED, FAILED]),
        resource=EventResourceFilter(id=[task_resource_id(task_id)]),
    )


def job_event_filter(job_id: str) -> EventFilter:
    """The callback events of a job, whatever task_id the service gave it (for a submission whose answer was lost)."""
    return EventFilter(
        event=EventNameFilter(name=[SUCCEEDED, FAILED]),
        resource=EventResourceFilter(id_prefix=[f"{task_resource_id('')}"], labels={"aifaceswap.job-id": [job_id]}),
    )


def callback_from_event(event: Event) -> dict[str, Any]:
    """The callback fields and the job facts an event carries."""
    return dict(event.payload)


async def stored_event(task_id: str, *, by_job: bool = False) -> dict[str, Any] | None:
    """The callback of a task (or, ``by_job``, of a job id) among the events the Prefect API has stored."""
    event_filter = job_event_filter(task_id) if by_job else task_event_filter(task_id)
    async with get_client() as client:
        page = await client.read_events(filter=event_filter, limit=1)
    return callback_from_event(page.events[0]) if page.events else None


async def inbox_entry(
    receiver_url: str | None, secret: str | None, task_id: str, *, by_job: bool = False
) -> dict[str, Any] | None:
    """The callback as the receiver's inbox has it (None when not received, or the receiver is unreachable)."""
    if not receiver_url or not secret:
        return None
    path = f"jobs/{task_id}" if by_job else f"tasks/{task_id}"
    try:
        async with httpx.AsyncClient(timeout=5, verify=tls_context()) as http:
            response = await http.get(
                f"{receiver_url.rstrip('/')}/{path}", headers={"Authorization": f"Bearer {secret}"}
            )
    except httpx.HTTPError as error:
        logger.debug("receiver inbox not reachable: %r", error)
        return None
    if response.status_code != 200:
        return None
    found = response.json()
    return {**found["callback"], **{k: v for k, v in found["job"].items() if k != "issued_at"}}


async def wait_for_task_callback(
    task_id: str,
    timeout: float,
    *,
    receiver_url: str | None = None,
    secret: str | None = None,
    recheck_every: float = 3.0,
    by_job: bool = False,
) -> ArrivedCallback:
    """Return the callback of ``task_id`` (or, ``by_job``, of that job id) whenever it arrived;
    CallbackTimeout after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    event_filter = job_event_filter(task_id) if by_job else task_event_filter(task_id)
    async with get_events_subscriber(filter=event_filter) as subscriber:
        found = await inbox_entry(receiver_url, secret, task_id, by_job=by_job) or await stored_event(
            task_id, by_job=by_job
        )
        stream = aiter(subscriber)
        next_event: asyncio.Task[Event] | None = None
        try:
            while found is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise CallbackTimeout(task_id, timeout)
                next_event = next_event or asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({next_event}, timeout=min(remaining, recheck_every))
                if done:
                    found = callback_from_event(next_event.result())
                    next_event = None
                else:
                    found = await stored_event(task_id, by_job=by_job)
        finally:
            if next_event is not None:
                next_event.cancel()
    return ArrivedCallback.model_validate(found)
