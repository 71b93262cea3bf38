"""One planned batch item, any operation: its request built as the single flow builds it (faces chosen by
reference photo or in a video frame first, when asked), noted in the index by its fingerprint before it is sent
(so whoever stores its result makes the work done), submitted exactly once, and its failure remembered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import (
    FaceSwapRequest,
    MultiFaceSwapRequest,
    MultiVideoFaceSwapRequest,
    SubmitRequest,
    VideoFaceSwapRequest,
)
from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.batch.earlier import remember_batch_failure
from faceswap_flows.flows.batch.plan import PlannedItem
from faceswap_flows.flows.batch.report import ItemOutcome
from faceswap_flows.flows.batch.rows import BatchRow
from faceswap_flows.flows.blocks_config import Services
from faceswap_flows.flows.exceptions import JobFailed
from faceswap_flows.flows.image import check_distinct_references, select_faces
from faceswap_flows.flows.media.staged import StagedMedia
from faceswap_flows.flows.media.video import VideoError, grab_frame, image_bytes
from faceswap_flows.flows.options import AT_MOST_ONCE, OnUnknownOutcome
from faceswap_flows.flows.provenance.consent import check_consent
from faceswap_flows.flows.provenance.records import OutputOptions, job_facts
from faceswap_flows.flows.tasks.api import extract_faces, extract_frame_faces
from faceswap_flows.flows.tasks.job import bill_of, plan_swap, submit_and_finish
from faceswap_flows.flows.tasks.media import stage
from faceswap_flows.flows.video import check_in_frame, crop_face_refs
from faceswap_flows.flows.work_index import FINGERPRINT_FACT, IndexEntry, write_ahead
from faceswap_flows.receiver.tokens import JobToken

STAGING_CONCURRENCY = 8


class StagedInputs(BaseModel):
    """The batch's distinct inputs, staged once each; ``errors`` holds why an input could not be."""

    staged: dict[str, StagedMedia] = {}
    errors: dict[str, str] = {}


@task(name="stage-inputs", task_run_name="stage {count} distinct inputs", cache_policy=NO_CACHE)
async def stage_inputs(
    storage: MediaStorage,
    fields: dict[str, tuple[str, str]],
    count: int,
    url_sha256: dict[str, str] | None = None,
) -> StagedInputs:
    """Stage every distinct input of the items to run once (an input many items share is hashed and uploaded
    once), before anything is submitted.

    Args:
        storage: The MediaStorage block inputs are uploaded to.
        fields: Each distinct input -> (the field its errors cite, its kind).
        count: How many inputs, for the task run's name.
        url_sha256: The SHA-256 the plan already read of URL inputs: those are not downloaded again.

    Returns:
        The staged inputs, and why each input that could not be staged was refused.
    """
    slots = asyncio.Semaphore(STAGING_CONCURRENCY)
    found = StagedInputs()
    known = url_sha256 or {}

    async def one(source: str, field_name: str, kind: str) -> None:
        if source in known:  # a URL the plan read: nothing to download or upload
            found.staged[source] = stage(storage, source, field_name, kind, known[source])
            return
        async with slots:
            try:
                found.staged[source] = await asyncio.to_thread(stage, storage, source, field_name, kind)
            except Exception as error:  # the items that use it fail; the others go on
                found.errors[source] = str(error)

    await asyncio.gather(*(one(source, name, kind) for source, (name, kind) in fields.items()))
    get_run_logger().info("%d inputs staged, %d refused", len(found.staged), len(found.errors))
    return found


@dataclass
class Job:
    """A request ready to submit: its model and fields, the facts for its record (what was spent on the way, face
    detection, is in the ledger under the job's id)."""

    model: type[SubmitRequest]
    fields: dict[str, Any]
    facts: dict[str, Any]
    kind: Literal["image", "video"] = "image"
    inputs: dict[str, Any] = field(default_factory=dict)


