"""Issue 21.5, the fuzz drill: thousands of hostile requests (seeded, bounded in count and time, loopback only)
against the receiver, the sandbox and the media server. Each is judged: no 5xx, no dropped connection, a refusal
in the server's own JSON shape; the requests are counted where they arrive (a middleware in each app), and in the
end nothing is kept, emitted, charged or leaked (receiver inbox and emitters, sandbox ledger and jobs, a canary
file next to the media folder)."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceswap_flows.aifaceswap.http_server import BackgroundServer
from faceswap_flows.aifaceswap.sandbox import SandboxConfig, SandboxServer
from faceswap_flows.devstack.media_server import media_app
from faceswap_flows.receiver import JobToken, ReceiverServer, sign

pytestmark = pytest.mark.drill

SEED = 21
PER_SERVER = {"receiver": 5000, "sandbox": 5000, "media": 3000}
RAW_PER_SERVER = 100
UVICORN_REFUSAL = b"Invalid HTTP request received."  # uvicorn's answer to bytes that are no HTTP request
# uvicorn (h11) refuses a request head larger than this before reading all of it: it answers 400 and closes with the
# rest unread, so the kernel resets the connection and the client may lose the answer (a timing race, seen in CI).
HEAD_LIMIT = 16 * 1024
ENDPOINTS = [
    "faceswap",
    "extract_face",
    "multi_faceswap",
    "video_faceswap",
    "extract_base64_face",
    "multi_video_faceswap",
]
KEY = "drill-key"
SECRET = "drill-secret"
CANARY = "canary-outside-the-media-folder-7f3a"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "text/plain",
    "application/json; charset=latin-1",
    "image/png",
    "",
]


def _junk(rng: random.Random, size: int) -> str:
    alphabet = "abc.-_~/%?#&=;:@!$'()*+, \\\x00\x7f\u00e9\u6f22\U0001f600\ufffd\u202e"
    return "".join(rng.choice(alphabet) for _ in range(size))


def _segment(rng: random.Random) -> str:
    kind = rng.randrange(7)
    if kind == 0:
        return quote(rng.randbytes(rng.randrange(1, 40)), safe="")
    if kind == 1:
        return quote(_junk(rng, rng.randrange(1, 60)).encode("utf-8", "surrogatepass"), safe="")
    if kind == 2:
        return rng.choice(["..", "%2e%2e", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%5c", ".", "%00", "~"])
    if kind == 3:
        return "x" * rng.choice([200, 2000, 7000])
    if kind == 4:
        return f"{quote(rng.randbytes(30), safe='')}.{quote(rng.randbytes(30), safe='')}"
    if kind == 5:
        forged = sign(JobToken(job_id=rng.randbytes(8).hex(), operation="faceswap"), "not-the-secret")
        return forged if rng.random() < 0.5 else forged[: rng.randrange(1, len(forged))]
    return rng.choice(["callbacks", "tasks", "jobs", "results", "sandbox", "api", "health", "openapi.json"])


def _json_body(rng: random.Random) -> bytes:
    unreachable = "http://127.0.0.1:9/x.png"
    value = rng.choice(
        [
            {"source_image": unreachable, "face_image": unreachable, "webhook": unreachable},
            {"img": unreachable},
            {"base64_img": "iVBORw0KGgo" * rng.randrange(1, 50)},
            {"source_video": unreachable, "face_image": unreachable, "duration": rng.choice([1e308, -1, "NaN"])},
            {"source_image": unreachable, "face_image": [unreachable], "index": [rng.randrange(-5, 5)] * 2},
            {"hold": rng.choice([1, "true", None]), "concurrency": rng.choice([10**12, -1, 0.5, "64"])},
            {"success": rng.choice([2, "1", None]), "type": {"a": 1}, "task_id": [1, 2], "result_image": 7},
            {"fail_rate": 2, "server_error_rate": "1"},
            [1, 2, 3],
            "text",
            None,
        ]
    )
    text = json.dumps(value)
    mutation = rng.randrange(5)
    if mutation == 0:
        text = text[: rng.randrange(len(text) + 1)]
    elif mutation == 1:
        text = "[" * rng.choice([100, 5000, 60000])
    elif mutation == 2:
        text = text.replace("1", "Infinity", 1).replace("2", "NaN", 1)
    return text.encode()


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return _json_body(rng)
    if kind == 1:
        return rng.randbytes(rng.randrange(0, 3000))
    if kind == 2:
        return b'--xyz\r\nContent-Disposition: form-data; name="img"; filename="a"\r\n\r\n' + rng.randbytes(50)
    return f"success={_junk(rng, 5)}&task_id={_junk(rng, 10)}&%ZZ=%%".encode("utf-8", "surrogatepass")


def _headers(rng: random.Random, auth: str) -> dict[str, bytes]:
    headers = {"Content-Type": rng.choice(CONTENT_TYPES).encode()}
    choice = rng.randrange(6)
    if choice in (0, 3):
        headers["Authorization"] = f"Bearer {auth}".encode()
    elif choice == 1:
        headers["Authorization"] = b"Bearer " + bytes(rng.randrange(0x80, 0x100) for _ in range(12))
    elif choice == 2:
        headers["Authorization"] = rng.choice([b"Basic Zm9vOmJhcg==", b"Bearer", b"bearer  x", b"Token x"])
    if rng.random() < 0.2:
        headers["Range"] = rng.choice([b"bytes=0-0", b"bytes=999999999-", b"bytes=abc", b"bytes=5-1", b"bytes=0-1,2-3"])
    return headers


def _request(rng: random.Random, targets: list[str], auth: str) -> tuple[str, str, dict[str, bytes], bytes]:
    """Mostly a real route with its own method and a hostile part; else anything anywhere."""
    if rng.random() < 0.7:
        method, template = rng.choice(targets).split(" ", 1)
        path = template.replace("{seg}", _segment(rng) or "x")
    else:
        method = rng.choice(METHODS)
        base = rng.choice(targets).split(" ", 1)[1].split("{", 1)[0]
        path = base + "/".join(_segment(rng) for _ in range(rng.randrange(0, 3)))
    if rng.random() < 0.3:
        path += "?" + "&".join(f"{_segment(rng)}={_segment(rng)}" for _ in range(rng.randrange(1, 4)))
    body = _body(rng) if method in ("POST", "PUT", "PATCH") else b""
    return method, path, _headers(rng, auth), body


def _raw_garbage(rng: random.Random) -> bytes:
    return rng.choice(
        [
            rng.randbytes(rng.randrange(1, 500)) + b"\r\n\r\n",
            b"GET /" + rng.randbytes(20) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /callbacks/x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /callbacks/x HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n",
            b"POST /callbacks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
        ]
    )


def _raw_answer(port: int, data: bytes) -> tuple[bytes, bool]:
    """The server's whole answer to ``data`` (b"" when it closed the connection without one), and whether the
    connection was reset. The write side is left open: a client that half-closes is taken for gone by uvicorn,
    which then drops the answer."""
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(data)
            while not _complete(answer) and (chunk := sock.recv(65536)):
                answer += chunk
    except ConnectionResetError:
        return answer, True
    return answer, False


def _complete(answer: bytes) -> bool:
    head, blank, body = answer.partition(b"\r\n\r\n")
    if not blank:
        return False
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return len(body) >= int(lengths[0]) if lengths else False


class Tally:
    """ASGI middleware counting, on the server's side, the requests its app received and the answers it started."""

    def __init__(self, app: ASGIApp, counts: Counter, name: str) -> None:
        self.app, self.counts, self.name = app, counts, name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.counts[f"{self.name} received"] += 1

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts[f"{self.name} answered"] += 1
            await send(message)

        await self.app(scope, receive, answering)


