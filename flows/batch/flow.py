"""The batch flow: any mix of the four swap operations, from a manifest, a folder, a storage prefix or a glob, or
the failed items of an earlier report. Planned before anything is spent (``plan=True`` stops there), incremental
(work whose result is already stored is not paid again), with one outcome per item."""

from __future__ import annotations

import asyncio
import functools
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, task
from prefect.artifacts import acreate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency
from prefect.logging import get_run_logger
from prefect.states import Failed, State
from pydantic import Field

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.flows.batch.earlier import collect_earlier, resolve_earlier
from faceswap_flows.flows.batch.groups import Progress, run_in_groups, swap_items
from faceswap_flows.flows.batch.items import StagedInputs, failed_item, stage_inputs, swap_planned
from faceswap_flows.flows.batch.names import DEFAULT_OUTPUT_TEMPLATE, check_template
from faceswap_flows.flows.batch.plan import BatchPlan, PlannedItem, Planner, read_rows, settle
from faceswap_flows.flows.batch.progress import BatchProgress
from faceswap_flows.flows.batch.report import (
    BatchReport,
    ItemOutcome,
    failed_rows,
    plan_in_words,
    show_plan,
    write_report,
)
from faceswap_flows.flows.batch.rows import ManifestLine, parse_row, read_manifest
from faceswap_flows.flows.batch.sources import source_rows
from faceswap_flows.flows.blocks_config import Services, load_services
from faceswap_flows.flows.exceptions import report_message
from faceswap_flows.flows.options import BlockNames, OutputOptions, SwapOptions, VideoOptions
from faceswap_flows.flows.provenance.consent import preflight
from faceswap_flows.flows.tasks.job import worth_another_attempt

ITEMS_PER_TASK = 25
__all__ = ["BatchPlan", "BatchReport", "ItemOutcome", "batch_faceswap", "swap_items"]


def batch_lines(
    services: Services,
    manifest: str | None,
    source: str | None,
    retry_failed: str | None,
    sources: dict[str, object],
) -> tuple[list[ManifestLine], list[str], str]:
    """The batch's rows (with their manifest lines), the files left out as neither image nor video, and a name."""
    given = [
        name for name, value in (("manifest", manifest), ("source", source), ("retry_failed", retry_failed)) if value
    ]
    if len(given) != 1:
        raise InputValidationError(
            f"manifest: give one of `manifest`, `source` (a folder, prefix or glob) or `retry_failed` (a report); "
            f"got {' and '.join(f'`{name}`' for name in given) or 'none'}"
        )
    if manifest:
        return read_manifest(services.storage, manifest), [], Path(manifest).stem
    if source:
        lines, ignored = source_rows(services.storage, source, **sources)  # type: ignore[arg-type]
        return lines, ignored, Path(source.rstrip("/*")).name or "source"
    assert retry_failed is not None
    lines = [parse_row(row, line) for line, row in failed_rows(services.storage, retry_failed)]
    if not lines:
        raise InputValidationError(f"retry_failed: {retry_failed} has no failed or skipped items: nothing to retry")
    return lines, [], f"retry-{Path(retry_failed).stem}"


@task(name="plan-batch", task_run_name="plan {count} items", cache_policy=NO_CACHE)
async def plan_batch(
    planner: Planner,
    lines: list[ManifestLine],
    count: int,
    max_credits: int | None,
    services: Services,
    retrying: bool = False,
) -> BatchPlan:
    """Read every input (SHA-256, kind, video seconds), validate every row, find what is already done (or was
    sent before: its callback came, it failed, or its outcome is unknown), price the rest, and mark what goes over
    ``max_credits``: no paid API call.

    Args:
        planner: Reads inputs from the storage block and names results after the output template.
        lines: The manifest's lines (or the rows made from a source), each with its line number.
        count: How many lines, for the task run's name.
        max_credits: The budget; items beyond it are marked skipped (None: no budget).
        services: The storage holding the index, and the receiver whose inbox holds earlier jobs' callbacks.
        retrying: The rows come from ``retry_failed``: work that failed before is sent again.

    Returns:
        The plan: every item with its status (run, done, collect, unknown, failed_before, refused, skipped),
        credits and result key.

    Raises:
        InputValidationError: Every line was refused (nothing to run), naming the first lines and why.
    """
    items = await asyncio.to_thread(read_rows, planner, lines)
    await resolve_earlier(services, items, retrying)
    items = settle(items, planner.force, max_credits)
    if lines and all(item.status == "refused" for item in items) and all(line.row is None for line in lines):
        raise InputValidationError("; ".join(item.reason or "" for item in items[:5]))
    return BatchPlan(items=items)


