"""Issue 21.1: whatever path, header or body a stranger sends, the receiver answers a refusal in its own JSON
shape (403/404/405/410/413/422, 401 for the listings), never a 5xx or a dropped connection, and keeps nothing.
Hypothesis, seeded and bounded, against a real receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceswap_flows.receiver import JobToken, ReceiverServer, sign
from tests.support import RECEIVER_SECRET

FUZZ = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
REFUSALS = {401, 403, 404, 405, 410, 413, 422}
HEADER_BYTES = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip())


@pytest.fixture(scope="module")
def receiver(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverServer]:
    folder: Path = tmp_path_factory.mktemp("fuzz-receiver")
    with ReceiverServer(folder / "inbox.sqlite", RECEIVER_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:  # kept alive: a dropped connection fails the next request
        yield client


def _refused(response: httpx.Response) -> None:
    assert response.status_code in REFUSALS, (response.status_code, response.text[:300])
    body = response.json()
    assert body["status"] == "refused" and isinstance(body["error"], str) and body["error"]


def test_the_reported_crash_is_a_refusal(receiver: ReceiverServer, http: httpx.Client) -> None:
    for token in ("%E6%BC%A2%00%C3%A9%FF.%E6%BC%A2", "a.%E6%BC%A2%00%C3%A9%FF", "%FF%FE%00", "x" * 10_000 + ".y"):
        _refused(http.post(f"{receiver.url}/callbacks/{token}", content=b"{}"))
    _refused(http.get(f"{receiver.url}/callbacks", headers={"Authorization": "Bearer \xe9\xff".encode("latin-1")}))
    assert receiver.inbox.counts()["received"] == 0


@FUZZ
@given(
    token=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    body=st.binary(max_size=2000),
    content_type=HEADER_BYTES,
)
def test_any_callback_token_is_refused(
    receiver: ReceiverServer, http: httpx.Client, token: bytes, body: bytes, content_type: bytes
) -> None:
    path = quote(token, safe="") or "%2E"
    _refused(http.post(f"{receiver.url}/callbacks/{path}", content=body, headers={"Content-Type": content_type}))
    assert receiver.inbox.counts()["received"] == 0
    assert receiver.app.state.unparsed.count() == 0


@FUZZ
@given(
    payload=st.text(max_size=120),
    tampered=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60),
)
def test_tampered_signatures_are_forged(
    receiver: ReceiverServer, http: httpx.Client, payload: str, tampered: str
) -> None:
    real = sign(JobToken(job_id="0123456789abcdef", operation="faceswap"), RECEIVER_SECRET)
    token = f"{real.partition('.')[0]}.{tampered}"
    response = http.post(f"{receiver.url}/callbacks/{quote(token, safe='')}", content=payload.encode())
    _refused(response)
    assert response.status_code in (403, 404)


@FUZZ
@given(
    route=st.sampled_from(["/callbacks", "/tasks/{x}", "/jobs/{x}"]),
    ident=st.text(max_size=60),
    since=st.one_of(st.text(max_size=30), st.floats().map(str), st.integers().map(str)),
    limit=st.one_of(st.text(max_size=30), st.integers(min_value=-(10**30), max_value=10**30).map(str)),
    authorization=st.one_of(HEADER_BYTES, st.just(f"Bearer {RECEIVER_SECRET}".encode())),
)
def test_the_listings_answer_json_whatever_they_are_asked(
    receiver: ReceiverServer, http: httpx.Client, route: str, ident: str, since: str, limit: str, authorization: bytes
) -> None:
    url = receiver.url + route.replace("{x}", quote(ident.encode("utf-8", "surrogatepass"), safe="") or "%2E")
    response = http.get(url, params={"since": since, "limit": limit}, headers={"Authorization": authorization})
    if response.status_code == 200:
        assert "callbacks" in response.json() or "callback" in response.json()
    else:
        _refused(response)