async def _multi_faceswap(services: Services, row: BatchRow, staged: dict[str, StagedMedia], job_id: str) -> Job:
    source = staged["source_image"]
    faces = [staged[f"face_images[{i}]"] for i in range(len(row.faces))]
    refs = [staged[f"reference_images[{i}]"] for i in range(len(row.reference_images or []))]
    indexes = row.face_indexes
    if indexes is None:
        check_distinct_references(refs)
        ledger = (services.storage, job_id)
        detected = await extract_faces(services.credentials, source.url, source.name, *ledger)
        found = await asyncio.gather(*(extract_faces(services.credentials, r.url, r.name, *ledger) for r in refs))
        extra = (1 + len(refs)) * estimate_credits("extract_face")
        references = {r.key or r.url: boxes for r, boxes in zip(refs, found, strict=True)}
        indexes = await select_faces.fn(
            services.storage, source.key or source.url, detected, source.name, None, references, extra
        )
    return Job(
        MultiFaceSwapRequest,
        {"source_image": source.url, "face_image": [f.url for f in faces], "index": indexes},
        {"index": indexes},
        inputs={"source_image": source, "face_images": faces, "reference_images": refs or None},
    )


async def _multi_video(
    services: Services, row: BatchRow, staged: dict[str, StagedMedia], local: str, job_id: str
) -> Job:
    video = staged["source_video"]
    faces = [staged[f"face_images[{i}]"] for i in range(len(row.faces))]
    indexes = list(row.face_indexes or [])
    try:
        frame_png = image_bytes(await asyncio.to_thread(grab_frame, local, row.frame_time))
    except VideoError as error:
        raise InputValidationError(str(error)) from None
    found = await extract_frame_faces(services.credentials, frame_png, services.storage, job_id)
    check_in_frame(indexes, found, row.frame_time, row.source)
    refs = crop_face_refs.fn(frame_png, found, indexes, len(indexes))
    return Job(
        MultiVideoFaceSwapRequest,
        {
            "source_video": video.url,
            "ref_info": [{"face_ref": r, "face_url": f.url} for r, f in zip(refs, faces, strict=True)],
        },
        {"index": indexes, "frame_time": row.frame_time},
        kind="video",
        inputs={"source_video": video, "face_images": faces},
    )


async def build_job(services: Services, item: PlannedItem, staged: dict[str, StagedMedia], job_id: str) -> Job:
    """The item's request, as its single flow builds it (a paid face detection on the way goes in the ledger under
    ``job_id``)."""
    row = BatchRow.model_validate(item.row)
    if row.operation == "faceswap":
        source, face = staged["source_image"], staged["face_image"]
        return Job(
            FaceSwapRequest,
            {"source_image": source.url, "face_image": face.url},
            {},
            inputs={"source_image": source, "face_image": face},
        )
    if row.operation == "multi_faceswap":
        return await _multi_faceswap(services, row, staged, job_id)
    video_facts = {
        "source": row.source,
        "trim_start": row.trim_start,
        "trim_end": row.trim_end,
        "duration": round(item.seconds or 0.0, 3),
        "enhance": row.enhance,
    }
    if row.operation == "video_faceswap":
        video, face = staged["source_video"], staged["face_image"]
        job = Job(
            VideoFaceSwapRequest,
            {"source_video": video.url, "face_image": face.url},
            {},
            kind="video",
            inputs={"source_video": video, "face_image": face},
        )
    else:
        job = await _multi_video(services, row, staged, item.inputs["source_video"], job_id)
    job.fields.update(duration=video_facts["duration"], enhance=row.enhance)
    job.facts.update(video_facts)
    return job


def face_photos(staged: dict[str, StagedMedia]) -> list[tuple[str, StagedMedia]]:
    """The face photos an item pastes (what consent is about), as ``(field, staged)``: known before any paid call."""
    return [(name, media) for name, media in staged.items() if name == "face_image" or name.startswith("face_images[")]


