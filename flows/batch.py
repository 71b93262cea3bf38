"""The batch flow: many single-image swaps from a manifest, with a concurrency limit, a budget, and one
outcome per item (a failed item never fails the others)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import Failed, State
from pydantic import BaseModel, Field

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import FaceSwapRequest
from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.blocks_config import (
    DEFAULT_CREDENTIALS,
    DEFAULT_RECEIVER,
    DEFAULT_STORAGE,
    Services,
    load_services,
)
from faceswap_flows.flows.manifest import BatchItem, decode_manifest, parse_manifest
from faceswap_flows.flows.provenance.consent import check_consent, preflight
from faceswap_flows.flows.provenance.content_credentials import DEFAULT_SIGNING
from faceswap_flows.flows.provenance.labels import WatermarkCorner
from faceswap_flows.flows.provenance.records import OutputOptions, job_facts, write_manifest
from faceswap_flows.flows.tasks.artifacts import artifact_key, credits_artifact
from faceswap_flows.flows.tasks.job import submit_and_finish, worth_another_attempt
from faceswap_flows.flows.tasks.media import StagedMedia, stage
from faceswap_flows.flows.tasks.paid_calls import AT_MOST_ONCE, OnUnknownOutcome

STAGING_CONCURRENCY = 8
ITEMS_PER_TASK = 25


class ItemOutcome(BaseModel):
    position: int
    id: str | None
    status: Literal["stored", "submitted", "failed", "skipped"]
    task_id: str | None = None
    credits: int = 0
    result_uri: str | None = None
    provenance_key: str | None = None
    error: str | None = None


class BatchReport(BaseModel):
    items: list[ItemOutcome]
    credits: int
    stored: int
    submitted: int
    failed: int
    skipped: int
    report_key: str | None = None
    provenance_key: str | None = None


@task(name="read-manifest", task_run_name="read manifest {manifest}")
def read_manifest(storage: MediaStorage, manifest: str) -> list[BatchItem]:
    """Items of a CSV (header: source_image,face_image[,id]) or JSONL manifest, local or in storage."""
    local = Path(manifest).expanduser()
    if local.is_file():
        data = local.read_bytes()
    elif storage.exists(manifest):
        data = storage.read_bytes(manifest)
    else:
        raise InputValidationError(
            f"manifest: {manifest!r} is neither a local file nor a key in storage: check the path"
        )
    try:
        return parse_manifest(decode_manifest(data, manifest), jsonl=manifest.endswith((".jsonl", ".ndjson")))
    except InputValidationError as error:
        raise InputValidationError(f"{error} ({manifest})") from None


class Budget:
    """Credits reserved by the items submitted so far; an item that would go over is not submitted."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.reserved = 0
        self._holders: set[int] = set()
        self._lock = asyncio.Lock()

    async def reserve(self, position: int, credits: int) -> bool:
        """Reserve the item's credits (once: an item attempted again keeps its reservation)."""
        async with self._lock:
            if position in self._holders:
                return True
            if self.limit is not None and self.reserved + credits > self.limit:
                return False
            self.reserved += credits
            self._holders.add(position)
            return True


class StagedInputs(BaseModel):
    """The batch's distinct inputs, staged once each; ``errors`` holds why an input could not be."""

    staged: dict[str, StagedMedia] = {}
    errors: dict[str, str] = {}


@task(name="stage-inputs", task_run_name="stage {count} distinct inputs", cache_policy=NO_CACHE)
async def stage_inputs(storage: MediaStorage, fields: dict[str, str], count: int) -> StagedInputs:
    """Check and stage every distinct input of the batch once (an input many items share is hashed and uploaded
    once), before anything is submitted. ``fields`` maps each input to the field name its errors cite."""
    slots = asyncio.Semaphore(STAGING_CONCURRENCY)
    found = StagedInputs()

    async def one(source: str, field: str) -> None:
        async with slots:
            try:
                found.staged[source] = await asyncio.to_thread(stage, storage, source, field)
            except Exception as error:  # the items that use it fail; the others go on
                found.errors[source] = str(error)

    await asyncio.gather(*(one(source, field) for source, field in fields.items()))
    get_run_logger().info("%d inputs staged, %d refused", len(found.staged), len(found.errors))
    return found