def not_run(item: PlannedItem) -> ItemOutcome:
    """The outcome of an item the plan did not run: already done, refused (reported as failed), skipped, failed
    before or of unknown outcome (reported as failed, saying why it was not sent again)."""
    status = {"done": "done", "skipped": "skipped"}.get(item.status, "failed")
    error = (
        None
        if item.status == "done"
        else (f"refused before submission: {item.reason}" if item.status == "refused" else item.reason)
    )
    return ItemOutcome.of(
        item,
        status,  # type: ignore[arg-type]
        job_id=item.job_id,
        task_id=item.task_id,
        result_key=item.result_key if item.status == "done" else None,
        error=error,
    )


async def run_plan(
    services: Services,
    plan: BatchPlan,
    *,
    max_concurrency: int,
    concurrency_limit: str | None,
    items_per_task: int,
    swap: dict[str, Any],
) -> list[ItemOutcome]:
    """Stage the inputs of the items to run, then run them: ``items_per_task`` to a task run (or a submit and a
    collect task run each when 1), ``max_concurrency`` at a time."""
    logger = get_run_logger()
    to_run = [item for item in plan.items if item.status == "run"]
    fields = {}
    for item in to_run:
        for name, ref in item.inputs.items():
            fields.setdefault(ref, (f"item {item.position} {name}", "video" if name == "source_video" else "image"))
    read = {ref: sha for item in to_run for name, ref in item.inputs.items() if (sha := item.url_sha256.get(name))}
    inputs = await stage_inputs(services.storage, fields, len(fields), read) if to_run else StagedInputs()
    slots = asyncio.Semaphore(max_concurrency)
    by_position = {item.position: item for item in to_run}
    progress = Progress(
        await acreate_progress_artifact(progress=0.0, description=f"batch of {len(to_run)} items to run"), len(to_run)
    )
    reporter = BatchProgress.start(plan)  # to the command line's progress bar, when it listens

    async def run(position: int, last_attempt: bool = True) -> ItemOutcome:
        item = by_position[position]
        async with slots, AsyncExitStack() as stack:
            if concurrency_limit:
                await stack.enter_async_context(concurrency(concurrency_limit, occupy=1))
            try:
                outcome = await swap_planned(services, item, inputs, inline=items_per_task > 1, **swap)
            except Exception as error:
                if not last_attempt and worth_another_attempt(error):
                    raise
                logger.warning("item %d failed: %s", position, error)
                outcome = await failed_item(services, item, report_message(error), wait=swap["wait"])
        await progress.advance(position)
        reporter.finished(outcome)
        return outcome

    if items_per_task == 1:
        ran = list(await asyncio.gather(*(run(item.position) for item in to_run)))
    else:
        failed = functools.partial(failed_item, services, wait=swap["wait"])
        ran = await run_in_groups(run, to_run, items_per_task, failed) if to_run else []
    reporter.settle(ran)
    outcomes = {o.position: o for o in ran}
    return [outcomes.get(item.position) or not_run(item) for item in plan.items]