def item_job(services: Services, item: PlannedItem, wait: bool) -> JobToken:
    """The job of a planned item in this flow run: its id is known before any paid call made for it."""
    kind = "video" if item.operation.endswith("video_faceswap") else "image"
    store_by = None if wait else "sweep"
    identity = {"fingerprint": item.fingerprint}
    operation = item.operation
    return plan_swap(
        services,
        operation,
        identity,
        kind=kind,
        position=item.position,
        wait=wait,
        store_by=store_by,
        result_key=item.result_key,
    )


async def failed_item(services: Services, item: PlannedItem, error: str, *, wait: bool) -> ItemOutcome:
    """The outcome of an item that failed, with what the ledger says its job cost (it may have been charged)."""
    job = item_job(services, item, wait)
    bill = await bill_of(services.storage, job.job_id)
    return ItemOutcome.of(
        item,
        "failed",
        task_id=bill.task_ids[-1] if bill.task_ids else None,
        job_id=job.job_id,
        credits=bill.charged,
        possibly_charged=bill.possibly_charged,
        error=error,
    )


async def note_before_sending(services: Services, item: PlannedItem, job_id: str) -> None:
    """Write the work's index entry (its result key, the id of the job about to be sent, its image inputs) before
    the paid submission."""
    assert item.fingerprint is not None and item.result_key is not None
    row = BatchRow.model_validate(item.row)
    images = ([] if row.source_video else [row.source]) + row.faces
    entry = IndexEntry(
        fingerprint=item.fingerprint, result_key=item.result_key, job_id=job_id, operation=item.operation, images=images
    )
    await asyncio.to_thread(write_ahead, services.storage, entry)


async def swap_planned(
    services: Services,
    item: PlannedItem,
    inputs: StagedInputs,
    *,
    wait: bool,
    timeout_seconds: float,
    output: OutputOptions,
    inline: bool,
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE,
    require_consent: bool = False,
) -> ItemOutcome:
    """Submit one planned item exactly once, then wait and store it under its planned key (or hand it to the
    sweep); ``inline``: as steps of the caller's task run, else as its own submit and collect task runs."""
    refused = [inputs.errors[ref] for ref in item.inputs.values() if ref in inputs.errors]
    if refused:
        raise InputValidationError("; ".join(refused))
    staged = {name: inputs.staged[ref] for name, ref in item.inputs.items()}
    consent = await asyncio.to_thread(check_consent, services.storage, face_photos(staged), require_consent)
    token = item_job(services, item, wait)
    job = await build_job(services, item, staged, token.job_id)
    first = next(iter(staged.values()))
    identity = {"fingerprint": item.fingerprint}
    await note_before_sending(services, item, token.job_id)
    facts = {"batch_item": item.position, "batch_item_id": item.label, FINGERPRINT_FACT: item.fingerprint}
    try:
        outcome = await submit_and_finish(
            services,
            job.model,
            job.fields,
            identity=identity,
            position=item.position,
            wait=wait,
            timeout_seconds=timeout_seconds,
            before_url=first.url,
            kind=job.kind,
            task_run_name=f"submit item {item.position}",
            artifacts=False,
            facts=job_facts(job.inputs, consent, **facts, **job.facts),
            output=output,
            store_by=None if wait else "sweep",
            steps="inline" if inline else "collect-task",
            on_unknown_outcome=on_unknown_outcome,
            job=token,
        )
    except JobFailed as failed:
        await remember_batch_failure(services.storage, item, token.job_id, failed.task_id)
        raise
    return ItemOutcome.of(
        item,
        outcome.status,
        task_id=outcome.task_id,
        credits=outcome.credits,
        possibly_charged=outcome.possibly_charged,
        job_id=outcome.job_id,
        result_key=outcome.result_key,
        result_uri=outcome.result_uri,
        provenance_key=outcome.provenance_key,
    )
