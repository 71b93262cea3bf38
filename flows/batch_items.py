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
from faceswap_flows.flows.batch_earlier import remember_batch_failure
from faceswap_flows.flows.batch_names import FINGERPRINT_FACT, IndexEntry, write_ahead
from faceswap_flows.flows.batch_plan import PlannedItem
from faceswap_flows.flows.batch_report import ItemOutcome
from faceswap_flows.flows.batch_rows import BatchRow
from faceswap_flows.flows.blocks_config import Services
from faceswap_flows.flows.exceptions import JobFailed
from faceswap_flows.flows.image import select_faces
from faceswap_flows.flows.media.video import VideoError, grab_frame, image_bytes
from faceswap_flows.flows.provenance.consent import check_consent
from faceswap_flows.flows.provenance.records import OutputOptions, job_facts
from faceswap_flows.flows.tasks.api import extract_faces, extract_frame_faces, plan_job
from faceswap_flows.flows.tasks.job import submit_and_finish
from faceswap_flows.flows.tasks.media import StagedMedia, stage
from faceswap_flows.flows.tasks.paid_calls import AT_MOST_ONCE, OnUnknownOutcome
from faceswap_flows.flows.video import crop_face_refs

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
    """A request ready to submit: its model and fields, the facts for its record, and credits spent on the way."""

    model: type[SubmitRequest]
    fields: dict[str, Any]
    facts: dict[str, Any]
    kind: Literal["image", "video"] = "image"
    extra_credits: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)


async def _multi_faceswap(services: Services, row: BatchRow, staged: dict[str, StagedMedia]) -> Job:
    source = staged["source_image"]
    faces = [staged[f"face_images[{i}]"] for i in range(len(row.faces))]
    refs = [staged[f"reference_images[{i}]"] for i in range(len(row.reference_images or []))]
    extra, indexes = 0, row.face_indexes
    if indexes is None:
        detected = await extract_faces(services.credentials, source.url, source.name)
        found = await asyncio.gather(*(extract_faces(services.credentials, r.url, r.name) for r in refs))
        extra = (1 + len(refs)) * estimate_credits("extract_face")
        references = {r.key or r.url: boxes for r, boxes in zip(refs, found, strict=True)}
        indexes = await select_faces.fn(
            services.storage, source.key or source.url, detected, source.name, None, references
        )
    return Job(
        MultiFaceSwapRequest,
        {"source_image": source.url, "face_image": [f.url for f in faces], "index": indexes},
        {"index": indexes},
        extra_credits=extra,
        inputs={"source_image": source, "face_images": faces, "reference_images": refs or None},
    )


async def _multi_video(services: Services, row: BatchRow, staged: dict[str, StagedMedia], local: str) -> Job:
    video = staged["source_video"]
    faces = [staged[f"face_images[{i}]"] for i in range(len(row.faces))]
    indexes = list(row.face_indexes or [])
    try:
        frame_png = image_bytes(await asyncio.to_thread(grab_frame, local, row.frame_time))
    except VideoError as error:
        raise InputValidationError(str(error)) from None
    found = await extract_frame_faces(services.credentials, frame_png)
    wrong = [i for i in indexes if not 0 <= i < len(found)]
    if wrong:
        raise InputValidationError(
            f"face_indexes: {wrong} out of range: the frame at {row.frame_time} s has {len(found)} face(s), "
            f"numbered 0 to {len(found) - 1} from left to right: choose among them or another frame_time"
        )
    refs = crop_face_refs.fn(frame_png, found, indexes, len(indexes))
    return Job(
        MultiVideoFaceSwapRequest,
        {
            "source_video": video.url,
            "ref_info": [{"face_ref": r, "face_url": f.url} for r, f in zip(refs, faces, strict=True)],
        },
        {"index": indexes, "frame_time": row.frame_time},
        kind="video",
        extra_credits=estimate_credits("extract_base64_face"),
        inputs={"source_video": video, "face_images": faces},
    )


async def build_job(services: Services, item: PlannedItem, staged: dict[str, StagedMedia]) -> Job:
    """The item's request, as its single flow builds it."""
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
        return await _multi_faceswap(services, row, staged)
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
        job = await _multi_video(services, row, staged, item.inputs["source_video"])
    job.fields.update(duration=video_facts["duration"], enhance=row.enhance)
    job.facts.update(video_facts)
    return job


def face_photos(inputs: dict[str, Any]) -> list[tuple[str, StagedMedia]]:
    """The face photos a job pastes (what consent is about), as ``(field, staged)``."""
    faces: list[tuple[str, StagedMedia]] = []
    for name in ("face_image", "face_images"):
        found = inputs.get(name)
        if isinstance(found, StagedMedia):
            faces.append((name, found))
        elif found:
            faces += [(f"{name}[{i}]", media) for i, media in enumerate(found)]
    return faces


async def note_before_sending(services: Services, item: PlannedItem, job: Job, identity: dict[str, Any]) -> str:
    """Write the work's index entry (its result key, the id of the job about to be sent, its image inputs) before
    the paid submission; returns the job id (the one ``submit_and_finish`` gives the job: same operation,
    identity, flow run and position)."""
    assert item.fingerprint is not None and item.result_key is not None
    job_id = plan_job(job.model.operation, identity, storage_block="", result_suffix="", position=item.position).job_id
    row = BatchRow.model_validate(item.row)
    images = ([] if row.source_video else [row.source]) + row.faces
    entry = IndexEntry(
        fingerprint=item.fingerprint, result_key=item.result_key, job_id=job_id, operation=item.operation, images=images
    )
    await asyncio.to_thread(write_ahead, services.storage, entry)
    return job_id


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
    job = await build_job(services, item, staged)
    consent = await asyncio.to_thread(check_consent, services.storage, face_photos(job.inputs), require_consent)
    first = next(iter(staged.values()))
    identity = {"fingerprint": item.fingerprint}
    job_id = await note_before_sending(services, item, job, identity)
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
            result_key=item.result_key,
        )
    except JobFailed as failed:
        await remember_batch_failure(services.storage, item, job_id, failed.task_id)
        raise
    return ItemOutcome(
        position=item.position,
        id=item.label,
        line=item.line,
        operation=item.operation,
        status=outcome.status,
        task_id=outcome.task_id,
        credits=outcome.credits + job.extra_credits,
        result_key=outcome.result_key,
        result_uri=outcome.result_uri,
        provenance_key=outcome.provenance_key,
        row=item.row,
    )
