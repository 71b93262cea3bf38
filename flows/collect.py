"""The store-result flow: what a deployment triggered by ``aifaceswap.task.succeeded`` runs (wait=False jobs),
and how a job whose wait timed out is collected later by its task_id. :func:`store_job` is the storing step it
shares with the ``store-results`` sweep."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.logging import get_run_logger
from pydantic import BaseModel

from faceswap_flows.blocks import MediaStorage, WebhookReceiver
from faceswap_flows.flows.blocks_config import DEFAULT_RECEIVER, DEFAULT_STORAGE
from faceswap_flows.flows.exceptions import ResultNotAvailable
from faceswap_flows.flows.provenance.records import JobFacts, OutputOptions, submission_facts
from faceswap_flows.flows.tasks.job import SwapOutcome
from faceswap_flows.flows.tasks.store import store_and_record
from faceswap_flows.flows.tasks.waiting import arrived_callback, stored_event
from faceswap_flows.flows.work_index import remember_job_failure
from faceswap_flows.receiver.events import task_resource_id
from faceswap_flows.receiver.unparsed import UNPARSED


class FinishedJob(BaseModel):
    """What a job's success event says: where the service left the result and where it is to be stored."""

    task_id: str
    result_image: str
    result_key: str
    storage_block: str | None = None
    operation: str | None = None
    job_id: str | None = None


async def submitted_facts(task_id: str, attempts: int = 20) -> dict[str, Any]:
    """The facts the submitting run put in the task's submitted event ({} when there is none), asked once a second
    ``attempts`` times: a callback read from the receiver's inbox can come before Prefect has stored that event."""
    for attempt in range(attempts):
        try:
            found = await submission_facts(task_id)
        except Exception as error:
            get_run_logger().warning("could not read the submitted event of %s: %s", task_id, error)
            return {}
        if found is not None:
            return found
        if attempt + 1 < attempts:
            await asyncio.sleep(1.0)
    get_run_logger().warning(
        "no submitted event for task %s: its provenance record has only what is known here", task_id
    )
    return {}


async def unparsed_callback(subject: str) -> dict[str, Any] | None:
    """The stored ``aifaceswap.task.unparsed`` event of a task_id (or of a job id when the body named no task),
    when its raw body holds a result URL; ResultNotAvailable when it holds none."""
    event_filter = EventFilter(
        event=EventNameFilter(name=[UNPARSED]), resource=EventResourceFilter(id=[task_resource_id(subject)])
    )
    async with get_client() as client:
        page = await client.read_events(filter=event_filter, limit=1)
    if not page.events:
        return None
    payload = dict(page.events[0].payload)
    if not payload.get("result_image"):
        raise ResultNotAvailable(
            f"the callback of {subject} could not be read ({payload.get('error')}) and names no result URL: "
            "see its aifaceswap.task.unparsed event for the raw body",
            task_id=subject,
        )
    get_run_logger().warning("%s: storing the result_image found in an unparsed callback", subject)
    return payload


async def remember_failed(task_id: str, callback: dict[str, Any], storage_block: str | None, seen_by: str) -> None:
    """A failed callback (success 0) of a batch item's job, noted in its work's index entry so that later batches
    do not pay for that work again unless asked."""
    try:
        storage = await MediaStorage.aload(storage_block or callback.get("storage_block") or DEFAULT_STORAGE)
        submitted = await submitted_facts(task_id, attempts=1)
        if await asyncio.to_thread(remember_job_failure, storage, submitted, {**callback, "task_id": task_id}, seen_by):
            get_run_logger().info("task %s failed: remembered for the batches over the same work", task_id)
    except Exception as error:
        get_run_logger().warning("the failure of task %s could not be remembered: %s", task_id, error)


async def store_job(
    job: FinishedJob,
    storage: MediaStorage,
    submitted: dict[str, Any],
    *,
    label: bool | None = None,
    inline: bool = False,
) -> SwapOutcome:
    """Fetch one finished job's result into ``storage``, labelled as synthetic media (or not, as chosen at
    submission: the ``submitted`` event's facts; ``label`` overrides), with its provenance record.

    ``inline`` runs the fetch and the record as plain calls inside the current task (no task run per job), each
    logging its result at DEBUG (the caller, a sweep, logs each chunk's counts)."""
    operation = job.operation or submitted.get("operation") or "unknown"
    job_id = job.job_id or submitted.get("job_id")
    parameters = submitted.get("parameters") or {}
    output = OutputOptions(
        label=parameters.get("label_outputs", True) if label is None else label,
        watermark=parameters.get("watermark"),
        watermark_corner=parameters.get("watermark_corner") or "bottom-right",
        sign=parameters.get("sign_outputs", True),
        signing_block=parameters.get("signing_block") or "faceswap-signing",
    )
    if not output.label:
        get_run_logger().warning(
            "label=False (output.label): task %s is stored WITHOUT the synthetic-media label", job.task_id
        )
    key, bill = await store_and_record(
        storage,
        task_id=job.task_id,
        operation=operation,
        job_id=job_id,
        result_image=job.result_image,
        result_key=job.result_key,
        kind="video" if job.result_key.endswith(".mp4") else "image",
        output=output,
        credits=submitted.get("points"),
        credits_estimated=bool(submitted.get("points_estimated")),
        facts=JobFacts(
            inputs=submitted.get("inputs") or [], parameters=parameters, consent=submitted.get("consent") or []
        ),
        submitted_by={k: submitted.get(k) for k in ("flow_run", "deployment", "run_by")} if submitted else None,
        as_tasks=not inline,
        log_each=not inline,
    )
    if not inline:  # a sweep logs each chunk's count; fetch and record log each result already
        get_run_logger().info("task %s stored at %s", job.task_id, storage.uri(key))
    outcome = SwapOutcome(
        operation=operation,
        status="submitted",
        task_id=job.task_id,
        job_id=job_id or "",
        credits=submitted.get("points") or 0,
        result_key=job.result_key,
    )
    if bill is not None:
        outcome = outcome.billed(bill)
    return outcome.stored_in(storage, key)


