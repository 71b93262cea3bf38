"""The jobs a store-results sweep finds failed on the service's side (success 0): nothing to store, but a batch
item's failure is noted in its work's index entry, so the next batch over the same work does not pay again."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect.logging import get_run_logger

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.work_index import remember_job_failure

SEEN_BY = "store-results sweep"


def failed_in(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The callbacks that say the job failed (success 0), one per task_id."""
    failed: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        if payload.get("success") == 0 and payload.get("task_id"):
            failed.setdefault(str(payload["task_id"]), payload)
    return list(failed.values())


async def remember_failed_jobs(
    failed: list[dict[str, Any]], facts: dict[str, dict[str, Any]], storages: dict[str, MediaStorage]
) -> int:
    """Note each failed batch job in its work's index entry (found by the fingerprint of its submitted facts, in
    the storage its callback names); returns how many were noted."""
    noted = 0
    for payload in failed:
        storage = storages.get(payload.get("storage_block") or "")
        submitted = facts.get(str(payload["task_id"])) or {}
        if storage is not None and await asyncio.to_thread(remember_job_failure, storage, submitted, payload, SEEN_BY):
            noted += 1
    if failed:
        get_run_logger().info("%d job(s) failed on the service's side, %d noted for later batches", len(failed), noted)
    return noted
