"""Getting a request's inputs: fetching URLs (bounded in size and time) and decoding images and videos."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx
import numpy as np

from faceswap_flows.aifaceswap.models import FileInput, decode_base64_image
from faceswap_flows.aifaceswap.sandbox.vision import NotAnImage, NotAVideo, VideoInfo, decode_image, probe_video


class InputError(Exception):
    """An input the sandbox cannot use; answered as HTTP 400 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# a GET that broke before anything came (a kept-alive connection the server closed, a reset): safe to ask again
_ASK_AGAIN = (httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError)


class InputLoader:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        max_image_bytes: int,
        max_video_bytes: int,
        workdir: Path,
        total_seconds: float = 300.0,
    ) -> None:
        self._http = http
        self._total_seconds = total_seconds
        self._max_image_bytes = max_image_bytes
        self._max_video_bytes = max_video_bytes
        self._workdir = workdir

    async def _download(self, url: str, field: str, max_bytes: int, sink: list[bytes] | Path) -> int:
        """Fetch within max_bytes and the total time limit (a slow trickle is cut off, not waited for)."""
        try:
            async with asyncio.timeout(self._total_seconds):
                try:
                    return await self._download_once(url, field, max_bytes, sink)
                except _ASK_AGAIN:
                    return await self._download_once(url, field, max_bytes, sink)
        except TimeoutError:
            raise InputError(
                field, f"fetching {url} took over {self._total_seconds:g} s (fetch_total_seconds): serve it faster"
            ) from None
        except httpx.HTTPError as error:
            raise InputError(
                field, f"could not fetch {url} ({type(error).__name__}); the URL must be publicly reachable"
            ) from None

    async def _download_once(self, url: str, field: str, max_bytes: int, sink: list[bytes] | Path) -> int:
        size = 0
        try:
            async with self._http.stream("GET", url, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise InputError(
                        field, f"could not fetch {url}: HTTP {response.status_code}; the URL must be publicly reachable"
                    )
                handle = sink.open("wb") if isinstance(sink, Path) else None
                try:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise InputError(field, f"{url} is larger than the {max_bytes // 2**20} MiB allowed")
                        if handle:
                            handle.write(chunk)
                        else:
                            assert isinstance(sink, list)
                            sink.append(chunk)
                finally:
                    if handle:
                        handle.close()
        except _ASK_AGAIN:
            if size:
                raise InputError(field, f"the connection to {url} broke while downloading it; try again") from None
            raise
        if size == 0:
            raise InputError(field, f"{url} is empty: pass a URL of a non-empty file")
        return size

    async def image_bytes(self, ref: str | FileInput, field: str) -> bytes:
        if isinstance(ref, FileInput):
            return ref.content
        chunks: list[bytes] = []
        await self._download(ref, field, self._max_image_bytes, chunks)
        return b"".join(chunks)

    async def image(self, ref: str | FileInput, field: str) -> np.ndarray:
        return self.decode(await self.image_bytes(ref, field), field)

    @staticmethod
    def decode(data: bytes, field: str) -> np.ndarray:
        try:
            return decode_image(data)
        except NotAnImage:
            raise InputError(field, "is not an image the sandbox can read: use a JPEG, PNG or WebP file") from None

    @staticmethod
    def base64_image(value: str, field: str) -> np.ndarray:
        return InputLoader.decode(decode_base64_image(value), field)

    async def video(self, url: str, field: str) -> tuple[Path, VideoInfo]:
        handle = tempfile.NamedTemporaryFile(dir=self._workdir, suffix=".video", delete=False)  # noqa: SIM115
        handle.close()
        path = Path(handle.name)
        try:
            await self._download(url, field, self._max_video_bytes, path)
            info = probe_video(path)
        except NotAVideo as error:
            path.unlink(missing_ok=True)
            raise InputError(field, f"is not a video the sandbox can decode ({error}): use an MP4 file") from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, info
