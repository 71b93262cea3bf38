"""The store-results flow: one run stores the results of every succeeded job whose event is labelled
``aifaceswap.store-by: sweep`` (jobs submitted with ``store_by="sweep"``), instead of one store-result run per job.

Its deployment is triggered by the first such event, and the reactive trigger then ignores the matching events
of the next ``within`` seconds (see prefect/server/events/triggers.py: ``evaluate`` starts the next bucket at the
end of the window, and earlier events are dropped, not deferred). So a run covers that window itself: it finds
the jobs finished from ``since - lookback_seconds`` on, stores what is not stored yet, and sweeps again every
``poll_seconds`` at most until ``window_seconds + settle_seconds`` after ``since`` have passed and a sweep found
nothing new. A sweep starts as soon as a callback event arrives on Prefect's event stream (every receiver's jobs,
live: :class:`LiveCallbacks`) and reads what the receiver's inbox took since the previous one; the stored events,
read whole, are the fallback when neither can be had and the last check before a run ends (see :class:`JobSource`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_progress_artifact, aupdate_progress_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from faceswap_flows.blocks import MediaStorage, WebhookReceiver
from faceswap_flows.flows.blocks_config import DEFAULT_RECEIVER, DEFAULT_STORAGE
from faceswap_flows.flows.collect import FinishedJob
from faceswap_flows.flows.exceptions import ResultsNotStored
from faceswap_flows.flows.sweep.chunks import (
    ChunkOutcome,
    bulk_submitted_facts,
    load_storages,
    not_stored,
    store_chunk,
)
from faceswap_flows.flows.sweep.failures import failed_in, remember_failed_jobs
from faceswap_flows.flows.sweep.jobs import JobSource, jobs_in
from faceswap_flows.flows.sweep.live import LiveCallbacks
from faceswap_flows.flows.sweep.mark import SweptMark, SweptSpan

SHOWN_FAILURES = 50
# The swept span a run records ends at least this long before its last sweep: an event another receiver took and
# the API stored up to this late is still read by a later incremental run (this receiver's inbox is exact at once).
MARK_MARGIN_SECONDS = 60.0


class StoreResultsReport(BaseModel):
    """What one sweep run did: jobs found, stored now, found already stored, and those that failed."""

    found: int = 0
    stored: int = 0
    already_stored: int = 0
    failed: int = 0
    sweeps: int = 0
    stored_keys: list[str] = Field(default_factory=list)
    failed_task_ids: list[str] = Field(default_factory=list)
    service_failed: int = Field(default=0, description="Batch jobs the service failed (success 0), noted for later.")
    already_swept: SweptSpan | None = Field(
        default=None, description="Set when earlier runs had stored every job of this run's window: nothing was read."
    )

    def add(self, chunk: ChunkOutcome) -> None:
        self.stored += len(chunk.stored_keys)
        self.stored_keys += chunk.stored_keys
        self.already_stored += chunk.already_stored
        self.failed += len(chunk.failed)
        self.failed_task_ids += list(chunk.failed)

    @property
    def done(self) -> int:
        return self.stored + self.already_stored + self.failed


def summary_markdown(report: StoreResultsReport, errors: dict[str, str], since: datetime, until: datetime) -> str:
    if swept := report.already_swept:
        return (
            "### store-results: window already swept\n\n"
            f"Earlier runs stored every job received from `{swept.start.isoformat()}` to `{swept.end.isoformat()}`, "
            f"which holds this run's look-back and window (from `{since.isoformat()}`): nothing was read.\n"
        )
    rows = [
        ("found (succeeded, store-by=sweep)", report.found),
        ("stored now", report.stored),
        ("already stored", report.already_stored),
        ("failed", report.failed),
        ("failed on the service's side (noted for later batches)", report.service_failed),
        ("sweeps", report.sweeps),
    ]
    text = (
        f"### store-results: {report.stored} stored, {report.failed} failed\n\n"
        f"Events from `{since.isoformat()}` to `{until.isoformat()}`.\n\n| | jobs |\n|---|---|\n"
        + "".join(f"| {name} | {count} |\n" for name, count in rows)
    )
    if errors:
        shown = list(errors.items())[:SHOWN_FAILURES]
        text += "\n#### Not stored\n\n| task_id | error |\n|---|---|\n"
        text += "".join(f"| `{task_id}` | {error.replace('|', '/')} |\n" for task_id, error in shown)
        if len(errors) > SHOWN_FAILURES:
            text += f"\n... and {len(errors) - SHOWN_FAILURES} more (see the run's logs)\n"
    return text


async def optional_receiver(name: str | None) -> WebhookReceiver | None:
    """The receiver block whose inbox the sweep reads; None (stored events only) when unnamed or not loadable."""
    if not name:
        return None
    try:
        return await WebhookReceiver.aload(name)
    except Exception as error:
        get_run_logger().warning("receiver block %r not loaded (%s): jobs are found in stored events only", name, error)
        return None


class Sweeper:
    """The state of one store-results run: the jobs seen, the storages loaded, the failures; stores new jobs in
    chunks (one store-chunk task run each)."""

    def __init__(
        self, default_storage: str, chunk_size: int, max_concurrency: int, attempts: int, max_chunks: int = 2
    ) -> None:
        self.default_storage, self.chunk_size = default_storage, chunk_size
        self.max_concurrency, self.attempts = max_concurrency, attempts
        self.chunk_slots = asyncio.Semaphore(max_chunks)
        self.storing: set[asyncio.Task[None]] = set()
        self.report = StoreResultsReport()
        self.errors: dict[str, str] = {}
        self.seen: set[str] = set()
        self.failed_seen: set[str] = set()
        self.storages: dict[str, MediaStorage] = {}
        self.bad_blocks: dict[str, str] = {}
        self.chunks = 0

    def fail(self, task_id: str, reason: str) -> None:
        self.errors[task_id] = reason
        self.report.add(ChunkOutcome(failed={task_id: reason}))

    def take_new(self, jobs: list[FinishedJob], unusable: list[str]) -> list[FinishedJob]:
        """The jobs not seen before (those naming no result fail at once); all are seen from now on."""
        new = [job for job in jobs if job.task_id not in self.seen]
        for task_id in (t for t in unusable if t not in self.seen):
            self.fail(task_id, "its success event names no result_image")
        self.seen.update([job.task_id for job in new] + unusable)
        self.report.found = len(self.seen)
        return new

    async def note_failures(self, payloads: list[dict[str, Any]]) -> None:
        """Note the batch jobs the service failed, each once, in their works' index entries."""
        failed = [payload for payload in failed_in(payloads) if payload["task_id"] not in self.failed_seen]
        self.failed_seen.update(payload["task_id"] for payload in failed)
        if failed:
            blocks = {payload.get("storage_block") or "" for payload in failed}
            await load_storages(blocks, self.default_storage, self.storages, self.bad_blocks)
            facts = await bulk_submitted_facts([payload["task_id"] for payload in failed])
            self.report.service_failed += await remember_failed_jobs(failed, facts, self.storages)

    async def store(self, new: list[FinishedJob]) -> None:
        """Start storing the new jobs not stored yet, ``chunk_size`` to a store-chunk task run, ``max_chunks`` runs at
        a time; returns once they are started (:meth:`stored` waits for them), so the next sweep is not held up."""
        logger, report = get_run_logger(), self.report
        logger.info("sweep %d: %d new job(s)", report.sweeps, len(new))
        blocks = {job.storage_block or "" for job in new}
        await load_storages(blocks, self.default_storage, self.storages, self.bad_blocks)
        for job in new:
            if (job.storage_block or "") in self.bad_blocks:
                self.fail(job.task_id, self.bad_blocks[job.storage_block or ""])
        candidates = [job for job in new if (job.storage_block or "") in self.storages]
        storable = await not_stored(candidates, self.storages)
        report.add(ChunkOutcome(already_stored=len(candidates) - len(storable)))
        logger.info(
            "sweep %d: %d already stored, %d to store", report.sweeps, len(candidates) - len(storable), len(storable)
        )
        for start in range(0, len(storable), self.chunk_size):
            self.chunks += 1
            storing = asyncio.create_task(self._store_chunk(storable[start : start + self.chunk_size], self.chunks))
            self.storing.add(storing)
            storing.add_done_callback(self.storing.discard)

    async def _store_chunk(self, chunk: list[FinishedJob], number: int) -> None:
        """One store-chunk run; when it fails as a whole, each of its jobs is reported as not stored."""
        try:
            async with self.chunk_slots:
                outcome = await store_chunk(
                    chunk, self.storages, number, len(chunk), self.max_concurrency, self.attempts
                )
        except Exception as error:
            reason = f"its chunk {number} failed: {type(error).__name__}: {error}"[:300]
            get_run_logger().error("chunk %d: %d results NOT stored: %s", number, len(chunk), reason)
            outcome = ChunkOutcome(failed={job.task_id: reason for job in chunk})
        self.report.add(outcome)
        self.errors.update(outcome.failed)

    async def stored(self) -> None:
        """Wait until every chunk started is stored."""
        while self.storing:
            await asyncio.gather(*self.storing)


