"""An async client for the aifaceswap API, one method per endpoint.

>>> import asyncio
>>> from aifaceswap import AIFaceSwapClient
>>> async def main() -> None:
...     async with AIFaceSwapClient("my-key", base_url="http://127.0.0.1:8700") as client:
...         faces = await client.extract_face("https://example.com/group.jpg")
...         print([box.as_tuple() for box in faces.faces])
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import certifi
import httpx
from pydantic import BaseModel, ValidationError

from faceswap_flows.aifaceswap.errors import (
    AIFaceSwapError,
    ConnectionFailedError,
    RateLimitedError,
    ResponseLostError,
    ServerError,
    UnreadableAnswerError,
    error_for_status,
    shorten,
    upstream_excerpt,
)
from faceswap_flows.aifaceswap.lanes import ClientLanes
from faceswap_flows.aifaceswap.models import (
    ApiRequest,
    Envelope,
    ExtractBase64FaceData,
    ExtractBase64FaceRequest,
    ExtractFaceData,
    ExtractFaceRequest,
    FaceSwapRequest,
    FileInput,
    MultiFaceSwapRequest,
    MultiVideoFaceSwapRequest,
    RefImage,
    SubmitData,
    VideoFaceSwapRequest,
    validate_model,
)

logger = logging.getLogger("aifaceswap")

DEFAULT_BASE_URL = "https://aifaceswap.io"
MAX_RETRY_AFTER_SECONDS = 60.0

ImageInput = str | Path | bytes | FileInput
"""An image: an http(s) URL the service fetches, or a local file (path or bytes) sent with the request."""

DataT = TypeVar("DataT", bound=BaseModel)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process for every HTTP client here (building one costs ~10 ms of CPU each time)."""
    return ssl.create_default_context(cafile=certifi.where())


# Every API call is paid, so each goes over a new connection. A kept-alive connection can be closed by the server
# as idle at the moment a call is sent on it: the call then fails after sending, exactly like a call whose answer
# was lost after the service took it (outcome unknown: the job is not sent again). A new connection fails, if it
# does, before anything is sent (ConnectionFailedError, retried). Measured: 1 job of 30,006 lost that way.
PAID_CALL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=0)
KEPT_ALIVE_LIMITS = httpx.Limits(max_connections=64)


class _Closable(Protocol):
    @property
    def is_closed(self) -> bool: ...


_ClosableT = TypeVar("_ClosableT", bound=_Closable)
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()


def _loop_shared(name: str, make: Callable[[], _ClosableT]) -> _ClosableT:
    """One ``name`` per event loop (an HTTP client cannot cross loops), made again once it is closed."""
    shared = _per_loop.setdefault(asyncio.get_running_loop(), {})
    held = shared.get(name)
    if held is None or held.is_closed:
        held = shared[name] = make()
    return held


def shared_http_client(*, keep_alive: bool = True) -> httpx.AsyncClient:
    """One HTTP client per event loop, for the many short calls of a batch. ``keep_alive``: connections are kept
    for the next call (downloads, inbox reads: no TCP or TLS set-up per call); False: a new connection for each
    call (the paid API calls, see PAID_CALL_LIMITS). Never close it; give timeouts per request."""
    limits = KEPT_ALIVE_LIMITS if keep_alive else PAID_CALL_LIMITS
    return _loop_shared(
        f"client keep_alive={keep_alive}",
        lambda: httpx.AsyncClient(verify=tls_context(), follow_redirects=True, limits=limits),
    )


DOWNLOAD_LANES = 16  # a sweep stores 2 chunks of 8 results at a time


def shared_download_lanes() -> ClientLanes:
    """One set of download lanes per event loop (results fetched from the service's temporary URLs): a kept-alive
    connection per lane, so a request checks one connection, not the twenty a shared pool keeps. Never close it."""
    return _loop_shared(
        "download lanes", lambda: ClientLanes(DOWNLOAD_LANES, verify=tls_context(), follow_redirects=True)
    )


