"""Storing a sweep's jobs in chunks: a ``store-chunk`` task run per chunk stores its results a few at a time, each
as store-result would, reading the chunk's submitted events in one query; a failure is reported, never raised."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.collect import FinishedJob, store_job, submitted_facts
from faceswap_flows.flows.provenance.records import is_stored
from faceswap_flows.flows.sweep.jobs import read_all_events
from faceswap_flows.receiver.events import SUBMITTED, task_resource_id

RETRY_DELAYS = (1.0, 5.0, 15.0)


class ChunkOutcome(BaseModel):
    stored_keys: list[str] = Field(default_factory=list)
    already_stored: int = 0
    failed: dict[str, str] = Field(default_factory=dict)


async def bulk_submitted_facts(task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The submitted events' payloads of many tasks, by task_id, in one query (and its pages)."""
    if not task_ids:
        return {}
    event_filter = EventFilter(
        event=EventNameFilter(name=[SUBMITTED]),
        resource=EventResourceFilter(id=[task_resource_id(task_id) for task_id in task_ids]),
    )
    facts: dict[str, dict[str, Any]] = {}
    for event in await read_all_events(event_filter):
        payload = dict(event.payload)
        facts.setdefault(str(payload.get("task_id")), payload)
    return facts


async def _store_one(
    job: FinishedJob, storage: MediaStorage, submitted: dict[str, Any] | None, attempts: int
) -> str | None:
    """The stored key, or None when the result was already there."""
    if await asyncio.to_thread(is_stored, storage, job.result_key):
        return None
    if submitted is None:
        submitted = await submitted_facts(job.task_id, attempts=1)  # the chunk's bulk read found none: no waiting
    for attempt in range(1, attempts):
        try:
            return (await store_job(job, storage, submitted, inline=True)).result_key
        except Exception as error:
            get_run_logger().warning("task %s: attempt %d failed (%s); retrying", job.task_id, attempt, error)
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1])
    return (await store_job(job, storage, submitted, inline=True)).result_key


@task(name="store-chunk", task_run_name="store {count} results (chunk {number})", cache_policy=NO_CACHE)
async def store_chunk(
    jobs: list[FinishedJob],
    storages: dict[str, MediaStorage],
    number: int,
    count: int,
    max_concurrency: int = 8,
    attempts: int = 3,
) -> ChunkOutcome:
    """Store a chunk of results, `max_concurrency` at a time; a failure is logged and reported, never raised.

    Args:
        jobs: The finished jobs to store.
        storages: MediaStorage blocks by name.
        number: The chunk's number (for the task run's name).
        count: How many jobs it holds.
        max_concurrency: How many results are stored at a time.
        attempts: Tries per result before it is reported as failed.

    Returns:
        The keys stored, how many were already stored, and the failures by task_id.
    """
    logger = get_run_logger()
    facts = await bulk_submitted_facts([job.task_id for job in jobs])
    slots = asyncio.Semaphore(max_concurrency)
    outcome = ChunkOutcome()

    async def one(job: FinishedJob) -> None:
        async with slots:
            try:
                key = await _store_one(job, storages[job.storage_block or ""], facts.get(job.task_id), attempts)
            except Exception as error:
                logger.error("task %s: result NOT stored: %s: %s", job.task_id, type(error).__name__, error)
                outcome.failed[job.task_id] = f"{type(error).__name__}: {error}"[:300]
                return
        if key is None:
            outcome.already_stored += 1
        else:
            outcome.stored_keys.append(key)

    await asyncio.gather(*(one(job) for job in jobs))
    logger.info(
        "chunk %d: %d stored, %d already stored, %d failed",
        number,
        len(outcome.stored_keys),
        outcome.already_stored,
        len(outcome.failed),
    )
    return outcome


async def not_stored(jobs: list[FinishedJob], storages: dict[str, MediaStorage]) -> list[FinishedJob]:
    """The jobs whose result is not stored whole yet (a later run finds most of its window stored already: they
    need no task run, nor a read of their submitted events)."""
    stored = await asyncio.gather(
        *(asyncio.to_thread(is_stored, storages[job.storage_block or ""], job.result_key) for job in jobs)
    )
    return [job for job, done in zip(jobs, stored, strict=True) if not done]


async def load_storages(names: set[str], default: str, cache: dict[str, MediaStorage], failed: dict[str, str]) -> None:
    """Load the storage blocks not loaded yet into ``cache`` ("" is ``default``); ``failed`` gets the others."""
    for name in names - set(cache) - set(failed):
        try:
            cache[name] = await MediaStorage.aload(name or default)
        except Exception as error:
            failed[name] = f"cannot load the storage block {name or default!r}: {error}"
