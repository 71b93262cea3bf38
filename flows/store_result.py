"""The store-result flow: what a deployment triggered by ``aifaceswap.task.succeeded`` runs (wait=False jobs),
and how a job whose wait timed out is collected later by its task_id."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from blocks import MediaStorage
from flows.blocks_config import DEFAULT_STORAGE
from flows.labels import SyntheticLabel
from flows.media_tasks import fetch_result
from flows.outcome import SwapOutcome
from flows.provenance import JobFacts, OutputOptions, record_key, record_provenance, submission_facts
from flows.waiting import stored_event


class ResultNotAvailable(RuntimeError):
    """The job has no stored callback event (yet), or it failed."""


async def _submitted(task_id: str, attempts: int = 5) -> dict[str, Any]:
    """The facts the submitting run put in the task's submitted event ({} when there is none)."""
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


@flow(name="store-result")
async def store_result(
    task_id: str,
    result_image: str | None = None,
    result_key: str | None = None,
    storage_block: str | None = None,
    operation: str | None = None,
    label_outputs: bool | None = None,
) -> SwapOutcome:
    """Fetch a finished job's result into storage, labelled as synthetic media, with its provenance record. With
    only ``task_id``, the rest is read from the job's callback event (so a timed-out wait can be resumed:
    ``faceswap-flows collect TASK_ID``). Inputs, parameters, credits and the label/watermark choice come from
    the job's submitted event; ``label_outputs`` overrides the choice made at submission."""
    job_id = None
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
        job_id = event.get("job_id")
    assert result_image and result_key
    submitted = await _submitted(task_id)
    operation = operation or submitted.get("operation") or "unknown"
    job_id = job_id or submitted.get("job_id")
    parameters = submitted.get("parameters") or {}
    output = OutputOptions(
        label=parameters.get("label_outputs", True) if label_outputs is None else label_outputs,
        watermark=parameters.get("watermark"),
        watermark_corner=parameters.get("watermark_corner") or "bottom-right",
    )
    if not output.label:
        get_run_logger().warning("label_outputs=False: task %s is stored WITHOUT the synthetic-media label", task_id)
    storage = await MediaStorage.aload(storage_block or DEFAULT_STORAGE)
    kind = "video" if result_key.endswith(".mp4") else "image"
    label = None
    if output.label:
        label = SyntheticLabel(task_id=task_id, operation=operation, job_id=job_id, record_key=record_key(result_key))
    key = await fetch_result(storage, result_image, result_key, kind, label, output.watermark, output.watermark_corner)
    await record_provenance(
        storage,
        key,
        operation=operation,
        task_id=task_id,
        job_id=job_id,
        credits=submitted.get("points"),
        credits_estimated=bool(submitted.get("points_estimated")),
        facts=JobFacts(inputs=submitted.get("inputs") or [], parameters=parameters),
        options=output,
        label=label,
        submitted_by={k: submitted.get(k) for k in ("flow_run", "deployment", "run_by")} if submitted else None,
    )
    get_run_logger().info("task %s stored at %s", task_id, storage.uri(key))
    return SwapOutcome(
        operation=operation,
        status="stored",
        task_id=task_id,
        job_id=job_id or "",
        credits=submitted.get("points") or 0,
        result_key=key,
        result_uri=storage.uri(key),
        provenance_key=record_key(key),
    )