async def swap_item(
    services: Services,
    item: BatchItem,
    position: int,
    inputs: StagedInputs,
    *,
    wait: bool,
    timeout_seconds: float,
    output: OutputOptions | None = None,
    inline: bool = False,
    require_consent: bool = False,
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE,
) -> ItemOutcome:
    """One item; ``inline``: as steps of the caller's task run, else as its own submit and collect task runs."""
    refused = [inputs.errors[source] for source in (item.source_image, item.face_image) if source in inputs.errors]
    if refused:
        raise InputValidationError("; ".join(refused))
    source, face = inputs.staged[item.source_image], inputs.staged[item.face_image]
    consent = await asyncio.to_thread(check_consent, services.storage, [("face_image", face)], require_consent)
    outcome = await submit_and_finish(
        services,
        FaceSwapRequest,
        {"source_image": source.url, "face_image": face.url},
        identity={"source_image": source.key or source.url, "face_image": face.key or face.url},
        position=position,
        wait=wait,
        timeout_seconds=timeout_seconds,
        before_url=source.url,
        task_run_name=f"submit item {position}",
        artifacts=False,
        facts=job_facts(
            {"source_image": source, "face_image": face}, consent, batch_item=position, batch_item_id=item.id
        ),
        output=output,
        store_by=None if wait else "sweep",
        steps="inline" if inline else "collect-task",
        on_unknown_outcome=on_unknown_outcome,
    )
    return ItemOutcome(
        position=position,
        id=item.id,
        status=outcome.status,
        task_id=outcome.task_id,
        credits=outcome.credits,
        result_uri=outcome.result_uri,
        provenance_key=outcome.provenance_key,
    )


class Progress:
    """The batch's progress artifact, updated at most once a second (and at the end)."""

    def __init__(self, artifact_id: UUID, total: int) -> None:
        self.artifact_id, self.total, self._done, self._shown = artifact_id, total, set[int](), 0.0

    async def advance(self, position: int) -> None:
        self._done.add(position)
        now = time.monotonic()
        if len(self._done) == self.total or now - self._shown >= 1.0:
            self._shown = now
            await aupdate_progress_artifact(self.artifact_id, progress=100.0 * len(self._done) / self.total)


ItemRunner = Callable[[int, bool], Awaitable[ItemOutcome]]


class ItemsToRetry(RuntimeError):
    """Items of a group failed in a way another attempt may fix."""


@task(
    name="swap-items",
    task_run_name="swap items {first} to {last}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
)
async def swap_items(first: int, last: int, run_item: ItemRunner) -> list[ItemOutcome]:
    """Items ``first`` to ``last`` of the batch as steps of this one task run. When items fail in a way another
    attempt may fix (a 5xx, a lost connection, a failed download), the others finish, then the task run fails
    and Prefect retries it: items already submitted are re-attached (never paid twice), results already stored
    are kept, only the rest runs again. The last attempt reports what still fails as failed items."""
    context = TaskRunContext.get()
    last_attempt = context is None or context.task_run.run_count > (swap_items.retries or 0)
    results = await asyncio.gather(
        *(run_item(position, last_attempt) for position in range(first, last + 1)), return_exceptions=True
    )
    errors = [result for result in results if isinstance(result, BaseException)]
    if errors:
        raise ItemsToRetry(f"{len(errors)} of {len(results)} items will be attempted again; first: {errors[0]}")
    return [result for result in results if isinstance(result, ItemOutcome)]


async def run_in_groups(run_item: ItemRunner, items: list[BatchItem], size: int) -> list[ItemOutcome]:
    """Every item through ``swap-items`` task runs of ``size`` items; a group whose task run itself failed (not
    its items) reports each of its items as failed, and the other groups go on."""
    groups = [(first, min(first + size, len(items)) - 1) for first in range(0, len(items), size)]
    states = await asyncio.gather(*(swap_items(first, last, run_item, return_state=True) for first, last in groups))
    outcomes = []
    for (first, last), state in zip(groups, states, strict=True):
        if state.is_completed():
            outcomes.extend(await state.aresult())
        else:
            error = str(await state.aresult(raise_on_failure=False))[:500]
            outcomes.extend(
                ItemOutcome(position=position, id=items[position].id, status="failed", error=error)
                for position in range(first, last + 1)
            )
    return outcomes


