"""Image flows: faceswap, extract_faces and multi_faceswap, each reading top to bottom as its DAG."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prefect import flow, task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from faceswap_flows.aifaceswap.client import tls_context
from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import FaceBox, FaceSwapRequest, MultiFaceSwapRequest, validate_model
from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.blocks_config import Services, load_services
from faceswap_flows.flows.budget import check_budget
from faceswap_flows.flows.exceptions import FaceSelectionFailed
from faceswap_flows.flows.flow_docs import shared_sections
from faceswap_flows.flows.media.faces import crop, load_image, most_similar
from faceswap_flows.flows.media.staged import StagedMedia
from faceswap_flows.flows.options import BlockNames, OutputOptions, SwapOptions
from faceswap_flows.flows.provenance.consent import preflight
from faceswap_flows.flows.provenance.records import job_facts
from faceswap_flows.flows.tasks.api import extract_faces as extract_faces_task
from faceswap_flows.flows.tasks.artifacts import artifact_key, faces_artifact
from faceswap_flows.flows.tasks.job import SwapOutcome, plan_swap, submit_and_finish
from faceswap_flows.flows.tasks.media import is_url, upload


class DetectedFaces(BaseModel):
    image: str
    faces: list[FaceBox]
    picture_key: str | None = None


@flow(name="faceswap")
@shared_sections
async def faceswap(
    source_image: str,
    face_image: str,
    options: SwapOptions = SwapOptions(),
    output: OutputOptions = OutputOptions(),
    blocks: BlockNames = BlockNames(),
) -> SwapOutcome:
    """Put the face of `face_image` on the main face of `source_image` (2 credits).

    The result is labelled as synthetic media, carries a C2PA manifest and gets a provenance record.

    Example:
        ```python
        asyncio.run(faceswap("photos/team.jpg", "photos/me.jpg"))
        ```

    Args:
        source_image: The image whose main face is replaced: a local path, a storage key or an http(s) URL.
        face_image: The photo of the face to put in: a local path, a storage key or an http(s) URL.
        {image_groups}

    {swap_returns}

    Raises:
        {refused_before_spending}
        {after_submitting}
    """
    check_budget(estimate_credits("faceswap"), options.max_credits)
    services = await load_services(blocks.credentials, blocks.storage, blocks.receiver)
    source, face = await asyncio.gather(
        upload(services.storage, source_image, "source_image"), upload(services.storage, face_image, "face_image")
    )
    consent = await preflight(services.storage, output, options.require_consent, [("face_image", face)])
    return await submit_and_finish(
        services,
        FaceSwapRequest,
        {"source_image": source.url, "face_image": face.url},
        identity={"source_image": source.key or source.url, "face_image": face.key or face.url},
        wait=options.wait,
        timeout_seconds=options.timeout_for("image"),
        before_url=source.url,
        facts=job_facts({"source_image": source, "face_image": face}, consent),
        on_unknown_outcome=options.on_unknown_outcome,
        output=output,
    )


@flow(name="extract-faces")
async def extract_faces(image: str, blocks: BlockNames = BlockNames()) -> DetectedFaces:
    """Find and number every face of an image (2 credits); the run shows them as an artifact.

    Args:
        image: The image to search: a local path, a storage key or an http(s) URL.
        blocks: The names of the credentials and storage blocks (the receiver is not used).

    Returns:
        The staged image's URL, its faces numbered left to right (boxes) and the key of the numbered picture.

    Raises:
        InputValidationError: The image is unusable (the message says why); nothing was spent.
    """
    services = await load_services(blocks.credentials, blocks.storage, callbacks=False)
    staged = await upload(services.storage, image, "image")
    job = plan_swap(services, "extract_face", {"image": staged.key or staged.url})
    faces = await extract_faces_task(services.credentials, staged.url, staged.name, services.storage, job.job_id)
    picture = await show_faces(services.storage, staged.key or staged.url, faces, staged.name)
    return DetectedFaces(image=staged.url, faces=faces, picture_key=picture)


@task(name="show-faces", task_run_name="number the faces of {name}")
async def show_faces(storage: MediaStorage, image: str, faces: list[FaceBox], name: str) -> str | None:
    """Draw the numbered faces on the image, store the picture and show it as an artifact.

    Args:
        storage: The MediaStorage block the media is read from and written to.
        image: The image (URL, local path or storage key).
        faces: The detected faces, in the API's order.
        name: The image's name, for the artifact.

    Returns:
        The storage key of the numbered picture, or None when it could not be made.
    """
    data = await asyncio.to_thread(_read_media, storage, image)
    key = f"artifacts/{artifact_key(name)}-faces.png"
    return await faces_artifact(storage, load_image(data), faces, key, name)


def _read_media(storage: MediaStorage, source: str) -> bytes:
    """The bytes of an http(s) URL, a local file or a storage key."""
    if is_url(source):
        response = httpx.get(source, timeout=60, follow_redirects=True, verify=tls_context())
        response.raise_for_status()
        return response.content
    local = Path(source).expanduser()
    if local.is_file():
        return local.read_bytes()
    return storage.read_bytes(source)


@task(name="select-faces", task_run_name="select faces of {name}")
async def select_faces(
    storage: MediaStorage,
    source: str,
    faces: list[FaceBox] | None,
    name: str,
    indexes: list[int] | None = None,
    references: dict[str, list[FaceBox]] | None = None,
    charged: int = 0,
) -> list[int]:
    """The indexes of the faces to replace.

    Given indexes are checked against `faces` when they were extracted; with reference photos, each reference's
    largest face is matched to the most similar face of `source`.

    Args:
        storage: The MediaStorage block the media is read from and written to.
        source: The source image (URL, local path or storage key).
        faces: The faces detected in the source, or None when they were not extracted.
        name: The source's name, for logs.
        indexes: The face indexes asked for, if any.
        references: Per reference photo (its URL), its detected faces, if choosing by reference.
        charged: The credits the detection of `faces` and of the references' faces cost.

    Returns:
        One face index per face image, in order.

    Raises:
        InputValidationError: Neither indexes nor references were given (nothing was detected).
        FaceSelectionFailed: What the paid detection found makes the choice impossible: an index out of range, no
            face in the source or in a reference, or two references matching the same face.
    """
    detected = FaceProblem(source, name, len(references or {}), charged)
    if indexes is not None:
        if faces is None:
            return indexes
        wrong = [i for i in indexes if not 0 <= i < len(faces)]
        if wrong:
            raise detected.failed("face_indexes", f"{len(faces)} face(s) in {name}: {wrong} is out of range")
        return indexes
    if not references:
        raise InputValidationError("face_indexes: give the indexes of the faces to replace, or `reference_images`")
    if not faces:
        raise detected.failed("source_image", f"no face in {name}", "use a source image showing the faces to replace")
    picture = load_image(await asyncio.to_thread(_read_media, storage, source))
    crops = [crop(picture, box) for box in faces]
    chosen = []
    for reference, boxes in references.items():
        if not boxes:
            fix = f"use a photo showing that face, or {detected.give_indexes()}"
            raise detected.failed("reference_images", f"no face in {reference}", fix)
        photo = load_image(await asyncio.to_thread(_read_media, storage, reference))
        best, scores = most_similar(crop(photo, max(boxes, key=lambda box: box.area)), crops)
        get_run_logger().info("%s looks most like face %d (similarities %s)", reference, best, scores)
        chosen.append(best)
    if len(set(chosen)) != len(chosen):
        found = f"{len(faces)} face(s) in {name}, and two references most like the same one (faces {chosen})"
        raise detected.failed("reference_images", found)
    return chosen


class FaceProblem:
    """What the face detection of a multi_faceswap by reference cost, to say so when its answer is of no use."""

    def __init__(self, source: str, name: str, references: int, charged: int) -> None:
        self.source, self.name, self.references, self.charged = source, name, references, charged

    def failed(self, field: str, found: str, advice: str | None = None) -> FaceSelectionFailed:
        """The error saying what the detection cost and found; by default, advise giving face_indexes."""
        refs = f" and of {self.references} reference photo(s)" if self.references else ""
        call = f"extract_face of {self.name}{refs}"
        return FaceSelectionFailed(
            field, call=call, credits=self.charged, found=found, advice=advice or self.give_indexes()
        )

    def give_indexes(self) -> str:
        return (
            f"give face_indexes instead (`faceswap-flows run extract-faces --source {self.source}` numbers the "
            f"faces of {self.name}, for 2 credits)"
        )


async def stage_multi(
    storage: MediaStorage, source_image: str, face_images: list[str], reference_images: list[str] | None
) -> tuple[StagedMedia, list[StagedMedia], list[StagedMedia] | None]:
    """The source, the face photos and the reference photos (if any), all staged before anything is paid."""
    references = reference_images or []
    source, *staged = await asyncio.gather(
        upload(storage, source_image, "source_image"),
        *(upload(storage, image, f"face_images[{i}]") for i, image in enumerate(face_images)),
        *(upload(storage, image, f"reference_images[{i}]") for i, image in enumerate(references)),
    )
    faces, refs = staged[: len(face_images)], staged[len(face_images) :]
    return source, faces, refs if reference_images is not None else None


def check_distinct_references(references: list[StagedMedia]) -> None:
    """The same photo twice as a reference would match the same face twice: refused before its faces are found."""
    seen: dict[str, int] = {}
    for i, reference in enumerate(references):
        first = seen.setdefault(reference.sha256 or reference.key or reference.url, i)
        if first != i:
            raise InputValidationError(
                f"reference_images: [{first}] and [{i}] are the same photo ({reference.name}): give a photo of a "
                "different person for each face image"
            )


def validate_multi(source: StagedMedia, faces: list[StagedMedia], indexes: list[int]) -> None:
    """The multi_faceswap request checks that need no face detection (e.g. the URLs), with stand-in indexes."""
    fields = {"source_image": source.url, "face_image": [f.url for f in faces], "index": indexes}
    validate_model(MultiFaceSwapRequest, {**fields, "webhook": "https://checked.invalid/webhook"})


async def faces_by_reference(
    services: Services, source: StagedMedia, references: list[StagedMedia], job_id: str
) -> list[int]:
    """Find the faces of the source and of each reference photo (2 credits each, in the ledger under ``job_id``),
    show the source's numbered, and choose for each reference the face most like it."""
    ledger = (services.storage, job_id)
    detected = await extract_faces_task(services.credentials, source.url, source.name, *ledger)
    await show_faces(services.storage, source.key or source.url, detected, source.name)
    found = await asyncio.gather(
        *(extract_faces_task(services.credentials, r.url, r.name, *ledger) for r in references)
    )
    by_reference = {ref.key or ref.url: boxes for ref, boxes in zip(references, found, strict=True)}
    charged = (1 + len(references)) * estimate_credits("extract_face")
    source_ref = source.key or source.url
    return await select_faces(services.storage, source_ref, detected, source.name, None, by_reference, charged)


