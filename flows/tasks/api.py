"""Tasks that call the API: find faces, submit a paid job (once), wait for its callback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from prefect import task
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.runtime import flow_run, task_run

from faceswap_flows.aifaceswap.client import AIFaceSwapClient
from faceswap_flows.aifaceswap.errors import AIFaceSwapError
from faceswap_flows.aifaceswap.models import ApiRequest, FaceBox
from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.flows.exceptions import JobFailed
from faceswap_flows.flows.media.reachability import INPUT_FIX, Reach
from faceswap_flows.flows.options import AT_MOST_ONCE, OnUnknownOutcome
from faceswap_flows.flows.provenance.records import JobFacts, run_facts
from faceswap_flows.flows.tasks.artifacts import credits_artifact
from faceswap_flows.flows.tasks.paid_calls import (
    LedgerScope,
    PaidAttempts,
    call_paid_sync,
)
from faceswap_flows.flows.tasks.recorded_events import emit_recorded
from faceswap_flows.flows.tasks.submission import (
    Submission,
    SubmissionOutcomeUnknown,
    SubmittedJob,
    attempted_before,
    take_api_slot,
)
from faceswap_flows.flows.tasks.waiting import ArrivedCallback, wait_for_task_callback
from faceswap_flows.receiver.events import SUBMITTED, related_flow_run, task_resource_id
from faceswap_flows.receiver.tokens import JobToken

T = TypeVar("T")


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


__all__ = ["SubmissionOutcomeUnknown", "SubmittedJob", "attempted_before", "take_api_slot"]


def retry_if_safe(task: object, task_run: object, state: Any) -> bool:
    """Retry only errors that certainly had no effect on the service (no connection, 429)."""
    return isinstance(state.data, AIFaceSwapError) and state.data.retryable


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
async def extract_faces(
    credentials: AIFaceSwapCredentials,
    image: Any,
    name: str,
    storage: MediaStorage | None = None,
    job_id: str | None = None,
) -> list[FaceBox]:
    """Every face of an image (URL or file), in the order the API numbers them (2 credits).

    Each attempt is written in the ledger of credits under `job_id` (the job this detection serves). An unknown
    outcome is retried a bounded number of times, each such attempt counted as possibly charged.

    Args:
        credentials: The AIFaceSwapCredentials block the API client is built from.
        image: The image: a URL the API can fetch, or a file.
        name: The image's name, for the task run.
        storage: The MediaStorage block holding the ledger of credits. None: not written in the ledger.
        job_id: The job the call is made for (its own id for a plain face detection).

    Returns:
        The detected faces (boxes), numbered left to right.

    Raises:
        AIFaceSwapError: The API refused the call or its answer proves nothing after the retries.
    """
    ledger = LedgerScope(storage, job_id, f"face detection of {name}") if storage and job_id else None
    if isinstance(image, str):
        Reach.for_credentials(credentials).check(image, "image", INPUT_FIX)
    found = await _paid_extract(credentials, "extract_face", lambda client: client.extract_face(image), name, ledger)
    get_run_logger().info("%s: %d face(s), %d credits", name, len(found.faces), found.points)
    return found.faces


@task(
    name="extract-frame-faces",
    task_run_name="extract faces of a video frame",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_if_safe,
)
async def extract_frame_faces(
    credentials: AIFaceSwapCredentials,
    frame_png: bytes,
    storage: MediaStorage | None = None,
    job_id: str | None = None,
) -> list[FaceBox]:
    """The faces of one video frame, through extract_base64_face (2 credits; ledger and unknown outcomes as
    extract_faces).

    Args:
        credentials: The AIFaceSwapCredentials block the API client is built from.
        frame_png: The frame, PNG-encoded.
        storage: The MediaStorage block holding the ledger of credits. None: not written in the ledger.
        job_id: The job the call is made for.

    Returns:
        The detected faces (boxes), numbered left to right.

    Raises:
        AIFaceSwapError: The API refused the call or its answer proves nothing after the retries.
    """
    ledger = LedgerScope(storage, job_id, "face detection of a video frame") if storage and job_id else None
    found = await _paid_extract(
        credentials,
        "extract_base64_face",
        lambda client: client.extract_base64_face(frame_png),
        "video frame",
        ledger,
    )
    get_run_logger().info("video frame: %d face(s)", len(found.pos))
    return found.pos


async def _paid_extract(
    credentials: AIFaceSwapCredentials,
    operation: Literal["extract_face", "extract_base64_face"],
    call: Callable[[AIFaceSwapClient], Awaitable[T]],
    name: str,
    ledger: LedgerScope | None,
) -> T:
    """A synchronous paid call within the API's rate limit, each attempt in the ledger, each possibly-charged one
    logged and shown in the run's credits artifact (call_paid_sync)."""
    await take_api_slot(credentials)
    logger, cost = get_run_logger(), PaidAttempts(operation=operation)
    try:
        async with credentials.get_client() as client:
            price = estimate_credits(operation)
            return await call_paid_sync(price, lambda: call(client), logger, cost, ledger=ledger)
    finally:
        await paid_sync_artifact(cost, name)


