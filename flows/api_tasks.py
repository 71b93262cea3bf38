"""Tasks that call the API: find faces, submit a paid job (once), wait for its callback."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Literal

from prefect import task
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import rate_limit
from prefect.context import FlowRunContext, TaskRunContext
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from prefect.runtime import flow_run, task_run
from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import AIFaceSwapError, ResponseLostError
from faceswap_flows.aifaceswap.models import ApiRequest, FaceBox
from faceswap_flows.blocks import AIFaceSwapCredentials, WebhookReceiver
from faceswap_flows.flows.provenance import JobFacts, run_facts
from faceswap_flows.flows.waiting import ArrivedCallback, CallbackTimeout, arrived_callback, wait_for_task_callback
from faceswap_flows.receiver.events import SUBMITTED, related_flow_run, task_resource_id
from faceswap_flows.receiver.tokens import JobToken


class JobFailed(RuntimeError):
    """The service called back with ``success: 0``: the job failed on its side (credits are its business)."""


class SubmissionOutcomeUnknown(RuntimeError):
    """A submission's answer was lost and no callback of its job came within the grace period.

    It is not submitted again (that could charge twice). If the service did accept it, its callback still
    reaches the receiver under the job's id.
    """


class SubmittedJob(BaseModel):
    """A job the service accepted: its task_id, what it cost, and where its result will be stored."""

    job_id: str
    task_id: str
    operation: str
    points: int
    storage_block: str | None
    result_key: str | None
    flow_run_id: str | None
    points_estimated: bool = False
    sent_at: float | None = None

    @classmethod
    def of(
        cls, job: JobToken, task_id: str, points: int, *, estimated: bool = False, sent_at: float | None = None
    ) -> SubmittedJob:
        """The record of ``job`` accepted as ``task_id`` for ``points`` credits (``estimated``: from the prices),
        sent at ``sent_at`` (epoch seconds)."""
        return cls(
            sent_at=sent_at,
            job_id=job.job_id,
            task_id=task_id,
            operation=job.operation,
            points=points,
            storage_block=job.storage_block,
            result_key=job.result_key,
            flow_run_id=job.flow_run_id,
            points_estimated=estimated,
        )


def plan_job(
    operation: str,
    inputs: dict[str, Any],
    *,
    storage_block: str,
    result_suffix: str,
    position: int = 0,
    wait: bool = True,
    store_by: Literal["flow", "trigger", "sweep"] | None = None,
) -> JobToken:
    """The job's identity: the same operation, inputs, flow run and item position always give the same job,
    so a retried or restarted flow run finds its earlier submission instead of paying again.

    ``store_by`` says who stores the result: the flow itself (``wait``), the ``store-result`` deployment
    triggered per job (default without ``wait``), or the ``store-results`` sweep (many jobs, one run)."""
    run_id = flow_run.get_id()
    identity = json.dumps(
        {"operation": operation, "inputs": inputs, "flow_run": run_id, "position": position},
        sort_keys=True,
        default=str,
    )
    job_id = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return JobToken(
        job_id=job_id,
        operation=operation,
        flow_run_id=run_id,
        storage_block=storage_block,
        result_key=f"results/{operation}/{job_id[:16]}{result_suffix}",
        store_by=store_by or ("flow" if wait else "trigger"),
    )


LIMIT_RECHECK_SECONDS = 60.0
_limit_exists: dict[str, tuple[bool, float]] = {}


async def _rate_limit_exists(name: str) -> bool:
    """Whether the global limit exists (asked again after a minute), so a missing one costs no call or warning."""
    known = _limit_exists.get(name)
    if known is None or time.monotonic() - known[1] > LIMIT_RECHECK_SECONDS:
        async with get_client() as client:
            try:
                await client.read_global_concurrency_limit_by_name(name)
                exists = True
            except ObjectNotFound:
                exists = False
        known = _limit_exists[name] = (exists, time.monotonic())
    return known[0]


async def take_api_slot(credentials: AIFaceSwapCredentials) -> None:
    """Wait for a slot of the global rate limit guarding the API (no such limit: no wait)."""
    if credentials.rate_limit and await _rate_limit_exists(credentials.rate_limit):
        await rate_limit(credentials.rate_limit, strict=False)


def retry_if_safe(task: object, task_run: object, state: Any) -> bool:
    """Retry only errors that certainly had no effect on the service (no connection, 429, 5xx)."""
    return isinstance(state.data, AIFaceSwapError) and state.data.retryable


def attempted_before() -> bool:
    """Whether this submission may have been attempted already: a retry of the task, or a flow run that runs
    again (a job's id includes its flow run, so a first attempt of both cannot have an earlier submission)."""
    flow_context, task_context = FlowRunContext.get(), TaskRunContext.get()
    if flow_context is None or flow_context.flow_run is None or task_context is None:
        return True
    return flow_context.flow_run.run_count > 1 or task_context.task_run.run_count > 1


def submission_record_key(job: JobToken) -> str:
    """Where a job's submission is recorded (the ``submit`` task's cache key)."""
    return f"submissions/job-{job.job_id}"


def submit_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return submission_record_key(parameters["job"])


@task(
    name="extract-faces",
    task_run_name="extract faces of {name}",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_if_safe,
)
async def extract_faces(credentials: AIFaceSwapCredentials, image: Any, name: str) -> list[FaceBox]:
    """Every face of an image (URL or file), in the order the API numbers them (2 credits)."""
    await take_api_slot(credentials)
    async with credentials.get_client() as client:
        found = await client.extract_face(image)
    get_run_logger().info("%s: %d face(s), %d credits", name, len(found.faces), found.points)
    return found.faces


@task(
    name="extract-frame-faces",
    task_run_name="extract faces of a video frame",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_if_safe,
)
async def extract_frame_faces(credentials: AIFaceSwapCredentials, frame_png: bytes) -> list[FaceBox]:
    """The faces of one video frame, through extract_base64_face (2 credits)."""
    await take_api_slot(credentials)
    async with credentials.get_client() as client:
        found = await client.extract_base64_face(frame_png)
    get_run_logger().info("video frame: %d face(s)", len(found.pos))
    return found.pos


def submit_run_name() -> str:
    parameters = task_run.parameters
    job = parameters["job"]
    return parameters.get("title") or f"submit {job.operation} job {job.job_id[:12]}"


@task(
    name="submit",
    task_run_name=submit_run_name,
    cache_key_fn=submit_cache_key,
    persist_result=True,
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_if_safe,
)
async def submit(
    credentials: AIFaceSwapCredentials,
    receiver: WebhookReceiver,
    job: JobToken,
    request: ApiRequest,
    facts: JobFacts | None = None,
    title: str | None = None,
) -> SubmittedJob:
    """Start the paid job (its task run named ``title`` if given). Cached by job: a retry of the flow run
    re-attaches to the recorded task_id.

    When the answer is lost after sending, the job is not submitted again: its callback is awaited by job id
    for the receiver block's ``lost_answer_grace_seconds``, which tells the task_id if the service accepted it.
    The ``aifaceswap.task.submitted`` event carries the job's provenance ``facts`` (inputs, their SHA-256,
    parameters), its flow run, deployment and who ran it: the audit trail (no secrets, bytes or webhook URL).
    """
    logger = get_run_logger()
    grace = receiver.lost_answer_grace_seconds
    secret = receiver.signing_secret.get_secret_value()
    estimated = False
    earlier = None
    if attempted_before():
        earlier = await arrived_callback(receiver.public_url, secret, job.job_id, by_job=True)
    if earlier is not None:  # a previous attempt was accepted and its job already called back: re-attach
        logger.info("job %s already ran as task %s: not submitting again", job.job_id, earlier["task_id"])
        return SubmittedJob.of(job, earlier["task_id"], request.estimated_credits(), estimated=True)
    await take_api_slot(credentials)
    sent_at = time.time()
    try:
        async with credentials.get_client(pooled=True) as client:
            data = await client.send(request)
        task_id, points = data.task_id, data.points
    except ResponseLostError as lost:
        logger.warning("%s; waiting up to %.0fs for a callback of job %s", lost, grace, job.job_id)
        try:
            callback = await wait_for_task_callback(
                job.job_id,
                grace,
                receiver_url=receiver.public_url,
                secret=secret,
                by_job=True,
            )
        except CallbackTimeout:
            raise SubmissionOutcomeUnknown(
                f"the answer to the {job.operation} submission of job {job.job_id} was lost and no callback came in "
                f"{grace:.0f}s; it was NOT submitted again. If the service accepted it, its "
                f"callback will reach the receiver (look for events with aifaceswap.job-id={job.job_id})"
            ) from lost
        task_id, points, estimated = callback.task_id, request.estimated_credits(), True
        logger.info("job %s was accepted after all: task_id %s (found by its callback)", job.job_id, task_id)
    submitted = SubmittedJob.of(job, task_id, points, estimated=estimated, sent_at=sent_at)
    logger.info("submitted %s: task_id=%s, %d credits", job.operation, task_id, points)
    emit_event(
        event=SUBMITTED,
        resource={
            "prefect.resource.id": task_resource_id(task_id),
            "prefect.resource.name": f"{job.operation} {task_id}",
            "aifaceswap.operation": job.operation,
            "aifaceswap.job-id": job.job_id,
        },
        related=related_flow_run(job.flow_run_id),
        payload={**submitted.model_dump(), **(facts or JobFacts()).model_dump(), **await run_facts()},
    )
    return submitted


@task(name="wait-for-callback", task_run_name="wait for callback of {task_id}")
async def wait_for_callback(
    task_id: str, receiver: WebhookReceiver, timeout_seconds: float = 900, sent_at: float | None = None
) -> ArrivedCallback:
    """The job's callback, whenever it arrives; JobFailed when the service reports failure. ``sent_at``: when the
    job was submitted (SubmittedJob.sent_at), which can spare a look-up in the receiver's inbox."""
    callback = await wait_for_task_callback(
        task_id,
        timeout_seconds,
        receiver_url=receiver.public_url,
        secret=receiver.signing_secret.get_secret_value(),
        sent_at=sent_at,
    )
    if not callback.succeeded:
        raise JobFailed(f"the service reported that task {task_id} failed (success 0)")
    get_run_logger().info("callback of %s: result at %s", task_id, callback.result_image)
    return callback
