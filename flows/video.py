"""Video flows: video_faceswap and multi_video_faceswap. The duration is read from the file, never typed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile

from PIL import Image
from prefect import flow, task

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import FaceBox, MultiVideoFaceSwapRequest, VideoFaceSwapRequest, validate_model
from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.flows.blocks_config import load_services
from faceswap_flows.flows.budget import check_budget
from faceswap_flows.flows.exceptions import FaceSelectionFailed
from faceswap_flows.flows.flow_docs import shared_sections
from faceswap_flows.flows.media.faces import crop
from faceswap_flows.flows.media.staged import StagedMedia
from faceswap_flows.flows.media.video import chosen_faces, grab_frame, image_bytes
from faceswap_flows.flows.options import NO_VIDEO_WATERMARK, BlockNames, SwapOptions, VideoOptions, VideoOutputOptions
from faceswap_flows.flows.provenance.consent import preflight
from faceswap_flows.flows.provenance.records import job_facts
from faceswap_flows.flows.tasks.api import extract_frame_faces
from faceswap_flows.flows.tasks.job import SwapOutcome, plan_swap, submit_and_finish
from faceswap_flows.flows.tasks.media import prepare_video, upload


def check_no_watermark(output: VideoOutputOptions) -> None:
    """Videos get no visible watermark (drawing one means re-encoding every frame): refuse one given in Python as
    the images' OutputOptions, before any cost."""
    asked = getattr(output, "watermark", None)
    if asked:
        raise InputValidationError(
            f"output.watermark: {NO_VIDEO_WATERMARK} (asked for {asked!r}); leave it empty: "
            "the result is still labelled as synthetic media and carries its signed C2PA manifest"
        )


@flow(name="video-faceswap")
@shared_sections
async def video_faceswap(
    source_video: str,
    face_image: str,
    video_options: VideoOptions = VideoOptions(),
    options: SwapOptions = SwapOptions(),
    output: VideoOutputOptions = VideoOutputOptions(),
    blocks: BlockNames = BlockNames(),
) -> SwapOutcome:
    """Swap one face through a video (optionally cut to [trim_start, trim_end) s first), charged per second.

    The result is labelled as synthetic media in its MP4 tags and XMP and gets a provenance record. There is no
    visible watermark for videos: drawing one means re-encoding every frame.

    Args:
        source_video: The video whose face is replaced: a local MP4 path, a storage key or an http(s) URL.
        face_image: The photo of the face to put in: a local path, a storage key or an http(s) URL.
        {video_groups}

    {swap_returns}

    Raises:
        VideoError: The video cannot be read or trimmed as asked (the message names the field).
        {refused_before_spending}
        {after_submitting}
    """
    enhance, trim_start, trim_end = int(video_options.enhance), video_options.trim_start, video_options.trim_end
    check_no_watermark(output)
    services = await load_services(blocks.credentials, blocks.storage, blocks.receiver)
    with tempfile.TemporaryDirectory(prefix="faceswap-video-") as workdir:
        local, facts = await prepare_video(services.storage, source_video, workdir, trim_start, trim_end)
        check_budget(estimate_credits("video_faceswap", duration=facts.duration, enhance=enhance), options.max_credits)
        video, face = await asyncio.gather(
            upload(services.storage, str(local), "source_video", "video"),
            upload(services.storage, face_image, "face_image"),
        )
    consent = await preflight(services.storage, output.for_storing(), options.require_consent, [("face_image", face)])
    return await submit_and_finish(
        services,
        VideoFaceSwapRequest,
        {"source_video": video.url, "face_image": face.url, "duration": round(facts.duration, 3), "enhance": enhance},
        identity={"source_video": video.key or video.url, "face_image": face.key or face.url, "enhance": enhance},
        wait=options.wait,
        timeout_seconds=options.timeout_for("video"),
        before_url=video.url,
        kind="video",
        facts=job_facts(
            {"source_video": video, "face_image": face},
            consent,
            source=source_video,
            trim_start=trim_start,
            trim_end=trim_end,
            duration=round(facts.duration, 3),
            enhance=enhance,
        ),
        on_unknown_outcome=options.on_unknown_outcome,
        output=output.for_storing(),
    )


def check_in_frame(indexes: list[int], found: list[FaceBox], frame_time: float, video: str) -> None:
    """Every chosen index names a face found in the frame; else FaceSelectionFailed, saying the detection's cost."""
    wrong = [i for i in indexes if not 0 <= i < len(found)]
    if not wrong:
        return
    call = f"extract_base64_face of the frame at {frame_time} s of {video}"
    if not found:
        found_there, advice = "no face there", "choose a frame_time where the people to replace face the camera"
    else:
        numbered = f"numbered 0 to {len(found) - 1} from left to right"
        found_there = f"{len(found)} face(s), {numbered}: face_indexes {wrong} out of range"
        advice = "choose face_indexes among them, or another frame_time where everyone to replace is visible"
    credits = estimate_credits("extract_base64_face")
    raise FaceSelectionFailed("face_indexes", call=call, credits=credits, found=found_there, advice=advice)


