"""The client against a real HTTP stand-in on loopback: every error path and both image forms."""

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from faceswap_flows.aifaceswap import (
    AIFaceSwapClient,
    AIFaceSwapError,
    AuthenticationError,
    ConnectionFailedError,
    InputValidationError,
    InsufficientCreditsError,
    InvalidRequestError,
    RateLimitedError,
    ResponseLostError,
    ServerError,
    UnreadableAnswerError,
)
from faceswap_flows.aifaceswap.client import DOWNLOAD_LANES, shared_download_lanes, shared_http_client
from faceswap_flows.aifaceswap.http_server import BackgroundServer
from faceswap_flows.aifaceswap.lanes import ClientLanes
from faceswap_flows.blocks import AIFaceSwapCredentials
from tests.test_models import tiny_png

HOOK = "https://hooks.example.com/cb"
URL = "https://cdn.example.com/a.jpg"


class StandIn:
    """A scripted server: each endpoint answers the next scripted response and records the request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, object, dict[str, str]]] = []
        self.seen: list[dict[str, object]] = []
        self.delay = 0.0

    async def handle(self, request: Request) -> object:
        record: dict[str, object] = {
            "path": request.url.path,
            "auth": request.headers.get("authorization"),
            "connection": request.client,  # (host, port): a new port is a new connection
        }
        if request.headers.get("content-type", "").startswith("multipart/"):
            async with request.form() as form:
                record["form"] = {
                    k: (v.filename, await v.read()) if hasattr(v, "read") else v for k, v in form.multi_items()
                }
        else:
            record["json"] = await request.json()
        self.seen.append(record)
        if self.delay:
            await asyncio.sleep(self.delay)
        status, body, headers = self.script.pop(0) if self.script else (200, OK_SUBMIT, {})
        if isinstance(body, str):
            return PlainTextResponse(body, status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)


OK_SUBMIT = {"code": 200, "data": {"points": 2, "task_id": "abc"}, "extra_data": {}, "message": "OK"}


@pytest.fixture(scope="module")
def stand_in():
    server = StandIn()
    app = Starlette(routes=[Route("/api/aifaceswap/v1/{endpoint}", server.handle, methods=["POST"])])
    with BackgroundServer(app) as running:
        server.url = running.url
        yield server


@pytest.fixture
def fresh(stand_in):
    stand_in.script.clear()
    stand_in.seen.clear()
    stand_in.delay = 0.0
    return stand_in


async def test_submit_sends_bearer_json_and_parses(fresh) -> None:
    async with AIFaceSwapClient("k-1", base_url=fresh.url) as client:
        result = await client.faceswap(URL, URL, webhook=HOOK)
    assert (result.task_id, result.points) == ("abc", 2)
    assert fresh.seen[0]["auth"] == "Bearer k-1"
    assert fresh.seen[0]["path"] == "/api/aifaceswap/v1/faceswap"
    assert fresh.seen[0]["json"] == {"webhook": HOOK, "source_image": URL, "face_image": URL}


async def test_local_files_go_as_multipart(fresh, tmp_path: Path) -> None:
    (tmp_path / "face.png").write_bytes(tiny_png())
    async with AIFaceSwapClient("k", base_url=fresh.url) as client:
        await client.faceswap(URL, tmp_path / "face.png", webhook=HOOK)
        fresh.script.append((200, {"code": 200, "data": {"faces": [[1, 2, 30, 40]], "points": 2}, "message": "OK"}, {}))
        faces = await client.extract_face(tiny_png())
    form = fresh.seen[0]["form"]
    assert form["source_image"] == URL and form["webhook"] == HOOK
    assert form["face_image"] == ("face.png", tiny_png())
    assert fresh.seen[1]["form"]["img"][1] == tiny_png()
    assert faces.faces[0].as_tuple() == (1, 2, 30, 40)


@pytest.mark.parametrize(
    ("status", "body", "error", "unknown"),
    [
        (200, {"code": 401, "data": None, "message": "invalid api key"}, AuthenticationError, False),
        (401, {"code": 401, "message": "missing key"}, AuthenticationError, False),
        (200, {"code": 402, "message": "insufficient credits"}, InsufficientCreditsError, False),
        (200, {"code": 400, "message": "source_image could not be fetched"}, InvalidRequestError, False),
        (400, "bad request", InvalidRequestError, False),
        (404, "<html>not found</html>", InvalidRequestError, False),
        (500, {"code": 500, "message": "boom"}, ServerError, True),
        (502, "<html><body>502 Bad Gateway</body></html>", ServerError, True),
        (503, "", ServerError, True),
        (200, {"code": 500, "message": "internal"}, ServerError, True),
        (200, "<html>maintenance</html>", UnreadableAnswerError, True),
        (200, "", UnreadableAnswerError, True),
        (200, '{"code": 200, "data": {"points": 2, "task_', UnreadableAnswerError, True),
        (200, {"code": 200, "data": {"unexpected": True}, "message": "OK"}, UnreadableAnswerError, True),
    ],
)
async def test_every_answer_is_classified_by_what_it_proves(fresh, status, body, error, unknown) -> None:
    """Refusals (4xx) prove nothing was charged; a 5xx or a body that is not the API's envelope proves nothing:
    outcome unknown, never retried."""
    fresh.script.append((status, body, {}))
    async with AIFaceSwapClient("k", base_url=fresh.url, max_retries=3) as client:
        with pytest.raises(error) as caught:
            await client.faceswap(URL, URL, webhook=HOOK)
    assert len(fresh.seen) == 1, "an answer that does not prove a retry is safe is never retried by the client"
    assert caught.value.outcome_unknown is unknown and not caught.value.retryable


GATEWAY_PAGE = (
    "<!DOCTYPE html><html><head><title>example.com | 502: Bad gateway</title><style>"
    + "body{margin:0}" * 300
    + "</style></head><body>"
    + "<div class='cf-error'><p>The web server reported a bad gateway error.</p></div>" * 60
    + "</body></html>"
)


@pytest.mark.parametrize(
    ("status", "body", "quoted"),
    [
        (502, GATEWAY_PAGE, f"an HTML page ({len(GATEWAY_PAGE)} characters)"),
        (200, GATEWAY_PAGE, "'example.com | 502: Bad gateway'"),
        (
            504,
            "<html><body><h1>504</h1>" + "<p>Gateway Time-out, please retry later</p>" * 80 + "</body></html>",
            "504",
        ),
        (
            400,
            '{"detail": [' + ", ".join(f'{{"loc": ["field{i}"], "msg": "bad"}}' for i in range(200)) + "]}",
            "field0",
        ),
        (200, {"code": 400, "message": "index: " + "face 9 does not exist; " * 200}, "index: face 9 does not exist"),
    ],
)
async def test_an_upstream_body_is_quoted_short(fresh, status, body, quoted) -> None:
    """A gateway's HTML page or a long body is quoted by its title or its first characters, on one line: the message
    stays short enough for the advice every flow adds around it to be kept whole in reports."""
    fresh.script.append((status, body, {}))
    async with AIFaceSwapClient("k", base_url=fresh.url) as client:
        with pytest.raises(AIFaceSwapError) as caught:
            await client.faceswap(URL, URL, webhook=HOOK)
    message = str(caught.value)
    assert message.startswith("faceswap: ") and quoted in message, message
    assert len(message) < 500 and "\n" not in message and "<div" not in message and "body{" not in message, message
    if isinstance(caught.value, ServerError):
        assert "the outcome is unknown" in message and f"HTTP {status}" in message
        assert caught.value.body == (body if isinstance(body, str) else "")[:2000], "the body itself is kept aside"


async def test_rate_limit_honours_retry_after_then_succeeds(fresh) -> None:
    limited = (429, {"code": 429, "message": "slow down"}, {"Retry-After": "1.2"})
    fresh.script.extend([limited, limited])
    started = time.monotonic()
    async with AIFaceSwapClient("k", base_url=fresh.url, max_retries=2) as client:
        result = await client.faceswap(URL, URL, webhook=HOOK)
    assert result.task_id == "abc"
    assert len(fresh.seen) == 3
    assert time.monotonic() - started >= 2.4, "waited as told (its own backoff would be 0.5 + 1 s)"


async def test_rate_limit_gives_up_after_max_retries(fresh) -> None:
    fresh.script.extend([(429, {"code": 429, "message": "slow"}, {"Retry-After": "0"})] * 3)
    async with AIFaceSwapClient("k", base_url=fresh.url, max_retries=1) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.faceswap(URL, URL, webhook=HOOK)
    assert caught.value.retry_after == 0 and caught.value.retryable
    assert len(fresh.seen) == 2


async def test_lost_answer_is_not_retried(fresh) -> None:
    fresh.delay = 1.0
    async with AIFaceSwapClient("k", base_url=fresh.url, timeout=0.2) as client:
        with pytest.raises(ResponseLostError) as caught:
            await client.faceswap(URL, URL, webhook=HOOK)
    assert caught.value.outcome_unknown and not caught.value.retryable
    assert len(fresh.seen) == 1


async def test_connection_refused_is_retried_then_raised() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AIFaceSwapClient("k", base_url=f"http://127.0.0.1:{port}", max_retries=1) as client:
        with pytest.raises(ConnectionFailedError) as caught:
            await client.extract_face(URL)
    assert caught.value.retryable


async def test_invalid_input_is_refused_before_sending(fresh) -> None:
    async with AIFaceSwapClient("k", base_url=fresh.url) as client:
        with pytest.raises(InputValidationError, match="index"):
            await client.multi_faceswap(URL, [URL], [0, 1], webhook=HOOK)
        with pytest.raises(InputValidationError, match="enhance"):
            await client.video_faceswap(URL, URL, 3.0, enhance=5, webhook=HOOK)
        with pytest.raises(InputValidationError, match="no such file"):
            await client.faceswap(Path("/nonexistent/a.jpg"), URL, webhook=HOOK)
    assert fresh.seen == []


def test_client_needs_a_key() -> None:
    with pytest.raises(ValueError, match="api_key"):
        AIFaceSwapClient("")


async def test_shared_http_client_is_not_closed(fresh) -> None:
    async with httpx.AsyncClient() as http:
        async with AIFaceSwapClient("k", base_url=fresh.url, http_client=http) as client:
            await client.faceswap(URL, URL, webhook=HOOK)
        assert not http.is_closed


async def test_every_paid_call_goes_over_a_new_connection(fresh) -> None:
    """A kept-alive connection the server closes as idle just as a call is sent makes the call's outcome unknown
    (and the job is not sent again): paid calls never reuse one, pooled or not, while downloads still do."""
    async with AIFaceSwapClient("k", base_url=fresh.url) as client:
        for _ in range(3):
            await client.faceswap(URL, URL, webhook=HOOK)
    credentials = AIFaceSwapCredentials(api_key="k", base_url=fresh.url)
    async with credentials.get_client(pooled=True) as client:
        for _ in range(3):
            await client.faceswap(URL, URL, webhook=HOOK)
    connections = [record["connection"] for record in fresh.seen]
    assert len(connections) == 6 and len(set(connections)) == 6, connections

    reused = shared_http_client()
    ports = set()
    for _ in range(3):
        response = await reused.post(f"{fresh.url}/api/aifaceswap/v1/faceswap", json={})
        assert response.status_code == 200
        ports.add(fresh.seen[-1]["connection"])
    assert len(ports) == 1, "the shared client for downloads keeps its connection"


async def test_download_lanes_lend_one_kept_alive_connection_each(fresh) -> None:
    """Result downloads go through lanes of one connection each: at most DOWNLOAD_LANES requests at once, each
    lane's connection kept for its next request, never more than one connection in a lane's pool (a pool of many
    checks each of them at every request: ~9% of a sweep's CPU)."""
    fresh.delay = 0.02
    lanes = shared_download_lanes()
    assert shared_download_lanes() is lanes, "one set of lanes per event loop"
    in_flight = most = 0
    pools: list[int] = []

    async def one() -> None:
        nonlocal in_flight, most
        async with lanes.lane() as http:
            in_flight += 1
            most = max(most, in_flight)
            response = await http.post(f"{fresh.url}/api/aifaceswap/v1/faceswap", json={})
            pools.append(len(http._transport._pool.connections))  # httpcore's pool, as httpx builds it
            in_flight -= 1
        assert response.status_code == 200

    await asyncio.gather(*(one() for _ in range(5 * DOWNLOAD_LANES)))
    connections = {record["connection"] for record in fresh.seen}
    assert len(fresh.seen) == 5 * DOWNLOAD_LANES
    assert most == DOWNLOAD_LANES, f"{most} requests at once through {DOWNLOAD_LANES} lanes"
    assert len(connections) == DOWNLOAD_LANES, f"{len(connections)} connections: each lane keeps its own"
    assert set(pools) == {1}, f"connections in a lane's pool: {sorted(set(pools))}"


def test_lanes_refuse_a_count_below_one() -> None:
    with pytest.raises(ValueError, match=r"^count: 0 lanes; give at least 1$"):
        ClientLanes(0)