def _refusal_shape(name: str, status: int, body: bytes) -> None:
    """A refusal in the server's own JSON shape: the receiver's ``{"status": "refused", "error": ...}``, the
    sandbox's API envelope with ``code`` equal to the HTTP status; the media server is a plain file server."""
    if name == "media":
        return
    answer = json.loads(body)
    if name == "receiver":
        assert answer["status"] == "refused" and isinstance(answer["error"], str) and answer["error"], answer
    else:
        assert set(answer) == {"code", "data", "extra_data", "message"} and answer["code"] == status, answer
        assert isinstance(answer["message"], str) and answer["message"], answer


def _judge_raw(name: str, port: int, garbage: bytes, tally: Counter, served: Counter) -> None:
    """A malformed message gets an answer, never a 5xx: uvicorn's plain 400 for what is no HTTP request (or whose
    body breaks the protocol), else the app's own, in its JSON shape (the app then counted the request)."""
    before = served[f"{name} received"]
    answer, reset = _raw_answer(port, garbage)
    if reset and not answer.startswith(b"HTTP/1.1 "):
        head = garbage.partition(b"\r\n\r\n")[0]
        assert len(head) > HEAD_LIMIT, f"{name}: {garbage[:80]!r} -> connection reset without an answer"
        assert served[f"{name} received"] == before, f"{name}: an app saw a request over the head limit"
        tally[f"{name} raw over the head limit, reset"] += 1
        tally[f"{name} raw judged"] += 1
        return
    assert answer.startswith(b"HTTP/1.1 "), f"{name}: {garbage[:80]!r} -> no answer, the connection dropped"
    status, (head, _, body) = int(answer[9:12]), answer.partition(b"\r\n\r\n")
    assert status < 500, f"{name}: malformed HTTP {garbage[:80]!r} -> {answer[:80]!r}"
    if UVICORN_REFUSAL in body and b"text/plain" in head:
        assert status == 400, answer[:80]
        tally[f"{name} raw refused by the HTTP server"] += 1
    else:
        assert served[f"{name} received"] == before + 1, f"{name}: an answer to {garbage[:80]!r} its app never had"
        if status >= 400:
            _refusal_shape(name, status, body)
        tally[f"{name} raw answered by the app"] += 1
    tally[f"{name} raw judged"] += 1


