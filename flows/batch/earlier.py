"""What became of the job an earlier batch sent for a piece of work whose result is not stored: its callback came
(the result is stored now, free), the service failed it (remembered, not paid again unless asked), or its outcome
is unknown (not sent again blindly). And the failures a batch sees, remembered in the work's index entry."""

from __future__ import annotations

import asyncio
from typing import Any

from faceswap_flows.blocks import MediaStorage, WebhookReceiver
from faceswap_flows.flows.batch.plan import PlannedItem
from faceswap_flows.flows.batch.report import ItemOutcome
from faceswap_flows.flows.blocks_config import Services
from faceswap_flows.flows.collect import FinishedJob, store_job, submitted_facts
from faceswap_flows.flows.ledger import CHARGED, POSSIBLY_CHARGED, SWAP, job_sends
from faceswap_flows.flows.tasks.paid_calls import collect_hint
from faceswap_flows.flows.tasks.waiting import arrived_callback
from faceswap_flows.flows.work_index import IndexEntry, JobFailure, read_entry, remember_failure

LOOKUPS_AT_ONCE = 8


def failed_before_reason(entry: IndexEntry) -> str:
    failure = entry.failure
    assert failure is not None
    return (
        f"failed before: task {failure.task_id} of job {failure.job_id} failed on "
        f"{failure.failed_at:%Y-%m-%d %H:%M} UTC ({failure.reason}; seen by the {failure.seen_by}); likely cause: "
        f"{failure.likely_cause}: {entry.check_faces_hint()}. Not sent again: name its report in retry_failed, "
        "or force, to send it again"
    )


async def callback_of(receiver: WebhookReceiver, entry: IndexEntry) -> dict[str, Any] | None:
    """The callback of the entry's job (by job id; by task id for an entry written before job ids were noted): in
    this receiver's inbox, else among the events Prefect stored (another receiver may have taken it)."""
    subject, by_job = (entry.job_id, True) if entry.job_id else (entry.task_id, False)
    if not subject:
        return None
    secret = receiver.signing_secret.get_secret_value()
    return await arrived_callback(receiver.public_url, secret, subject, by_job=by_job)


async def _unknown_reason(storage: MediaStorage, item: PlannedItem, entry: IndexEntry) -> str | None:
    """Why the earlier job is not sent again, or None when it certainly was not charged (never sent, or
    refused), so sending it now is safe."""
    if not entry.job_id:
        return (
            f"task {entry.task_id} was accepted by an earlier batch and has not called back: not sent again "
            f"(force sends it again); once it calls back, store it with `faceswap-flows collect {entry.task_id}`"
        )
    sends = [send for send in await asyncio.to_thread(job_sends, storage, entry.job_id) if send.purpose == SWAP]
    accepted = next((send for send in sends if send.outcome in CHARGED and send.task_id), None)
    if accepted is None and not any(send.outcome in POSSIBLY_CHARGED for send in sends):
        return None  # never sent, or every send refused: nothing was charged
    if accepted is not None:
        return (
            f"job {entry.job_id} was accepted as task {accepted.task_id} and has not called back: not sent again "
            f"(force sends it again); once it calls back, store it with {collect_hint(entry.job_id)}"
        )
    return (
        f"the outcome of job {entry.job_id}'s submission is unknown (sent, no answer recorded, no callback yet): "
        f"not sent again (force sends it again, and may pay twice); if the service accepted it, store its result "
        f"with {collect_hint(entry.job_id)}"
    )


async def resolve_item(services: Services, item: PlannedItem, retrying: bool) -> None:
    """Turn an ``unknown`` item (work sent before, result not stored) into ``collect``, ``failed_before``,
    ``unknown`` (with why and the command to collect it) or ``run`` (nothing was charged, or ``retry_failed``
    names a failed item)."""
    assert item.fingerprint is not None
    entry = await asyncio.to_thread(read_entry, services.storage, item.fingerprint)
    if entry is None:
        item.status = "run"
        return
    if entry.failure is None:
        callback = await callback_of(services.receiver, entry)
        if callback is not None and callback.get("success") == 1:
            item.status, item.credits = "collect", 0
            item.reason = f"task {callback['task_id']} called back after its batch ended: its result is stored, free"
            return
        if callback is not None:
            failure = JobFailure(job_id=entry.job_id, task_id=callback.get("task_id"), seen_by="batch plan")
            await asyncio.to_thread(remember_failure, services.storage, item.fingerprint, failure)
            entry = entry.model_copy(update={"failure": failure})
    if entry.failure is not None:
        if retrying:
            item.status, item.reason = "run", f"sent again (retry_failed names it): {failed_before_reason(entry)}"
            return
        item.status, item.credits, item.reason = "failed_before", 0, failed_before_reason(entry)
        item.job_id, item.task_id = entry.failure.job_id or entry.job_id, entry.failure.task_id or entry.task_id
        return
    why = await _unknown_reason(services.storage, item, entry)
    item.status = "run" if why is None else "unknown"
    item.credits, item.reason = (item.credits, None) if why is None else (0, why)
    if why is not None:
        item.job_id, item.task_id = entry.job_id, entry.task_id


async def resolve_earlier(services: Services, items: list[PlannedItem], retrying: bool) -> None:
    """Resolve every ``unknown`` item of the plan, a few at a time."""
    slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def one(item: PlannedItem) -> None:
        async with slots:
            await resolve_item(services, item, retrying)

    await asyncio.gather(*(one(item) for item in items if item.status == "unknown"))


async def collect_earlier(services: Services, items: list[PlannedItem]) -> dict[int, ItemOutcome]:
    """Store the result of every ``collect`` item from its earlier job's callback (nothing paid), a few at a time:
    their outcomes by position."""
    slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def one(item: PlannedItem) -> ItemOutcome:
        async with slots:
            return await _collect_one(services, item)

    collected = await asyncio.gather(*(one(item) for item in items if item.status == "collect"))
    return {outcome.position: outcome for outcome in collected}


async def _collect_one(services: Services, item: PlannedItem) -> ItemOutcome:
    outcome = ItemOutcome.of(item, "failed")
    assert item.fingerprint is not None and item.result_key is not None
    entry = await asyncio.to_thread(read_entry, services.storage, item.fingerprint)
    callback = await callback_of(services.receiver, entry) if entry else None
    if callback is None or not callback.get("result_image"):
        return outcome.model_copy(update={"error": "the callback of its earlier job could not be read again"})
    job = FinishedJob(
        task_id=callback["task_id"],
        result_image=callback["result_image"],
        result_key=item.result_key,
        operation=callback.get("operation"),
        job_id=callback.get("job_id"),
    )
    try:
        stored = await store_job(job, services.storage, await submitted_facts(job.task_id, attempts=1))
    except Exception as error:
        return outcome.model_copy(update={"task_id": job.task_id, "error": f"collecting it failed: {error}"[:500]})
    return outcome.model_copy(
        update={
            "status": "stored",
            "task_id": stored.task_id,
            "result_key": stored.result_key,
            "result_uri": stored.result_uri,
            "provenance_key": stored.provenance_key,
        }
    )


async def remember_batch_failure(storage: MediaStorage, item: PlannedItem, job_id: str, task_id: str | None) -> None:
    """A batch item whose job the service failed (seen by its wait): noted in the work's index entry."""
    assert item.fingerprint is not None
    failure = JobFailure(job_id=job_id, task_id=task_id, seen_by="batch")
    await asyncio.to_thread(remember_failure, storage, item.fingerprint, failure)