@flow(name="multi-faceswap")
@shared_sections
async def multi_faceswap(
    source_image: str,
    face_images: list[str],
    face_indexes: list[int] | None = None,
    reference_images: list[str] | None = None,
    options: SwapOptions = SwapOptions(),
    output: OutputOptions = OutputOptions(),
    blocks: BlockNames = BlockNames(),
) -> SwapOutcome:
    """Replace several faces of one image, by index or by reference photo.

    Costs 5 credits; choosing by reference also costs 2 for finding the faces of the source and 2 per reference
    photo. Indexes are checked by the service, which refuses a wrong one for free. Labelling, provenance and
    watermark: as the faceswap flow.

    Args:
        source_image: The image whose faces are replaced: a local path, a storage key or an http(s) URL.
        face_images: One face photo per face to replace (local paths, storage keys or http(s) URLs).
        face_indexes: The faces to replace, numbered left to right as the extract-faces flow shows them:
            `face_images[i]` goes on face `face_indexes[i]`.
        reference_images: Instead of `face_indexes`: per face image, a photo of the person to replace; the detected
            face most like it is replaced.
        {image_groups}

    {swap_returns}

    Raises:
        {refused_before_spending}
        FaceSelectionFailed: Choosing by reference, the paid face detection found no usable match (the message says
            what it found, what it cost and what to do).
        {after_submitting}
    """
    extracts = 0 if face_indexes is not None else 1 + len(reference_images or [])
    check_budget(extracts * estimate_credits("extract_face") + estimate_credits("multi_faceswap"), options.max_credits)
    wanted = face_indexes if face_indexes is not None else reference_images
    if not face_images or wanted is None or len(wanted) != len(face_images):
        raise InputValidationError(
            "face_images: give one face image per face to replace, and as many `face_indexes` (or "
            f"`reference_images`); got {len(face_images)} face image(s) and {len(wanted or [])} index(es)"
        )
    services = await load_services(blocks.credentials, blocks.storage, blocks.receiver)
    references = reference_images if face_indexes is None else None
    source, faces, staged_references = await stage_multi(services.storage, source_image, face_images, references)
    consent = await preflight(
        services.storage, output, options.require_consent, [(f"face_images[{i}]", f) for i, f in enumerate(faces)]
    )
    identity = {"source_image": source.key or source.url, "face_images": [f.key or f.url for f in faces]}
    if staged_references is None:
        indexes = await select_faces(services.storage, source.key or source.url, None, source.name, face_indexes)
        job = plan_swap(services, "multi_faceswap", {**identity, "index": indexes}, wait=options.wait)
    else:
        check_distinct_references(staged_references)
        validate_multi(source, faces, list(range(len(faces))))  # before the paid detection
        by_reference = {**identity, "reference_images": [r.key or r.url for r in staged_references]}
        job = plan_swap(services, "multi_faceswap", by_reference, wait=options.wait)
        indexes = await faces_by_reference(services, source, staged_references, job.job_id)
    return await submit_and_finish(
        services,
        MultiFaceSwapRequest,
        {"source_image": source.url, "face_image": [face.url for face in faces], "index": indexes},
        identity=identity,
        job=job,
        wait=options.wait,
        timeout_seconds=options.timeout_for("image"),
        before_url=source.url,
        facts=job_facts(
            {"source_image": source, "face_images": faces, "reference_images": staged_references},
            consent,
            index=indexes,
        ),
        on_unknown_outcome=options.on_unknown_outcome,
        output=output,
    )