async def paid_sync_artifact(cost: PaidAttempts, name: str) -> None:
    """The credits of a synchronous paid call, with the attempts that may have been charged (only when any were:
    a plain call's 2 credits are in its log line)."""
    if cost.unknown_attempts:
        await credits_artifact(
            [
                {"operation": cost.operation, "of": name, "credits": cost.charged, "kind": "charged"},
                {
                    "operation": cost.operation,
                    "of": name,
                    "credits": cost.possibly_charged,
                    "kind": f"possibly charged ({cost.unknown_attempts} attempts with unknown outcome)",
                },
            ],
            f"{cost.operation}-{name}",
        )


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
    storage: MediaStorage | None = None,
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE,
) -> SubmittedJob:
    """Start the paid job. Cached by job: a retry of the flow run re-attaches to the recorded task_id.

    Before sending, the send is written in the ledger of credits in `storage` (`ledger/<job_id>/`). When the outcome is
    unknown (a 5xx, an answer that is not the API's envelope, a reset or timeout after sending, or an earlier
    attempt's send without a recorded answer), the job is not sent again blindly: its callback is awaited by
    job id for the receiver block's `lost_answer_grace_seconds`, which tells the task_id if the service accepted
    it. After the grace, `on_unknown_outcome` decides. The `aifaceswap.task.submitted` event carries the job's
    provenance `facts`, its flow run, deployment and who ran it: the audit trail (no secrets, bytes or webhook URL).

    Args:
        credentials: The AIFaceSwapCredentials block the API client is built from.
        receiver: The WebhookReceiver block the service calls back.
        job: The job's identity (signed into the webhook URL).
        request: The validated API request to send.
        facts: The job's provenance facts for the submitted event, if any.
        title: The task run's name. None: named after the operation.
        storage: Where the ledger entries and the submission record are written. None: not recorded.
        on_unknown_outcome: `at-most-once` fails with SubmissionOutcomeUnknown after the grace; `resubmit` sends the
            job again (it may be charged twice).

    Returns:
        The submitted job: its task_id, credits charged and when it was sent.

    Raises:
        SubmissionOutcomeUnknown: The outcome stayed unknown and the job was not sent again.
        AIFaceSwapError: The API refused the job (nothing was charged).
    """
    logger = get_run_logger()
    submission = Submission(credentials, receiver, job, request, storage, on_unknown_outcome)
    submitted = await submission.run()
    logger.info("submitted %s: task_id=%s, %d credits", job.operation, submitted.task_id, submitted.points)
    await emit_recorded(
        event=SUBMITTED,
        resource={
            "prefect.resource.id": task_resource_id(submitted.task_id),
            "prefect.resource.name": f"{job.operation} {submitted.task_id}",
            "aifaceswap.operation": job.operation,
            "aifaceswap.job-id": job.job_id,
        },
        related=related_flow_run(job.flow_run_id),
        payload={**submitted.model_dump(), **(facts or JobFacts()).model_dump(), **await run_facts()},
    )
    return submitted


@task(name="wait-for-callback", task_run_name="wait for callback of {task_id}")
async def wait_for_callback(
    task_id: str,
    receiver: WebhookReceiver,
    timeout_seconds: float = 900,
    sent_at: float | None = None,
    job_id: str | None = None,
) -> ArrivedCallback:
    """The job's callback, whenever it arrives.

    With `job_id`, the first successful callback of that job is taken, whatever its task_id (a job sent twice has
    two).

    Args:
        task_id: The service's task to wait for.
        receiver: The WebhookReceiver block the service calls back.
        timeout_seconds: How long to wait.
        sent_at: When the job was submitted (SubmittedJob.sent_at), which can spare a look-up in the receiver's
            inbox.
        job_id: Wait by this job instead of by task.

    Returns:
        The arrived callback: task_id, success and the result URL.

    Raises:
        JobFailed: The service reported that the job failed.
        CallbackTimeout: No callback came within `timeout_seconds`.
    """
    callback = await wait_for_task_callback(
        task_id,
        timeout_seconds,
        receiver_url=receiver.public_url,
        secret=receiver.signing_secret.get_secret_value(),
        sent_at=sent_at,
        job_id=job_id,
    )
    if not callback.succeeded:
        raise JobFailed.reported(callback.task_id, job_id=job_id or callback.job_id, operation=callback.operation)
    if callback.task_id != task_id:
        get_run_logger().warning("job %s: taking the result of its other task %s", job_id, callback.task_id)
    get_run_logger().info("callback of %s: result at %s", callback.task_id, callback.result_image)
    return callback
