"""What a swap flow returns, and the steps every swap shares after its submission."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from aifaceswap.models import ApiRequest
from blocks import MediaStorage, WebhookReceiver
from flows.api_tasks import SubmittedJob, submit, wait_for_callback
from flows.artifacts import before_after_artifact
from flows.blocks_config import Services
from flows.media_tasks import fetch_result
from receiver.tokens import JobToken


class SwapOutcome(BaseModel):
    """A swap's outcome: ``stored`` (result in storage) or ``submitted`` (wait=False: a trigger stores it)."""

    operation: str
    status: Literal["stored", "submitted"]
    task_id: str
    job_id: str
    credits: int
    result_key: str | None
    result_uri: str | None = None


async def submit_and_finish(
    services: Services,
    job: JobToken,
    request: ApiRequest,
    *,
    wait: bool,
    timeout_seconds: float,
    before_url: str,
    kind: Literal["image", "video"] = "image",
    task_run_name: str | None = None,
) -> SwapOutcome:
    """Submit once (the record lives in the shared storage block), then wait and store, or hand over."""
    options: dict[str, Any] = {"result_storage": services.storage}
    if task_run_name:
        options["task_run_name"] = task_run_name
    submitted = await submit.with_options(**options)(services.credentials, services.receiver, job, request)
    return await finish(
        submitted,
        services.storage,
        services.receiver,
        wait=wait,
        timeout_seconds=timeout_seconds,
        before_url=before_url,
        kind=kind,
    )


async def finish(
    job: SubmittedJob,
    storage: MediaStorage,
    receiver: WebhookReceiver,
    *,
    wait: bool,
    timeout_seconds: float,
    before_url: str,
    kind: Literal["image", "video"] = "image",
) -> SwapOutcome:
    """Wait for the callback and store the result, or hand over to the store-result trigger (wait=False)."""
    outcome = SwapOutcome(
        operation=job.operation,
        status="submitted",
        task_id=job.task_id,
        job_id=job.job_id,
        credits=job.points,
        result_key=job.result_key,
    )
    if not wait:
        return outcome
    assert job.result_key is not None
    callback = await wait_for_callback(job.task_id, receiver, timeout_seconds)
    key = await fetch_result(storage, callback.result_image, job.result_key, kind)
    await before_after_artifact(
        storage, before_url, key, task_id=job.task_id, credits=job.points, operation=job.operation
    )
    return outcome.model_copy(update={"status": "stored", "result_uri": storage.uri(key)})