@flow(name="batch-faceswap")
async def batch_faceswap(
    manifest: str,
    max_concurrency: int = 4,
    max_credits: int | None = None,
    items_per_task: Annotated[int, Field(ge=1)] = ITEMS_PER_TASK,
    concurrency_limit: str | None = None,
    wait: bool = True,
    timeout_seconds: float = 900,
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE,
    label_outputs: bool = True,
    watermark: str | None = None,
    watermark_corner: WatermarkCorner = "bottom-right",
    sign_outputs: bool = True,
    signing_block: str = DEFAULT_SIGNING,
    require_consent: bool = False,
    credentials_block: str = DEFAULT_CREDENTIALS,
    storage_block: str = DEFAULT_STORAGE,
    receiver_block: str = DEFAULT_RECEIVER,
) -> BatchReport | State[BatchReport]:
    """Swap every line of a manifest, ``max_concurrency`` at a time (and within the global concurrency
    limit ``concurrency_limit`` if given). Items over ``max_credits`` are skipped, never submitted.
    Each result is labelled, signed and recorded as the faceswap flow does; one manifest gathers every item's
    record. ``require_consent``: an item whose face photo is not in the consent register fails, unpaid.

    Items run ``items_per_task`` to a ``swap-items`` task run (retried for what another attempt may fix);
    ``items_per_task=1`` gives each item its own ``submit`` and ``collect-result`` task runs instead: the most
    detail in the UI, for about twice the work of the Prefect server (see BENCHMARKS.md).

    The run ends Completed only when every item was stored (or, without ``wait``, submitted for the sweep to
    store); when any item failed (refused, or its outcome unknown) or was skipped for budget, it ends Failed with
    the counts in its message, after writing its report (the Failed state's result). ``on_unknown_outcome``:
    as the faceswap flow, for every item."""
    logger = get_run_logger()
    services = await load_services(credentials_block, storage_block, receiver_block)
    items = await asyncio.to_thread(read_manifest, services.storage, manifest)
    price = estimate_credits("faceswap")
    budget = Budget(max_credits)
    slots = asyncio.Semaphore(max_concurrency)
    output = OutputOptions(
        label=label_outputs,
        watermark=watermark,
        watermark_corner=watermark_corner,
        sign=sign_outputs,
        signing_block=signing_block,
    )
    await preflight(services.storage, output, False, [])  # the signing key loads, before any credit
    fields = {}
    for position, item in enumerate(items):
        fields.setdefault(item.source_image, f"item {position} source_image")
        fields.setdefault(item.face_image, f"item {position} face_image")
    inputs = await stage_inputs(services.storage, fields, len(fields))
    progress = Progress(
        await acreate_progress_artifact(progress=0.0, description=f"batch of {len(items)} items"), len(items)
    )

    async def run(position: int, last_attempt: bool = True) -> ItemOutcome:
        item = items[position]
        async with slots, AsyncExitStack() as stack:
            if concurrency_limit:
                await stack.enter_async_context(concurrency(concurrency_limit, occupy=1))
            if not await budget.reserve(position, price):
                outcome = ItemOutcome(position=position, id=item.id, status="skipped", error="over max_credits")
            else:
                try:
                    outcome = await swap_item(
                        services,
                        item,
                        position,
                        inputs,
                        wait=wait,
                        timeout_seconds=timeout_seconds,
                        output=output,
                        inline=items_per_task > 1,
                        require_consent=require_consent,
                        on_unknown_outcome=on_unknown_outcome,
                    )
                except Exception as error:
                    if not last_attempt and worth_another_attempt(error):
                        raise
                    logger.warning("item %d failed: %s", position, error)
                    outcome = ItemOutcome(position=position, id=item.id, status="failed", error=str(error)[:500])
        await progress.advance(position)
        return outcome

    if items_per_task == 1:
        outcomes = list(await asyncio.gather(*(run(position) for position in range(len(items)))))
    else:
        outcomes = await run_in_groups(run, items, items_per_task)
    report = BatchReport(
        items=outcomes,
        credits=sum(o.credits for o in outcomes),
        **{
            status: sum(o.status == status for o in outcomes) for status in ("stored", "submitted", "failed", "skipped")
        },
    )
    report.report_key = f"reports/{artifact_key('batch', Path(manifest).stem)}-{len(items)}.json"
    report.provenance_key = report.report_key.removesuffix(".json") + "-provenance.json"
    await asyncio.to_thread(write_manifest, services.storage, report.provenance_key, [o.model_dump() for o in outcomes])
    await asyncio.to_thread(services.storage.write_bytes, report.report_key, report.model_dump_json(indent=2).encode())
    await credits_artifact(
        [
            {"item": o.position, "id": o.id or "", "status": o.status, "task_id": o.task_id or "", "credits": o.credits}
            for o in outcomes
        ]
        + [{"item": "total", "id": "", "status": "", "task_id": "", "credits": report.credits}],
        "batch",
    )
    summary = (
        f"batch: {report.stored} stored, {report.submitted} submitted, {report.failed} failed, "
        f"{report.skipped} skipped (over max_credits), {report.credits} credits; report {report.report_key}"
    )
    logger.info(summary)
    if report.failed or report.skipped:
        not_done = report.failed + report.skipped
        return Failed(message=f"{not_done} of {len(items)} items not done: {summary}", data=report)
    return report