async def arrived(subject: str, receiver_block: str, *, by_job: bool = False) -> dict[str, Any] | None:
    """The callback of a task (or job) from the receiver's inbox when it has it, else from Prefect's stored events
    (another receiver may have taken it)."""
    try:
        receiver = await WebhookReceiver.aload(receiver_block)
    except Exception as error:
        get_run_logger().warning(
            "receiver block %r not loaded (%s): reading Prefect's events only", receiver_block, error
        )
    else:
        secret = receiver.signing_secret.get_secret_value()
        return await arrived_callback(receiver.public_url, secret, subject, by_job=by_job)
    return await stored_event(subject, by_job=by_job)


@flow(name="store-result")
async def store_result(
    task_id: str,
    result_image: str | None = None,
    result_key: str | None = None,
    storage_block: str | None = None,
    operation: str | None = None,
    label: bool | None = None,
    job_id: str | None = None,
    receiver_block: str = DEFAULT_RECEIVER,
    label_outputs: bool | None = None,
) -> SwapOutcome:
    """Fetch a finished job's result into storage, labelled as synthetic media, with its provenance record.

    With only `task_id`, the rest is read from the job's callback event, so a timed-out wait can be resumed
    (`faceswap-flows collect TASK_ID`). Inputs, parameters, credits and the label/watermark choice come from the
    job's submitted event. With `job_id` instead of a task_id (a SubmissionOutcomeUnknown names the job, not a
    task), the job's first successful callback is used (`faceswap-flows collect --job JOB_ID`).

    Args:
        task_id: The service's task whose result is stored (empty when `job_id` is given).
        result_image: The temporary URL of the result. None: read from the job's callback event.
        result_key: The storage key to store the result under. None: from the event, else
            `results/collected/<task_id>`.
        storage_block: Name of the MediaStorage block to store into. None: the one the job's event names.
        operation: The API operation of the job (faceswap, video_faceswap...). None: from its event.
        label: Override the label choice made at submission (`output.label`). None: keep that choice.
        job_id: The job (as a SubmissionOutcomeUnknown names it) whose first successful callback is stored, instead
            of a task_id.
        receiver_block: The WebhookReceiver block whose inbox is asked first (it has a callback the moment it
            arrived; Prefect's stored events, asked next, lag by seconds).
        label_outputs: The old name of `label`, still read from deployments saved with it (logged as old).

    Returns:
        The stored result: its task_id, job_id, credits, key and URL.

    Raises:
        ResultNotAvailable: The job has no callback event yet, failed, or its callback names no result URL.
        DownloadRefused: The result URL is not allowed, or too large or slow to download.
    """
    if label_outputs is not None:
        get_run_logger().warning("label_outputs is the old name of this flow's `label` parameter: it was read as label")
        label = label_outputs if label is None else label
    if job_id and not task_id:
        event = await arrived(job_id, receiver_block, by_job=True)
        if event is None:
            raise ResultNotAvailable(
                f"no callback event for job {job_id}: the service did not accept it, or it has not finished yet",
                job_id=job_id,
            )
        task_id = event["task_id"]
    job_id = None
    if not (result_image and result_key):
        event = await arrived(task_id, receiver_block) or await unparsed_callback(task_id)
        if event is None:
            raise ResultNotAvailable(
                f"no callback event for task_id {task_id} yet: try again once the job finished", task_id=task_id
            )
        if not event.get("success"):
            await remember_failed(task_id, event, storage_block, "store-result flow")
            raise ResultNotAvailable(
                f"task {task_id} failed on the service's side (success 0): nothing to store", task_id=task_id
            )
        result_image = result_image or event["result_image"]
        result_key = result_key or event.get("result_key") or f"results/collected/{task_id}"
        storage_block = storage_block or event.get("storage_block")
        operation = operation or event.get("operation")
        job_id = event.get("job_id")
    assert result_image and result_key
    job = FinishedJob(
        task_id=task_id,
        result_image=result_image,
        result_key=result_key,
        storage_block=storage_block,
        operation=operation,
        job_id=job_id,
    )
    storage = await MediaStorage.aload(storage_block or DEFAULT_STORAGE)
    return await store_job(job, storage, await submitted_facts(task_id), label=label)
