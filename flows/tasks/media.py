"""Tasks that move media: inputs into storage (as URLs the API can fetch), results out of the API into storage."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO
from urllib.parse import urlsplit

import httpx
from prefect import task
from prefect.logging import get_run_logger

from faceswap_flows.aifaceswap.client import shared_download_lanes, tls_context
from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import sniff_image_type
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.media.download_rules import DownloadRefused, DownloadRules, current_rules, download
from faceswap_flows.flows.media.reachability import INPUT_FIX, STORAGE_FIX, current_reach
from faceswap_flows.flows.media.staged import StagedMedia
from faceswap_flows.flows.media.video import VideoError, VideoFacts, trim_video, video_facts
from faceswap_flows.flows.options import WatermarkCorner
from faceswap_flows.flows.provenance.content_credentials import SigningPlan, sign_bytes, sign_file
from faceswap_flows.flows.provenance.labels import (
    SyntheticLabel,
    draw_watermark,
    label_image,
    label_video,
)

DOWNLOAD_CHUNK = 1024 * 1024
INPUT_LIMITS = DownloadRules(hosts=(), max_bytes=2 * 1024**3, timeout_seconds=600.0)
"""Size and time limits of the user's own input URLs the flows read (their hosts are the user's choice)."""
_log = logging.getLogger("faceswap.flows")


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def local_name(source: str, default: str) -> str:
    """A plain file name for a local copy of ``source`` (a URL, a storage key or a path), whatever the user gave:
    one component, printable, never empty, ``.`` or ``..``."""
    path = urlsplit(source).path if is_url(source) else source
    name = "".join(c for c in path.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())[:120]
    return name if name.strip(" .") else default


def _check_image_file(path: Path, field: str) -> None:
    if path.stat().st_size == 0:
        raise InputValidationError(f"{field}: {path} is empty: pass a JPEG, PNG or WebP image")
    with path.open("rb") as handle:
        if sniff_image_type(handle.read(32)) is None:
            raise InputValidationError(f"{field}: {path} is not an image: pass a JPEG, PNG or WebP file")


def _sha256(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(DOWNLOAD_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _url_sha256(url: str) -> str | None:
    """The SHA-256 of what a URL serves (for the provenance record); None when it cannot be read from here
    (or is over the input limits: INPUT_LIMITS)."""
    return asyncio.run(url_sha256s([url]))[url]


async def url_sha256s(urls: Iterable[str], concurrency: int = 8) -> dict[str, str | None]:
    """The SHA-256 of what each URL serves, ``concurrency`` at a time over one pooled client (None for a URL
    that cannot be read from here, or is over INPUT_LIMITS)."""
    slots = asyncio.Semaphore(concurrency)
    found: dict[str, str | None] = {}

    async def one(http: httpx.AsyncClient, url: str) -> None:
        digest = hashlib.sha256()
        async with slots:
            try:
                await download(http, url, INPUT_LIMITS, digest.update, check_hosts=False, chunk=DOWNLOAD_CHUNK)
            except (httpx.HTTPError, DownloadRefused, RuntimeError) as error:
                _log.warning(
                    "could not read %s to record its SHA-256 (%s)",
                    urlsplit(url)._replace(query="").geturl(),
                    error if isinstance(error, DownloadRefused) else type(error).__name__,
                )
                found[url] = None
                return
        found[url] = digest.hexdigest()

    async with httpx.AsyncClient(verify=tls_context()) as http:
        await asyncio.gather(*(one(http, url) for url in dict.fromkeys(urls)))
    return found


def stage(
    storage: MediaStorage, source: str, field: str, kind: str = "image", url_sha256: str | None = None
) -> StagedMedia:
    """Make ``source`` (an http(s) URL, a local file or a storage key) fetchable by the API; checks it first, and
    that the service can reach the URL it gets (with the real service: not a loopback or private address).
    ``url_sha256``: the SHA-256 of a URL ``source`` when already read (it is not downloaded again)."""
    reach = current_reach()
    if reach is not None and is_url(source):
        reach.check(source, field, INPUT_FIX)
    staged = _stage(storage, source, field, kind, url_sha256)
    if reach is not None and staged.key is not None:
        reach.check(staged.url, "MediaStorage.public_base_url", STORAGE_FIX)
    return staged


def _stage(
    storage: MediaStorage, source: str, field: str, kind: str = "image", url_sha256: str | None = None
) -> StagedMedia:
    if is_url(source):
        name = Path(urlsplit(source).path).name or field
        return StagedMedia(source, None, name, url_sha256 or _url_sha256(source))
    local = Path(source).expanduser()
    if local.is_file():
        if kind == "image":
            _check_image_file(local, field)
        else:
            _video_facts(local, field)
        with local.open("rb") as handle:
            sha256 = _sha256(handle)
        key = f"inputs/{sha256[:16]}/{local.name}"
        if not (storage.exists(key) and storage.size(key) == local.stat().st_size):  # keys name the content
            storage.upload(local, key)
        return StagedMedia(url=storage.url_for(key), key=key, name=local.name, sha256=sha256)
    if source and not source.startswith("/") and storage.exists(source):
        if storage.size(source) == 0:
            raise InputValidationError(f"{field}: {storage.uri(source)} is empty: pass a non-empty file")
        with storage.open(source) as handle:
            sha256 = _sha256(handle)
        return StagedMedia(url=storage.url_for(source), key=source, name=Path(source).name, sha256=sha256)
    raise InputValidationError(
        f"{field}: {source!r} is not an http(s) URL, an existing local file, or a key in storage "
        f"{storage.basepath}: check the path"
    )


@task(
    name="upload",
    task_run_name="upload {field}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=lambda task, run, state: not isinstance(state.data, InputValidationError),
)
async def upload(storage: MediaStorage, source: str, field: str, kind: str = "image") -> StagedMedia:
    """Stage one input in storage and return the URL the API fetches it from.

    Args:
        storage: The MediaStorage block the media is read from and written to.
        source: A local path, a storage key or an http(s) URL.
        field: The flow parameter it came from (named in errors).
        kind: `image` or `video`: what the input must be.

    Returns:
        The staged input: its URL, storage key, name and SHA-256.

    Raises:
        InputValidationError: The input does not exist or is not an image/video (names `field`).
    """
    staged = await asyncio.to_thread(stage, storage, source, field, kind)
    get_run_logger().info("%s: %s -> %s", field, source, storage.uri(staged.key) if staged.key else staged.url)
    return staged


def _video_facts(path: Path, field: str) -> VideoFacts:
    try:
        return video_facts(path, field)
    except VideoError as error:
        raise InputValidationError(str(error)) from None


async def download_to(url: str, target: Path, *, limits: DownloadRules | None = None) -> int:
    """Download a user's input URL to ``target`` within ``limits`` (size and time; default INPUT_LIMITS)."""
    with target.open("wb") as handle:
        async with httpx.AsyncClient(verify=tls_context()) as http:
            try:
                return await download(http, url, limits or INPUT_LIMITS, handle.write, check_hosts=False)
            except DownloadRefused as error:
                raise InputValidationError(f"source_video: {error}") from None


