"""Video flows: video_faceswap and multi_video_faceswap. The duration is read from the file, never typed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile

from prefect import flow, task

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import MAX_VIDEO_REFS, FaceBox, MultiVideoFaceSwapRequest, VideoFaceSwapRequest
from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.flows.blocks_config import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_STORAGE, load_services
from faceswap_flows.flows.budget import check_budget
from faceswap_flows.flows.media.faces import crop
from faceswap_flows.flows.media.video import grab_frame, image_bytes
from faceswap_flows.flows.provenance.consent import preflight
from faceswap_flows.flows.provenance.content_credentials import DEFAULT_SIGNING
from faceswap_flows.flows.provenance.records import OutputOptions, job_facts
from faceswap_flows.flows.tasks.api import extract_frame_faces
from faceswap_flows.flows.tasks.job import SwapOutcome, submit_and_finish
from faceswap_flows.flows.tasks.media import prepare_video, upload
from faceswap_flows.flows.tasks.paid_calls import AT_MOST_ONCE, OnUnknownOutcome


def _enhance(enhance: int) -> int:
    if enhance not in (0, 1, 2):
        raise InputValidationError(f"enhance: must be 0 (none), 1 (up to 1080p) or 2 (up to 2k), got {enhance}")
    return enhance


@flow(name="video-faceswap")
async def video_faceswap(
    source_video: str,
    face_image: str,
    enhance: int = 0,
    trim_start: float | None = None,
    trim_end: float | None = None,
    wait: bool = True,
    timeout_seconds: float = 3600,
    max_credits: int | None = None,
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE,
    label_outputs: bool = True,
    sign_outputs: bool = True,
    signing_block: str = DEFAULT_SIGNING,
    require_consent: bool = False,
    credentials_block: str = DEFAULT_CREDENTIALS,
    storage_block: str = DEFAULT_STORAGE,
    receiver_block: str = DEFAULT_RECEIVER,
) -> SwapOutcome:
    """Swap one face through a video (optionally cut to [trim_start, trim_end) s first), charged per second.

    The result is labelled as synthetic media in its MP4 tags and XMP and gets a provenance record. There is no
    visible watermark for videos: drawing one means re-encoding every frame.

    Args:
        source_video: The video whose face is replaced: a local MP4 path, a storage key or an http(s) URL.
        face_image: The photo of the face to put in: a local path, a storage key or an http(s) URL.
        enhance: Resolution boost, priced per second: 0 none, 1 up to 1080p, 2 up to 2k.
        trim_start: Cut the video to start at this second before submitting. None: from the start.
        trim_end: Cut the video to end at this second before submitting. None: to the end.
        wait: Wait for the job's callback and store the result in this run. False ends the run once the job is
            submitted; the store-result deployment stores the result when its callback arrives.
        timeout_seconds: How long to wait for the callback before failing with CallbackTimeout (the job may still
            finish: collect it later with `faceswap-flows collect TASK_ID`).
        max_credits: Refuse, before anything is spent, when the estimated credits exceed this. None: no limit.
        on_unknown_outcome: When the submission's answer proves nothing (a 5xx, a lost answer) and no callback comes
            within the receiver's grace: `at-most-once` fails with SubmissionOutcomeUnknown naming the job to collect
            later; `resubmit` sends it again (it may be charged twice).
        label_outputs: Label the result as synthetic media (embedded metadata) and write its provenance record. False
            stores it unlabelled (logged).
        sign_outputs: Embed a C2PA manifest (Content Credentials) signed with the `signing_block` key. False:
            unsigned.
        signing_block: Name of the ContentSigningKey block that signs the results.
        require_consent: Refuse face photos missing from the consent register (`faceswap-flows consent add`), before
            any credit is spent.
        credentials_block: Name of the AIFaceSwapCredentials block (API key, base URL).
        storage_block: Name of the MediaStorage block that stages the inputs and stores the results.
        receiver_block: Name of the WebhookReceiver block whose URL the service calls back.

    Returns:
        The job's outcome (task_id, job_id, credits): `stored`, with the result's key, URL and provenance record, or
        `submitted` when `wait` is False.

    Raises:
        VideoError: The video cannot be read or trimmed as asked (the message names the field).
        InputValidationError: An input or parameter is unusable (the message names the field); nothing was spent.
        BudgetExceeded: The estimate is over `max_credits`; nothing was submitted.
        ConsentRefused: `require_consent` is on and a face photo is not registered.
        SubmissionOutcomeUnknown: The submission's outcome stayed unknown (see `on_unknown_outcome`).
        CallbackTimeout: No callback within `timeout_seconds` (with `wait`).
        JobFailed: The service reported that the job failed.
    """
    enhance = _enhance(enhance)
    services = await load_services(credentials_block, storage_block, receiver_block)
    with tempfile.TemporaryDirectory(prefix="faceswap-video-") as workdir:
        local, facts = await prepare_video(services.storage, source_video, workdir, trim_start, trim_end)
        check_budget(estimate_credits("video_faceswap", duration=facts.duration, enhance=enhance), max_credits)
        video, face = await asyncio.gather(
            upload(services.storage, str(local), "source_video", "video"),
            upload(services.storage, face_image, "face_image"),
        )
    output = OutputOptions(label=label_outputs, sign=sign_outputs, signing_block=signing_block)
    consent = await preflight(services.storage, output, require_consent, [("face_image", face)])
    return await submit_and_finish(
        services,
        VideoFaceSwapRequest,
        {"source_video": video.url, "face_image": face.url, "duration": round(facts.duration, 3), "enhance": enhance},
        identity={"source_video": video.key or video.url, "face_image": face.key or face.url, "enhance": enhance},
        wait=wait,
        timeout_seconds=timeout_seconds,
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
        on_unknown_outcome=on_unknown_outcome,
        output=output,
    )


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
async def multi_video_faceswap(
    source_video: str,
    face_images: list[str],
    face_indexes: list[int] | None = None,
    frame_time: float = 0.0,
    enhance: int = 0,
    trim_start: float | None = None,
    trim_end: float | None = None,
    wait: bool = True,
    timeout_seconds: float = 3600,
    max_credits: int | None = None,
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE,
    label_outputs: bool = True,
    sign_outputs: bool = True,
    signing_block: str = DEFAULT_SIGNING,
    require_consent: bool = False,
    credentials_block: str = DEFAULT_CREDENTIALS,
    storage_block: str = DEFAULT_STORAGE,
    receiver_block: str = DEFAULT_RECEIVER,
) -> SwapOutcome:
    """Replace up to three people through a video.

    The faces found in the frame at `frame_time` are numbered left to right, and `face_images[i]` replaces face
    `face_indexes[i]`. Labelling and provenance: as video_faceswap (no visible watermark on videos).

    Args:
        source_video: The video whose face is replaced: a local MP4 path, a storage key or an http(s) URL.
        face_images: One face photo per person to replace, at most three (paths, storage keys or URLs).
        face_indexes: The faces of the frame to replace, numbered left to right; None: 0, 1, ...
        frame_time: The second of the (trimmed) video whose frame the faces are found and numbered in.
        enhance: Resolution boost, priced per second: 0 none, 1 up to 1080p, 2 up to 2k.
        trim_start: Cut the video to start at this second before submitting. None: from the start.
        trim_end: Cut the video to end at this second before submitting. None: to the end.
        wait: Wait for the job's callback and store the result in this run. False ends the run once the job is
            submitted; the store-result deployment stores the result when its callback arrives.
        timeout_seconds: How long to wait for the callback before failing with CallbackTimeout (the job may still
            finish: collect it later with `faceswap-flows collect TASK_ID`).
        max_credits: Refuse, before anything is spent, when the estimated credits exceed this. None: no limit.
        on_unknown_outcome: When the submission's answer proves nothing (a 5xx, a lost answer) and no callback comes
            within the receiver's grace: `at-most-once` fails with SubmissionOutcomeUnknown naming the job to collect
            later; `resubmit` sends it again (it may be charged twice).
        label_outputs: Label the result as synthetic media (embedded metadata) and write its provenance record. False
            stores it unlabelled (logged).
        sign_outputs: Embed a C2PA manifest (Content Credentials) signed with the `signing_block` key. False:
            unsigned.
        signing_block: Name of the ContentSigningKey block that signs the results.
        require_consent: Refuse face photos missing from the consent register (`faceswap-flows consent add`), before
            any credit is spent.
        credentials_block: Name of the AIFaceSwapCredentials block (API key, base URL).
        storage_block: Name of the MediaStorage block that stages the inputs and stores the results.
        receiver_block: Name of the WebhookReceiver block whose URL the service calls back.

    Returns:
        The job's outcome (task_id, job_id, credits): `stored`, with the result's key, URL and provenance record, or
        `submitted` when `wait` is False.

    Raises:
        VideoError: The video cannot be read or trimmed as asked (the message names the field).
        InputValidationError: An input or parameter is unusable (the message names the field); nothing was spent.
        BudgetExceeded: The estimate is over `max_credits`; nothing was submitted.
        ConsentRefused: `require_consent` is on and a face photo is not registered.
        SubmissionOutcomeUnknown: The submission's outcome stayed unknown (see `on_unknown_outcome`).
        CallbackTimeout: No callback within `timeout_seconds` (with `wait`).
        JobFailed: The service reported that the job failed.
    """
    enhance = _enhance(enhance)
    indexes = list(face_indexes) if face_indexes is not None else list(range(len(face_images)))
    if not 1 <= len(face_images) <= MAX_VIDEO_REFS or len(indexes) != len(face_images):
        raise InputValidationError(
            f"face_images: give 1 to {MAX_VIDEO_REFS} face images and one face index each; "
            f"got {len(face_images)} image(s) and {len(indexes)} index(es)"
        )
    if len(set(indexes)) != len(indexes):
        raise InputValidationError(f"face_indexes: {indexes} repeats a face: each face may be replaced once")
    services = await load_services(credentials_block, storage_block, receiver_block)
    with tempfile.TemporaryDirectory(prefix="faceswap-video-") as workdir:
        local, facts = await prepare_video(services.storage, source_video, workdir, trim_start, trim_end)
        price = estimate_credits(
            "multi_video_faceswap", duration=facts.duration, enhance=enhance, face_count=len(indexes)
        )
        check_budget(estimate_credits("extract_base64_face") + price, max_credits)
        try:
            frame_png = image_bytes(await asyncio.to_thread(grab_frame, local, frame_time))
        except ValueError as error:
            raise InputValidationError(str(error)) from None
        video, *faces = await asyncio.gather(
            upload(services.storage, str(local), "source_video", "video"),
            *(upload(services.storage, image, f"face_images[{i}]") for i, image in enumerate(face_images)),
        )
    output = OutputOptions(label=label_outputs, sign=sign_outputs, signing_block=signing_block)
    consent = await preflight(
        services.storage, output, require_consent, [(f"face_images[{i}]", f) for i, f in enumerate(faces)]
    )
    found = await extract_frame_faces(services.credentials, frame_png)
    wrong = [i for i in indexes if not 0 <= i < len(found)]
    if wrong:
        raise InputValidationError(
            f"face_indexes: {wrong} out of range: the frame at {frame_time} s has {len(found)} face(s), "
            f"numbered 0 to {len(found) - 1} from left to right: choose among them or another frame_time"
        )
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
        identity={
            "source_video": video.key or video.url,
            "faces": [f.key or f.url for f in faces],
            "index": indexes,
            "frame_time": frame_time,
            "enhance": enhance,
        },
        wait=wait,
        timeout_seconds=timeout_seconds,
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
        on_unknown_outcome=on_unknown_outcome,
        output=output,
    )