def _drill(name: str, url: str, routes: list[str], auth: str, tally: Counter, served: Counter) -> None:
    rng = random.Random(f"{SEED}-{name}")
    port = int(url.rsplit(":", 1)[1])
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(PER_SERVER[name]):
            method, path, headers, body = _request(rng, routes, auth)
            tally[f"{name} sent"] += 1
            try:
                response = http.request(method, path, headers=headers, content=body)
            except httpx.TransportError as error:
                pytest.fail(f"{name}: {method} {path[:120]!r} dropped the connection ({error!r})")
            where = f"{name}: {method} {path[:120]!r} -> {response.status_code} {response.text[:200]!r}"
            assert response.status_code < 500, where
            assert CANARY not in response.text, f"{where}: leaked a file outside its folder"
            if response.status_code >= 400 and method != "HEAD":
                _refusal_shape(name, response.status_code, response.content)
            tally[f"{name} {response.status_code}"] += 1
            tally[f"{name} judged"] += 1
    received, answered = served[f"{name} received"], served[f"{name} answered"]
    assert received == answered == tally[f"{name} judged"] == PER_SERVER[name], f"{name}: {received} received"
    for _ in range(RAW_PER_SERVER):
        _judge_raw(name, port, _raw_garbage(rng), tally, served)
    assert httpx.get(f"{url}/health" if name != "media" else url).status_code < 500, "still answering"


