"""The store-result flow: what a deployment triggered by ``aifaceswap.task.succeeded`` runs (wait=False jobs),
and how a job whose wait timed out is collected later by its task_id."""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger

from blocks import MediaStorage
from flows.blocks_config import DEFAULT_STORAGE
from flows.media_tasks import fetch_result
from flows.outcome import SwapOutcome
from flows.waiting import stored_event


class ResultNotAvailable(RuntimeError):
    """The job has no stored callback event (yet), or it failed."""


@flow(name="store-result")
async def store_result(
    task_id: str,
    result_image: str | None = None,
    result_key: str | None = None,
    storage_block: str | None = None,
    operation: str | None = None,
) -> SwapOutcome:
    """Fetch a finished job's result into storage. With only ``task_id``, the rest is read from the job's
    callback event (so a timed-out wait can be resumed: ``faceswap-flows collect TASK_ID``)."""
    if not (result_image and result_key):
        event = await stored_event(task_id)
        if event is None:
            raise ResultNotAvailable(f"no callback event for task_id {task_id} yet: try again once the job finished")
        if not event.get("success"):
            raise ResultNotAvailable(f"task {task_id} failed on the service's side (success 0): nothing to store")
        result_image = result_image or event["result_image"]
        result_key = result_key or event.get("result_key") or f"results/collected/{task_id}"
        storage_block = storage_block or event.get("storage_block")
        operation = operation or event.get("operation")
    assert result_image and result_key
    storage = await MediaStorage.aload(storage_block or DEFAULT_STORAGE)
    kind = "video" if result_key.endswith(".mp4") else "image"
    key = await fetch_result(storage, result_image, result_key, kind)
    get_run_logger().info("task %s stored at %s", task_id, storage.uri(key))
    return SwapOutcome(
        operation=operation or "unknown",
        status="stored",
        task_id=task_id,
        job_id="",
        credits=0,
        result_key=key,
        result_uri=storage.uri(key),
    )
