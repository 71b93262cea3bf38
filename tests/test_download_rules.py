"""Issue 21.4: server-side request safety. Result downloads follow the credentials' host rules (the service's
domain, the sandbox when it is the base URL, allowed_result_hosts; no private, loopback or link-local address
for the real service unless allowed) and every download has a size and a time limit. Real HTTP on loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from faceswap_flows.aifaceswap.http_server import BackgroundServer
from faceswap_flows.aifaceswap.sandbox.inputs import InputError, InputLoader
from faceswap_flows.blocks import AIFaceSwapCredentials
from faceswap_flows.flows.media.download_rules import DownloadRefused, DownloadRules, download

PNG_HEAD = b"\x89PNG\r\n\x1a\n"


async def _big(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):  # 40 x 64 KiB, no Content-Length: only counting can stop it
            yield PNG_HEAD + b"\0" * (64 * 1024 - len(PNG_HEAD))

    return StreamingResponse(chunks(), media_type="image/png")


async def _slow(request: Request) -> Response:
    async def trickle() -> AsyncIterator[bytes]:
        yield PNG_HEAD
        for _ in range(600):  # a byte every 50 ms: no read ever times out, only a total limit stops it
            await asyncio.sleep(0.05)
            yield b"\0"

    return StreamingResponse(trickle(), media_type="image/png")


async def _hop(request: Request) -> Response:
    return RedirectResponse(request.query_params.get("to", "/hop"), status_code=302)  # no "to": a loop


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    app = Starlette(routes=[Route("/big", _big), Route("/slow", _slow), Route("/hop", _hop)])
    with BackgroundServer(app) as server:
        yield server.url


def test_the_default_rules_of_the_real_service() -> None:
    rules = DownloadRules.for_credentials(AIFaceSwapCredentials(api_key="k"))
    assert rules.host_allowed("aifaceswap.io") and rules.host_allowed("cdn.result.aifaceswap.io")
    for url, says in [
        ("https://evil.example/r.png", "allowed_result_hosts"),
        ("http://127.0.0.1:8700/results/x.png", "allowed_result_hosts"),
        ("http://169.254.169.254/latest/meta-data", "allowed_result_hosts"),
        ("file:///etc/passwd", r"not an http\(s\) URL"),
        ("https://aifaceswap.io.evil.example/r.png", "allowed_result_hosts"),
    ]:
        with pytest.raises(DownloadRefused, match=says):
            rules.check_url(url)
    assert rules.check_url("https://cdn.aifaceswap.io/r/x.png") == "cdn.aifaceswap.io"
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.9", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1"):
        with pytest.raises(DownloadRefused, match="allow_private_result_addresses"):
            rules.check_address("https://cdn.aifaceswap.io/x", "cdn.aifaceswap.io", address)
    rules.check_address("https://cdn.aifaceswap.io/x", "cdn.aifaceswap.io", "93.184.216.34")


def test_the_sandbox_is_trusted_when_it_is_the_base_url() -> None:
    rules = DownloadRules.for_credentials(AIFaceSwapCredentials(api_key="k", base_url="http://127.0.0.1:8700"))
    assert rules.check_url("http://127.0.0.1:8700/results/x.png") == "127.0.0.1"
    rules.check_address("http://127.0.0.1:8700/results/x.png", "127.0.0.1", "127.0.0.1")
    with pytest.raises(DownloadRefused, match="allowed_result_hosts"):
        rules.check_url("http://10.0.0.5/results/x.png")


async def test_a_result_on_a_private_address_is_refused_unless_allowed(hostile: str) -> None:
    url = f"{hostile}/big"
    strict = DownloadRules(hosts=("127.0.0.1",), max_bytes=10 * 2**20)
    async with httpx.AsyncClient() as http:
        with pytest.raises(DownloadRefused, match=r"127\.0\.0\.1.*allow_private_result_addresses"):
            await download(http, url, strict, lambda chunk: None)
        allowed = DownloadRules(hosts=("127.0.0.1",), allow_private=True, max_bytes=10 * 2**20)
        assert await download(http, url, allowed, lambda chunk: None) == 40 * 64 * 1024


async def test_a_redirect_to_another_host_is_checked_like_the_first_url(hostile: str) -> None:
    rules = DownloadRules(hosts=("127.0.0.1",), allow_private=True)
    port = hostile.rsplit(":", 1)[1]
    async with httpx.AsyncClient() as http:
        with pytest.raises(DownloadRefused, match=r"'localhost'.*allowed_result_hosts"):
            await download(http, f"{hostile}/hop?to=http://localhost:{port}/big", rules, lambda chunk: None)
        with pytest.raises(DownloadRefused, match="redirected more than"):
            await download(http, f"{hostile}/hop", rules, lambda chunk: None)


async def test_every_download_has_a_size_and_a_time_limit(hostile: str) -> None:
    got: list[bytes] = []
    async with httpx.AsyncClient() as http:
        small = DownloadRules(hosts=("127.0.0.1",), allow_private=True, max_bytes=1_000_000)
        with pytest.raises(DownloadRefused, match="max_result_bytes=1000000"):
            await download(http, f"{hostile}/big", small, got.append)
        assert sum(map(len, got)) <= 1_000_000, "stopped before the limit was crossed"
        quick = DownloadRules(hosts=("127.0.0.1",), allow_private=True, timeout_seconds=1.0)
        with pytest.raises(DownloadRefused, match="result_download_timeout_seconds=1"):
            await download(http, f"{hostile}/slow", quick, got.append)


async def test_the_sandbox_cuts_off_a_slow_input(hostile: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        loader = InputLoader(http, max_image_bytes=2**20, max_video_bytes=2**20, workdir=tmp_path, total_seconds=1.0)
        with pytest.raises(InputError, match="fetch_total_seconds") as slow:
            await loader.image_bytes(f"{hostile}/slow", "face_image")
        assert slow.value.field == "face_image"
        with pytest.raises(InputError, match="larger than the 1 MiB"):
            await loader.image_bytes(f"{hostile}/big", "source_image")


async def test_a_refused_result_fails_the_collect_flow_naming_the_url_and_the_option(stack) -> None:
    """The store-result flow (what `faceswap-flows collect` runs) with a result URL outside the service's hosts:
    it fails at once (not retried) with the URL, the host and the option that allows it; nothing is stored."""
    from faceswap_flows.flows.collect import store_result

    key = f"results/refused/{uuid.uuid4().hex}.png"
    state = await store_result(
        uuid.uuid4().hex, result_image="http://169.254.169.254/latest/meta-data", result_key=key, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(DownloadRefused, match=r"169\.254\.169\.254.*allowed_result_hosts"):
        await state.result()
    assert not stack.storage.exists(key)
