"""What a swap flow returns, and the steps every swap shares after its submission."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from blocks import MediaStorage, WebhookReceiver
from flows.api_tasks import SubmittedJob, wait_for_callback
from flows.artifacts import before_after_artifact
from flows.media_tasks import fetch_result


class SwapOutcome(BaseModel):
    """A swap's outcome: ``stored`` (result in storage) or ``submitted`` (wait=False: a trigger stores it)."""

    operation: str
    status: Literal["stored", "submitted"]
    task_id: str
    job_id: str
    credits: int
    result_key: str | None
    result_uri: str | None = None


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
