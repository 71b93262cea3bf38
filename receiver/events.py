"""Callbacks as Prefect events, and the loop that emits the inbox's pending ones to the Prefect API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.events import Event

from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.receiver.inbox import Inbox, InboxEntry
from faceswap_flows.receiver.tokens import JobToken

logger = logging.getLogger("faceswap.receiver")

EVENT_PREFIX = "aifaceswap.task"
SUCCEEDED = f"{EVENT_PREFIX}.succeeded"
FAILED = f"{EVENT_PREFIX}.failed"
SUBMITTED = f"{EVENT_PREFIX}.submitted"
DUPLICATE_JOB = f"{EVENT_PREFIX}.duplicate-job"
EVENT_ID_NAMESPACE = uuid.UUID("5b0c8f36-44f5-4c0e-9a43-3e7c1b6f0a11")


def task_resource_id(task_id: str) -> str:
    return f"{EVENT_PREFIX}.{task_id}"


def related_flow_run(flow_run_id: str | None) -> list[dict[str, str]]:
    if not flow_run_id:
        return []
    return [{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"}]


def job_payload(job: JobToken) -> dict[str, Any]:
    """The job's facts every callback event carries: who submitted it and where its result goes."""
    return {
        "job_id": job.job_id,
        "operation": job.operation,
        "flow_run_id": job.flow_run_id,
        "storage_block": job.storage_block,
        "result_key": job.result_key,
    }


def job_event(
    job: JobToken, *, id_key: str, received_at: float, name: str, subject: str, title: str, payload: dict[str, Any]
) -> Event:
    """An event about one job, as the receiver emits it: its id derives from ``id_key`` (so re-emitting it is
    recognised), its resource is ``subject`` with the job's operation, job id and store-by label."""
    return Event(
        id=uuid.uuid5(EVENT_ID_NAMESPACE, id_key),
        occurred=datetime.fromtimestamp(received_at, tz=UTC),
        event=name,
        resource={
            "prefect.resource.id": subject,
            "prefect.resource.name": title,
            "aifaceswap.operation": job.operation,
            "aifaceswap.job-id": job.job_id,
            "aifaceswap.store-by": job.store_by,
        },
        related=related_flow_run(job.flow_run_id),
        payload={**payload, **job_payload(job)},
    )


def callback_event(entry: InboxEntry) -> Event:
    """The event of one callback. Its id derives from the task_id, so re-emitting it is recognised."""
    callback, job = entry.callback, entry.job
    return job_event(
        job,
        id_key=f"callback:{callback.task_id}",
        received_at=entry.received_at,
        name=SUCCEEDED if callback.succeeded else FAILED,
        subject=task_resource_id(callback.task_id),
        title=f"{job.operation} {callback.task_id}",
        payload={
            "task_id": callback.task_id,
            "success": callback.success,
            "type": callback.type,
            "result_image": callback.result_image,
        },
    )


def credits_at_stake(operation: str) -> int | None:
    """The price of one more task of ``operation`` from the pricing table (None when it depends on a video's
    length, which the receiver does not know)."""
    try:
        return estimate_credits(operation)
    except ValueError:
        return None


def duplicate_job_event(entry: InboxEntry) -> Event:
    """The event of a job's second task: the job was sent twice and both tasks may have been charged."""
    callback, job = entry.callback, entry.job
    return Event(
        id=uuid.uuid5(EVENT_ID_NAMESPACE, f"duplicate-job:{callback.task_id}"),
        occurred=datetime.fromtimestamp(entry.received_at, tz=UTC),
        event=DUPLICATE_JOB,
        resource={
            "prefect.resource.id": task_resource_id(callback.task_id),
            "prefect.resource.name": f"{job.operation} {callback.task_id}",
            "aifaceswap.operation": job.operation,
            "aifaceswap.job-id": job.job_id,
        },
        related=related_flow_run(job.flow_run_id),
        payload={
            "job_id": job.job_id,
            "operation": job.operation,
            "task_ids": [entry.first_task_id, callback.task_id],
            "first_task_id": entry.first_task_id,
            "task_id": callback.task_id,
            "success": callback.success,
            "credits_at_stake": job.credits if job.credits is not None else credits_at_stake(job.operation),
            "flow_run_id": job.flow_run_id,
        },
    )


def entry_events(entry: InboxEntry) -> list[Event]:
    """The events of one callback: its succeeded/failed event, and a duplicate-job event for a job's later task."""
    if entry.first_task_id is None:
        return [callback_event(entry)]
    logger.warning(
        "job %s has a second task %s (first: %s): the job was sent twice and may be charged twice",
        entry.job.job_id,
        entry.callback.task_id,
        entry.first_task_id,
    )
    return [callback_event(entry), duplicate_job_event(entry)]


async def post_events(client: PrefectClient, events: list[Event]) -> None:
    """Send events to the Prefect API over HTTP; returns only once the API has accepted them."""
    response = await client.request("POST", "/events", json=[event.model_dump(mode="json") for event in events])
    response.raise_for_status()


class Emitter:
    """Emits pending callbacks as events, oldest first; when the API is unreachable it keeps them and retries."""

    what = "callback events"

    def __init__(self, inbox: Inbox, *, max_backoff: float = 10.0) -> None:
        self.inbox = inbox
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self.emitted = 0

    def wake(self) -> None:
        self._wake.set()

    async def emit_pending(self, client: PrefectClient) -> int:
        """Emit what is pending now; returns how many were emitted (raises when the API refused)."""
        pending = await asyncio.to_thread(self.inbox.pending)
        if not pending:
            return 0
        await post_events(client, [event for entry in pending for event in entry_events(entry)])
        await asyncio.to_thread(self.inbox.mark_emitted, [entry.callback.task_id for entry in pending])
        self.emitted += len(pending)
        return len(pending)

    async def run(self) -> None:
        async with get_client() as client:
            await self._loop(client)

    async def _loop(self, client: PrefectClient) -> None:
        backoff = 0.25
        while True:
            self._wake.clear()
            try:
                if await self.emit_pending(client):
                    backoff = 0.25
                    continue
            except Exception as error:  # the API is down or refused: keep the callbacks, try again later
                logger.warning("could not emit %s (%s); retrying in %.1fs", self.what, error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=5.0)