def check_multi_video_request(video: StagedMedia, faces: list[StagedMedia], duration: float, enhance: int) -> None:
    """The multi_video_faceswap request checks that need no face detection (URLs, duration, number of faces), with
    a stand-in crop, before the paid detection of the frame's faces."""
    stand_in = base64.b64encode(image_bytes(Image.new("RGB", (8, 8)))).decode()
    refs = [{"face_ref": stand_in, "face_url": face.url} for face in faces]
    fields = {"source_video": video.url, "ref_info": refs, "duration": round(duration, 3), "enhance": enhance}
    validate_model(MultiVideoFaceSwapRequest, {**fields, "webhook": "https://checked.invalid/webhook"})


@task(name="crop-face-refs", task_run_name="crop {count} face refs from the frame")
def crop_face_refs(frame_png: bytes, faces: list[FaceBox], indexes: list[int], count: int) -> list[str]:
    """Base64 crops of the chosen faces of the frame: the `face_ref` values of multi_video_faceswap.

    Args:
        frame_png: The frame, PNG-encoded.
        faces: The faces detected in the frame.
        indexes: The faces to crop, by index.
        count: How many crops (for the task run's name).

    Returns:
        One base64 PNG crop per index.
    """
    from faceswap_flows.flows.media.faces import load_image

    frame = load_image(frame_png)
    return [base64.b64encode(image_bytes(crop(frame, faces[i], margin=0.1))).decode() for i in indexes]


@flow(name="multi-video-faceswap")
@shared_sections
async def multi_video_faceswap(
    source_video: str,
    face_images: list[str],
    face_indexes: list[int] | None = None,
    frame_time: float = 0.0,
    video_options: VideoOptions = VideoOptions(),
    options: SwapOptions = SwapOptions(),
    output: VideoOutputOptions = VideoOutputOptions(),
    blocks: BlockNames = BlockNames(),
) -> SwapOutcome:
    """Replace up to three people through a video.

    The faces found in the frame at `frame_time` are numbered left to right, and `face_images[i]` replaces face
    `face_indexes[i]`. Labelling and provenance: as video_faceswap (no visible watermark on videos).

    Args:
        source_video: The video whose face is replaced: a local MP4 path, a storage key or an http(s) URL.
        face_images: One face photo per person to replace, at most three (paths, storage keys or URLs).
        face_indexes: The faces of the frame to replace, numbered left to right; None: 0, 1, ...
        frame_time: The second of the (trimmed) video whose frame the faces are found and numbered in.
        {video_groups}

    {swap_returns}

    Raises:
        VideoError: The video cannot be read or trimmed as asked (the message names the field).
        {refused_before_spending}
        FaceSelectionFailed: The paid detection found no face in the frame, or fewer than an index needs (the
            message says what it found, what it cost and what to do).
        {after_submitting}
    """
    enhance, trim_start, trim_end = int(video_options.enhance), video_options.trim_start, video_options.trim_end
    check_no_watermark(output)
    stored_as = output.for_storing()
    indexes = chosen_faces(face_images, face_indexes)
    services = await load_services(blocks.credentials, blocks.storage, blocks.receiver)
    with tempfile.TemporaryDirectory(prefix="faceswap-video-") as workdir:
        local, facts = await prepare_video(services.storage, source_video, workdir, trim_start, trim_end)
        price = estimate_credits(
            "multi_video_faceswap", duration=facts.duration, enhance=enhance, face_count=len(indexes)
        )
        check_budget(estimate_credits("extract_base64_face") + price, options.max_credits)
        try:
            frame_png = image_bytes(await asyncio.to_thread(grab_frame, local, frame_time))
        except ValueError as error:
            raise InputValidationError(str(error)) from None
        video, *faces = await asyncio.gather(
            upload(services.storage, str(local), "source_video", "video"),
            *(upload(services.storage, image, f"face_images[{i}]") for i, image in enumerate(face_images)),
        )
    face_photos = [(f"face_images[{i}]", f) for i, f in enumerate(faces)]
    consent = await preflight(services.storage, stored_as, options.require_consent, face_photos)
    check_multi_video_request(video, faces, facts.duration, enhance)
    identity = {"source_video": video.key or video.url, "faces": [f.key or f.url for f in faces]}
    identity.update(index=indexes, frame_time=frame_time, enhance=enhance)
    job = plan_swap(services, "multi_video_faceswap", identity, kind="video", wait=options.wait)
    found = await extract_frame_faces(services.credentials, frame_png, services.storage, job.job_id)
    check_in_frame(indexes, found, frame_time, source_video)
    refs = crop_face_refs(frame_png, found, indexes, len(indexes))
    return await submit_and_finish(
        services,
        MultiVideoFaceSwapRequest,
        {
            "source_video": video.url,
            "ref_info": [{"face_ref": ref, "face_url": face.url} for ref, face in zip(refs, faces, strict=True)],
            "duration": round(facts.duration, 3),
            "enhance": enhance,
        },
        identity=identity,
        job=job,
        wait=options.wait,
        timeout_seconds=options.timeout_for("video"),
        before_url=video.url,
        kind="video",
        facts=job_facts(
            {"source_video": video, "face_images": faces},
            consent,
            source=source_video,
            trim_start=trim_start,
            trim_end=trim_end,
            duration=round(facts.duration, 3),
            enhance=enhance,
            index=indexes,
            frame_time=frame_time,
            face_ref_sha256=[hashlib.sha256(base64.b64decode(ref)).hexdigest() for ref in refs],
        ),
        on_unknown_outcome=options.on_unknown_outcome,
        output=stored_as,
    )