@pytest.fixture(scope="module")
def servers(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("fuzz-drill")
    (root / "secret.txt").write_text(CANARY)
    (root / "media").mkdir()
    (root / "media" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    config = SandboxConfig(keys={KEY: 1000}, fetch_timeout_seconds=1.0, fetch_total_seconds=2.0)
    receiver, sandbox, media_files = (
        ReceiverServer(root / "inbox.sqlite", SECRET),
        SandboxServer(config),
        media_app(root / "media"),
    )
    served: Counter = Counter()
    for name, app in (("receiver", receiver.app), ("sandbox", sandbox.app), ("media", media_files)):
        app.add_middleware(Tally, counts=served, name=name)
    with receiver, sandbox, BackgroundServer(media_files) as media:  # MediaServer is this app on a BackgroundServer
        yield {"receiver": receiver, "sandbox": sandbox, "media": media, "served": served}


def test_thousands_of_hostile_requests_break_nothing(servers: dict) -> None:
    receiver, sandbox, media, served = servers["receiver"], servers["sandbox"], servers["media"], servers["served"]
    tally: Counter = Counter()
    started = time.monotonic()
    api = [f"POST /api/aifaceswap/v1/{endpoint}" for endpoint in ENDPOINTS]
    plans: list[tuple[str, str, list[str], str]] = [
        (
            "receiver",
            receiver.url,
            ["POST /callbacks/{seg}", "GET /callbacks", "GET /tasks/{seg}", "GET /jobs/{seg}"],
            SECRET,
        ),
        (
            "sandbox",
            sandbox.url,
            [*api, "PUT /sandbox/callbacks", "GET /sandbox/jobs/{seg}", "GET /results/{seg}"],
            KEY,
        ),
        ("media", media.url, ["GET /{seg}", "GET /{seg}/{seg}", "HEAD /{seg}", "GET /a.png"], KEY),
    ]
    for name, url, routes, auth in plans:
        _drill(name, url, routes, auth, tally, served)
    seconds = time.monotonic() - started
    judged = sum(tally[f"{name} judged"] for name in PER_SERVER)
    raw = sum(tally[f"{name} raw judged"] for name in PER_SERVER)
    print(
        f"\nfuzz drill: {judged} requests received and judged + {raw} malformed messages in {seconds:.1f} s; "
        f"served: {dict(sorted(served.items()))}; answers: {dict(sorted(tally.items()))}"
    )
    assert (judged, raw) == (13_000, 300), "the figures of the README's table"

    assert receiver.inbox.counts() == {"received": 0, "pending": 0}, "nothing kept"
    assert receiver.app.state.unparsed.count() == 0
    assert receiver.app.state.emitter.emitted == 0, "nothing emitted"
    ledger = sandbox.ledger(KEY)
    assert (ledger["charged"], ledger["balance"]) == (0, 1000), "nothing charged"
    assert not sandbox.sandbox.runner.jobs and sandbox.sandbox.webhooks.delivered == 0, "no job, no callback"


def test_a_verified_callback_still_works_after_the_drill(servers: dict) -> None:
    """The drill's servers are not left broken: a real callback is still kept (the drill's judge sees it)."""
    receiver: ReceiverServer = servers["receiver"]
    job = JobToken(job_id="drill-after-0001", operation="faceswap")
    answer = httpx.post(
        f"{receiver.url}/callbacks/{sign(job, SECRET)}",
        json={"success": 0, "type": 1, "task_id": "drill-after-task"},
    )
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    assert receiver.inbox.counts()["received"] == 1


@contextlib.contextmanager
def resetting_server() -> Iterator[int]:
    """A loopback TCP server that reads each whole message (up to its blank line), then resets the connection
    without an answer (SO_LINGER 0). Yields its port; stops with the block."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                received = b""
                while b"\r\n\r\n" not in received and (chunk := connection.recv(65536)):
                    received += chunk
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        worker.join(5)
        listener.close()


def test_the_judge_takes_a_reset_only_for_a_head_over_the_limit() -> None:
    """The drill's own rule, broken on purpose by a server that resets everything: a message under the head limit
    reset without an answer fails the judge; one over it is counted as refused by its size."""
    small = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    large = b"GET / HTTP/1.1\r\nX: " + b"a" * (HEAD_LIMIT + 1000) + b"\r\n\r\n"
    with resetting_server() as port:
        assert _raw_answer(port, small) == (b"", True)
        with pytest.raises(AssertionError, match="connection reset without an answer"):
            _judge_raw("receiver", port, small, Counter(), Counter())
        tally: Counter = Counter()
        _judge_raw("receiver", port, large, tally, Counter())
    assert tally == {"receiver raw over the head limit, reset": 1, "receiver raw judged": 1}