@task(
    name="prepare-video",
    task_run_name="prepare video {field}",
    retries=1,
    retry_condition_fn=lambda task, run, state: not isinstance(state.data, InputValidationError),
)
async def prepare_video(
    storage: MediaStorage,
    source: str,
    workdir: str,
    trim_start: float | None = None,
    trim_end: float | None = None,
    field: str = "source_video",
) -> tuple[Path, VideoFacts]:
    """A local copy of the video (downloaded if it is a URL or a storage key), trimmed when asked, with its duration
    read from the file itself.

    Args:
        storage: The MediaStorage block the media is read from and written to.
        source: The video: a local path, a storage key or an http(s) URL.
        workdir: The folder the local copy is written to.
        trim_start: Start of the cut, in seconds. None: the start.
        trim_end: End of the cut, in seconds. None: the end.
        field: The flow parameter it came from (named in errors).

    Returns:
        The local file and its facts (duration, size, fps, audio).

    Raises:
        VideoError: The video cannot be read or trimmed as asked.
    """
    folder = Path(workdir)
    local = Path(source).expanduser()
    if is_url(source):
        local = folder / local_name(source, "input.mp4")
        await download_to(source, local)
    elif not local.is_file():
        if not storage.exists(source):
            raise InputValidationError(
                f"{field}: {source!r} is not an http(s) URL, an existing local file, or a key in storage "
                f"{storage.basepath}: check the path"
            )
        local = folder / local_name(source, "input.mp4")
        with storage.open(source) as remote, local.open("wb") as handle:
            for chunk in iter(lambda: remote.read(DOWNLOAD_CHUNK), b""):
                handle.write(chunk)
    facts = _video_facts(local, field)
    if trim_start is None and trim_end is None:
        return local, facts
    trimmed = folder / f"{local.stem}-trim-{trim_start or 0:g}-{trim_end or facts.duration:g}.mp4"
    try:
        facts = trim_video(local, trimmed, trim_start or 0.0, trim_end)
    except VideoError as error:
        raise InputValidationError(str(error)) from None
    get_run_logger().info("trimmed %s to %.2f s", local.name, facts.duration)
    return trimmed, facts


def _check_result_head(head: bytes, kind: str, url: str) -> None:
    if kind == "image" and sniff_image_type(head) is None:
        raise ValueError(f"the result at {url} is not an image")
    if kind == "video" and head[4:8] != b"ftyp":
        raise ValueError(f"the result at {url} is not an MP4 video")