@flow(name="batch-faceswap")
async def batch_faceswap(
    manifest: str | None = None,
    source: str | None = None,
    face_image: str | None = None,
    face_map: dict[str, str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    video_options: VideoOptions = VideoOptions(),
    retry_failed: str | None = None,
    plan: bool = False,
    force: bool = False,
    output_template: str = DEFAULT_OUTPUT_TEMPLATE,
    max_concurrency: int = 4,
    items_per_task: Annotated[int, Field(ge=1)] = ITEMS_PER_TASK,
    concurrency_limit: str | None = None,
    options: SwapOptions = SwapOptions(),
    output: OutputOptions = OutputOptions(),
    blocks: BlockNames = BlockNames(),
) -> BatchReport | BatchPlan | State[BatchReport]:
    """Run a batch of swaps of any operation (see docs/flows/batch-faceswap.md). Rows come from a CSV/JSONL
    ``manifest`` (an ``operation`` column: faceswap, multi_faceswap, video_faceswap, multi_video_faceswap), or
    from every image and video under ``source`` (folder, storage prefix or glob, filtered by ``include`` and
    ``exclude``) with ``face_image`` (or ``face_map``: face index or reference photo -> new face), or from the
    failed and skipped items of the report at ``retry_failed``.

    First a plan, without calling the API: each row validated as its single flow validates it (a bad row refused
    with its line number), each input read (SHA-256, video seconds), work whose result is already stored counted
    as done (``force`` redoes it), credits summed and checked against ``max_credits`` (items beyond are skipped).
    ``plan=True`` returns the plan (a table artifact and a CSV). Otherwise the items to run are stored under
    ``output_template``, ``items_per_task`` to a ``swap-items`` task run, each submitted exactly once; the
    report is written as JSON, CSV and table artifact. The run ends Failed, after its report, when any item
    failed, was refused or skipped.

    Args:
        manifest: A CSV (with a header) or JSONL manifest, a local path or a key in the storage block.
        source: Instead of a manifest: a local folder, a storage prefix or a glob (``s3://bucket/prefix/*.jpg``).
        face_image: With ``source``: the face put onto every image and video found.
        face_map: With ``source``, instead of ``face_image``: face index or reference photo -> new face.
        include: With ``source``: only file names matching one of these glob patterns.
        exclude: With ``source``: leave out file names matching one of these glob patterns.
        video_options: With ``source``: face enhancement and cut of every video found.
        retry_failed: Instead of a manifest: the report (storage key or path) whose failed and skipped items to run.
        plan: Only plan: list what would run, what is done or refused, and the credits; call no API.
        force: Redo work whose result is already stored (stored under a new key; nothing is overwritten).
        output_template: Where results go, e.g. ``results/{date}/{source_stem}__{face_stem}.{ext}``.
        max_concurrency: Items in flight at once.
        items_per_task: Items per ``swap-items`` task run; 1 gives each item its own submit and collect runs.
        concurrency_limit: A Prefect global concurrency limit every item also takes a slot of.
        options: How every item runs: wait for the results (else the store-results sweep stores them), callback
            timeout (default 3600 s), the budget (items beyond ``max_credits`` are skipped, never submitted), the
            unknown-outcome policy, consent (others fail, unpaid).
        output: What is done to every result: synthetic-media label, signed C2PA manifest, watermark (images).
        blocks: The names of the credentials, storage and receiver blocks.

    Returns:
        The batch report (the plan with ``plan=True``); a Failed state holding the report when any item was not
        done.

    Raises:
        InputValidationError: The manifest, source or template is unusable, before anything is spent.
    """
    check_template(output_template)
    services = await load_services(blocks.credentials, blocks.storage, blocks.receiver)
    sources = {"face_image": face_image, "face_map": face_map, "include": include, "exclude": exclude}
    sources.update(enhance=int(video_options.enhance), trim_start=video_options.trim_start)
    sources.update(trim_end=video_options.trim_end)
    lines, ignored, name = await asyncio.to_thread(batch_lines, services, manifest, source, retry_failed, sources)
    if not plan:
        await preflight(services.storage, output, False, [])  # the signing key loads, before any credit
    with tempfile.TemporaryDirectory(prefix="faceswap-batch-") as workdir:
        planner = Planner(services.storage, Path(workdir), output_template, output, force)
        the_plan = await plan_batch(planner, lines, len(lines), options.max_credits, services, bool(retry_failed))
        await show(services, the_plan, ignored, name)
        if plan:
            return the_plan
        swap = {"wait": options.wait, "timeout_seconds": options.timeout_for("video"), "output": output}
        swap.update(on_unknown_outcome=options.on_unknown_outcome, require_consent=options.require_consent)
        limits = {"max_concurrency": max_concurrency, "concurrency_limit": concurrency_limit}
        collected = await collect_earlier(services, the_plan.items)
        outcomes = await run_plan(services, the_plan, items_per_task=items_per_task, swap=swap, **limits)
        outcomes = [collected.get(outcome.position, outcome) for outcome in outcomes]
    return await finish(services, the_plan, outcomes, name)


async def show(services: Services, plan: BatchPlan, ignored: list[str], name: str) -> None:
    """The plan as a table artifact and a CSV, and in the log."""
    plan.ignored = ignored
    await show_plan(services.storage, plan, name)
    get_run_logger().info("plan: %s", plan_in_words(plan))


async def finish(
    services: Services, plan: BatchPlan, outcomes: list[ItemOutcome], name: str
) -> BatchReport | State[BatchReport]:
    """Write the report; the run ends Failed (with the report as its result) when any item was not done."""
    report = BatchReport.of(outcomes, plan.credits)
    report.refused = plan.count("refused")
    await write_report(services.storage, report, name)
    get_run_logger().info(report.summary)
    if report.failed or report.skipped:
        not_done = report.failed + report.skipped
        return Failed(message=f"{not_done} of {len(outcomes)} items not done: {report.summary}", data=report)
    return report
