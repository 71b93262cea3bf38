"""How the sandbox fetches input URLs: a kept-alive connection closed under it is asked again, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from faceswap_flows.aifaceswap.sandbox.inputs import InputError, InputLoader

BODY = b"\x89PNG not really, but bytes"


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP server that closes the first ``dropped[0]`` connections after reading their request,
    without a word (as a server closing an idle kept-alive connection does), and answers the others."""
    dropped = [1]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if dropped[0] > 0:
            dropped[0] -= 1
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/photo.png", dropped


async def test_a_connection_closed_before_any_answer_is_asked_again(flaky_server, tmp_path: Path) -> None:
    url, dropped = flaky_server
    async with httpx.AsyncClient() as http:
        loader = InputLoader(http, max_image_bytes=1024, max_video_bytes=1024, workdir=tmp_path)
        assert await loader.image_bytes(url, "source_image") == BODY
    assert dropped == [0]


async def test_a_server_that_never_answers_is_refused_naming_the_field(flaky_server, tmp_path: Path) -> None:
    url, dropped = flaky_server
    dropped[0] = 5
    async with httpx.AsyncClient() as http:
        loader = InputLoader(http, max_image_bytes=1024, max_video_bytes=1024, workdir=tmp_path)
        with pytest.raises(InputError, match="publicly reachable") as refused:
            await loader.image_bytes(url, "face_image")
    assert refused.value.field == "face_image" and dropped == [3], "asked exactly twice"