def as_image_ref(image: ImageInput) -> str | FileInput:
    """A URL stays a URL; a Path or bytes becomes a file part. Other strings are checked as URLs."""
    if isinstance(image, Path):
        return FileInput.from_path(image)
    if isinstance(image, bytes | bytearray):
        return FileInput.from_bytes(bytes(image))
    return image


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class AIFaceSwapClient:
    """Calls the aifaceswap API with Bearer authentication.

    Every answer is classified by what it proves. Refused (no connection made, 429, a 4xx): nothing happened;
    no connection and 429 are retried here (honouring Retry-After), up to ``max_retries`` times. Accepted: the
    API's JSON envelope with its data. Anything else (a 5xx, a body that is not the envelope, a reset or timeout
    after sending) raises an error whose ``outcome_unknown`` is true, at once: the caller looks for the job
    instead of paying twice. Each call goes over a new connection (see PAID_CALL_LIMITS); an ``http_client`` given
    here should not keep connections alive either.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | httpx.Timeout = 60.0,
        max_retries: int = 2,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is empty: pass the key from the API management page")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self._owns_http = http_client is None
        self._timeout = timeout
        self._http = http_client or httpx.AsyncClient(timeout=timeout, verify=tls_context(), limits=PAID_CALL_LIMITS)
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}

    async def __aenter__(self) -> AIFaceSwapClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def faceswap(self, source_image: ImageInput, face_image: ImageInput, *, webhook: str) -> SubmitData:
        """Start a single-face swap; the result is POSTed to ``webhook``."""
        request = validate_model(
            FaceSwapRequest,
            {"source_image": as_image_ref(source_image), "face_image": as_image_ref(face_image), "webhook": webhook},
        )
        return await self.send(request)

    async def extract_face(self, img: ImageInput) -> ExtractFaceData:
        """Every face in the image, as boxes in the service's order (their indexes for multi_faceswap)."""
        return await self.send(validate_model(ExtractFaceRequest, {"img": as_image_ref(img)}))

    async def multi_faceswap(
        self, source_image: str, face_image: Sequence[str], index: Sequence[int], *, webhook: str
    ) -> SubmitData:
        """Start replacing the faces at ``index`` of ``source_image`` by ``face_image`` (same order)."""
        request = validate_model(
            MultiFaceSwapRequest,
            {"source_image": source_image, "face_image": list(face_image), "index": list(index), "webhook": webhook},
        )
        return await self.send(request)

    async def video_faceswap(
        self, source_video: str, face_image: str, duration: float, *, enhance: int = 0, webhook: str
    ) -> SubmitData:
        """Start swapping one face through a video of ``duration`` seconds."""
        request = validate_model(
            VideoFaceSwapRequest,
            {
                "source_video": source_video,
                "face_image": face_image,
                "duration": duration,
                "enhance": enhance,
                "webhook": webhook,
            },
        )
        return await self.send(request)

    async def extract_base64_face(self, base64_img: str | bytes) -> ExtractBase64FaceData:
        """The faces in one video frame (base64 string, or the encoded image's bytes)."""
        return await self.send(validate_model(ExtractBase64FaceRequest, {"base64_img": base64_img}))

    async def multi_video_faceswap(
        self,
        source_video: str,
        ref_info: Sequence[RefImage | dict[str, Any]],
        duration: float,
        *,
        enhance: int = 0,
        webhook: str,
    ) -> SubmitData:
        """Start replacing up to three faces (each a ``face_ref`` crop) through a video."""
        request = validate_model(
            MultiVideoFaceSwapRequest,
            {
                "source_video": source_video,
                "ref_info": list(ref_info),
                "duration": duration,
                "enhance": enhance,
                "webhook": webhook,
            },
        )
        return await self.send(request)

    async def send(self, request: ApiRequest) -> Any:
        """Send a validated request and return its typed ``data``; raises an AIFaceSwapError subclass."""
        attempt = 0
        while True:
            try:
                return await self._send_once(request)
            except (ConnectionFailedError, RateLimitedError) as error:
                if attempt >= self.max_retries:
                    raise
                attempt += 1
                delay = self._retry_delay(error, attempt)
                logger.warning(
                    "%s: %s; retry %d/%d in %.1fs", request.endpoint, error, attempt, self.max_retries, delay
                )
                await asyncio.sleep(delay)

    @staticmethod
    def _retry_delay(error: AIFaceSwapError, attempt: int) -> float:
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_AFTER_SECONDS)
        return min(0.5 * 2 ** (attempt - 1), 8.0)

    def _encode(self, request: ApiRequest) -> dict[str, Any]:
        if not request.has_files():
            return {"json": request.model_dump(mode="json")}
        fields: dict[str, str] = {}
        files: dict[str, tuple[str, bytes, str]] = {}
        for name, value in request:
            if isinstance(value, FileInput):
                files[name] = (value.filename, value.content, value.content_type)
            elif value is not None:
                fields[name] = str(value)
        return {"data": fields, "files": files}

    async def _send_once(self, request: ApiRequest) -> Any:
        url = f"{self.base_url}{request.path()}"
        try:
            response = await self._http.post(url, headers=self._headers, timeout=self._timeout, **self._encode(request))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise ConnectionFailedError(
                f"{request.endpoint}: could not connect to {self.base_url}: {error!r}"
            ) from error
        except httpx.HTTPError as error:
            raise ResponseLostError(
                f"{request.endpoint}: the request was sent but no answer came back ({error!r}); "
                "the service may have accepted it: check before submitting again"
            ) from error
        return self._parse(request, response)

    def _parse(self, request: ApiRequest, response: httpx.Response) -> Any:
        try:
            envelope: Envelope[Any] | None = Envelope[Any].model_validate_json(response.content)
        except ValidationError:
            envelope = None
        status = response.status_code
        if envelope is None and (status < 300 or status >= 500):
            error_class = ServerError if status >= 500 else UnreadableAnswerError
            raise error_class(
                f"{request.endpoint}: HTTP {status}, not the API's JSON answer: the outcome is unknown (a gateway "
                f"may have answered after the service accepted the call); it sent {upstream_excerpt(response.text)}",
                status_code=status,
                body=response.text[:2000],
            )
        if envelope is None or status >= 400 or envelope.code != 200:
            code = envelope.code if envelope else None
            said = shorten(envelope.message, 300) if envelope and envelope.message else ""
            message = said or (response.text and upstream_excerpt(response.text)) or response.reason_phrase
            error = error_for_status(status, code, f"{request.endpoint}: {message}", response.text[:2000])
            if isinstance(error, RateLimitedError):
                error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise error
        try:
            return request.response_data.model_validate(envelope.data)
        except ValidationError as invalid:
            raise UnreadableAnswerError(
                f"{request.endpoint}: the answer's data does not match the API contract ({invalid.errors()[:3]}): "
                "the outcome is unknown",
                status_code=status,
                code=envelope.code,
                body=response.text[:2000],
            ) from None