@task(
    name="fetch-result",
    task_run_name="fetch result {key}",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=lambda task, run, state: not isinstance(state.data, DownloadRefused),
)
async def fetch_result(
    storage: MediaStorage,
    result_url: str,
    key: str,
    kind: str = "image",
    label: SyntheticLabel | None = None,
    watermark: str | None = None,
    watermark_corner: WatermarkCorner = "bottom-right",
    signing: SigningPlan | None = None,
    log_each: bool = True,
) -> str:
    """Download the result from its temporary URL and store it whole.

    The download is checked to be a real image/video, the watermark is drawn (images), and the synthetic-media
    label and the C2PA manifest are embedded.

    Args:
        storage: The MediaStorage block the media is read from and written to.
        result_url: The service's temporary URL of the result.
        key: The storage key to store it under.
        kind: `image` or `video`.
        label: The synthetic-media label to embed. None: stored unlabelled.
        watermark: A visible text to draw (images). None: none.
        watermark_corner: The corner the watermark is drawn in.
        signing: How to sign the C2PA manifest. None: unsigned.
        log_each: Log the stored result at INFO (False: DEBUG; a sweep logs each chunk's counts).

    Returns:
        The storage key of the stored result.

    Raises:
        DownloadRefused: The URL is not allowed, or the download is too large or too slow.
    """
    logger = get_run_logger()
    if kind == "image":  # small: kept in memory, finished and stored in one step
        buffer = io.BytesIO()
        size = await _download_result(result_url, buffer, kind)
        detail = f"{size} bytes"
        await asyncio.to_thread(
            _store_image, storage, key, buffer.getvalue(), label, watermark, watermark_corner, signing
        )
    else:
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / f"result{Path(key).suffix}"
            with local.open("wb") as handle:
                size = await _download_result(result_url, handle, kind)
            facts = video_facts(local, "result")
            detail = f"{size} bytes, {facts.duration:.2f} s video"
            if watermark:
                logger.warning("watermark: not drawn on videos (images only); %s is stored without it", key)
            if label is not None:
                labelled = local.with_name(f"labelled{local.suffix}")
                await asyncio.to_thread(label_video, local, labelled, label)
                local = labelled
            if signing is not None:
                signed = local.with_name(f"signed{local.suffix}")
                await asyncio.to_thread(sign_file, signing, local, signed, "video/mp4", PurePosixPath(key).name)
                local = signed
            await asyncio.to_thread(storage.upload, local, key)
    if label is None:
        logger.warning("stored %s (%s) WITHOUT the synthetic-media label: output.label=False", storage.uri(key), detail)
    if signing is None:
        logger.warning("stored %s WITHOUT a signed C2PA manifest: output.sign=False", storage.uri(key))
    if label is not None or signing is not None:  # one line: at a hundred results a second, each log line costs
        labelled = f"labelled as synthetic (task {label.task_id})" if label is not None else "unlabelled"
        signed = f"a C2PA manifest signed by {signing.summary()['signer']}" if signing is not None else "unsigned"
        logger.log(
            logging.INFO if log_each else logging.DEBUG,
            "stored %s (%s), %s, %s",
            storage.uri(key),
            detail,
            labelled,
            signed,
        )
    return key


def _store_image(
    storage: MediaStorage,
    key: str,
    data: bytes,
    label: SyntheticLabel | None,
    watermark: str | None,
    watermark_corner: WatermarkCorner,
    signing: SigningPlan | None = None,
) -> None:
    if watermark:
        data = draw_watermark(data, watermark, watermark_corner)
    if label is not None:
        data, _mime = label_image(data, label)
    if signing is not None:
        data = sign_bytes(signing, data, sniff_image_type(data[:32]) or "image/png", PurePosixPath(key).name)
    storage.write_bytes(key, data)


async def _download_result(result_url: str, sink: BinaryIO, kind: str) -> int:
    """Stream the result into ``sink`` under the credentials' host rules and limits (flows.media.download_rules),
    checking its first bytes are an image/video; returns its size."""
    head = bytearray()

    def write(chunk: bytes) -> None:
        if len(head) < 16:
            head.extend(chunk[: 16 - len(head)])
            if len(head) >= 16:
                _check_result_head(bytes(head), kind, result_url)
        sink.write(chunk)

    rules = await current_rules()
    try:
        async with shared_download_lanes().lane() as http:
            size = await download(http, result_url, rules, write, chunk=DOWNLOAD_CHUNK)
    except DownloadRefused as error:
        _log.error("result download refused: %s", error)
        raise
    if size < 16:
        raise ValueError(f"the result at {result_url} is empty or truncated ({size} bytes)")
    return size