@flow(name="store-results")
async def store_results(
    since: datetime | None = None,
    window_seconds: float = 30,
    lookback_seconds: float = 300,
    settle_seconds: float = 15,
    poll_seconds: float = 2,
    max_concurrency: int = 8,
    chunk_size: int = 50,
    attempts: int = 3,
    storage_block: str = DEFAULT_STORAGE,
    receiver_block: str | None = DEFAULT_RECEIVER,
    incremental: bool = False,
) -> StoreResultsReport:
    """Store the results of every succeeded job labelled `aifaceswap.store-by: sweep` in one run.

    Sweeps go on until a sweep finds nothing new; results already stored (with a provenance record) are skipped,
    each other is stored as store-result would. Jobs come from the live callback events, the receiver's inbox and
    the stored events.
    A run that stores everything it found records the span it swept, for the next `incremental` run.

    Args:
        since: The triggering event's time. None: now; a naive time means UTC.
        window_seconds: How long after `since` jobs are still collected.
        lookback_seconds: How long before `since` events are read (late or missed ones).
        settle_seconds: Extra time after the window for late callbacks.
        poll_seconds: The longest wait between two sweeps (a callback event starts one at once).
        max_concurrency: How many results each store-chunk task run stores at a time.
        chunk_size: How many jobs each store-chunk task run stores (two such runs store at once, beside the sweeps).
        attempts: Tries per result before it is reported as not stored.
        storage_block: Name of the MediaStorage block for jobs whose event names none.
        receiver_block: Name of the WebhookReceiver block whose inbox is read. None: stored events only.
        incremental: Trust what earlier complete runs swept (a Prefect Variable, see flows/sweep/mark.py): end at
            once when they covered this run's look-back and window, else read on from where they stopped. The
            trigger sets it; leave it off for a catch-up run after an outage, which re-reads its whole look-back.

    Returns:
        The sweep's report: found, stored, already stored and failed jobs.

    Raises:
        ResultsNotStored: Some results could not be stored (the report lists their task_ids).
    """
    started = datetime.now(UTC)
    anchor = since or started
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=UTC)
    read_from = anchor - timedelta(seconds=lookback_seconds)
    until = max(
        anchor + timedelta(seconds=window_seconds + settle_seconds), started + timedelta(seconds=settle_seconds)
    )
    mark = SweptMark(receiver_block)
    swept = await mark.read() if incremental else None
    if swept and swept.covers(read_from, anchor + timedelta(seconds=window_seconds)):
        return await finish(StoreResultsReport(already_swept=swept), {}, read_from, until)
    if swept and swept.start <= read_from < swept.end:
        read_from = swept.end
    receiver = await optional_receiver(receiver_block)
    sweeper = Sweeper(storage_block, chunk_size, max_concurrency, attempts)
    progress = await acreate_progress_artifact(
        0.0, key="store-results-progress", description="store-results: share of the jobs found so far handled"
    )
    report = sweeper.report
    source = JobSource(read_from, until, receiver)
    shown = 0.0
    async with LiveCallbacks(read_from, until) as live:
        while True:
            swept_at = datetime.now(UTC)
            final = swept_at >= until
            received, arrived = await source.from_inbox(), live.take()
            # after the first sweep's read of the stored events, the live events hold every receiver's jobs
            caught_up = live.listening and report.sweeps > 0
            whole = received is None and not caught_up
            if whole:  # neither the inbox nor the live events: the stored events are all there is
                payloads = await source.from_stored_events()
            elif caught_up:
                payloads = (received or []) + arrived
                source.read_events_on_from(swept_at)  # were the stream cut, the stored events are read from here
            else:
                payloads = (received or []) + arrived + await source.recent_stored_events()
            jobs, unusable = jobs_in(payloads)
            if final and not whole and not any(job.task_id not in sweeper.seen for job in jobs):
                payloads = await source.from_stored_events()  # before ending: whatever the live events missed
                jobs, unusable = jobs_in(payloads)
            report.sweeps += 1
            await sweeper.note_failures(payloads)
            new = sweeper.take_new(jobs, unusable)
            if new:
                await sweeper.store(new)
            elif final:
                await sweeper.stored()
                break
            if (share := 100.0 * report.done / max(report.found, 1)) != shown:
                await aupdate_progress_artifact(progress, shown := share)
            await live.wait(poll_seconds)
    await aupdate_progress_artifact(progress, 100.0)
    if not report.failed:
        margin = timedelta(seconds=max(settle_seconds, MARK_MARGIN_SECONDS))
        await mark.extend(SweptSpan(start=read_from, end=min(until, swept_at - margin)))
    return await finish(report, sweeper.errors, read_from, until)


async def finish(
    report: StoreResultsReport, errors: dict[str, str], since: datetime, until: datetime
) -> StoreResultsReport:
    """Write the run's summary artifact and log line; raise ResultsNotStored when some results were not stored."""
    await acreate_markdown_artifact(
        key="store-results",
        markdown=summary_markdown(report, errors, since, until),
        description=f"store-results: {report.stored} stored, {report.failed} failed",
    )
    if report.already_swept:
        get_run_logger().info(
            "earlier runs stored every job received from %s to %s, this run's window included: nothing to do",
            report.already_swept.start.isoformat(),
            report.already_swept.end.isoformat(),
        )
        return report
    get_run_logger().info(
        "%d job(s) found: %d stored, %d already stored, %d failed (%d sweeps)",
        report.found,
        report.stored,
        report.already_stored,
        report.failed,
        report.sweeps,
    )
    if report.failed:
        raise ResultsNotStored(report)
    return report
