"""The sandbox over real HTTP: every endpoint, its errors, credits, webhooks with retries, and fault switches."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from faceswap_flows.aifaceswap import (
    AIFaceSwapClient,
    AuthenticationError,
    InsufficientCreditsError,
    InvalidRequestError,
    RateLimitedError,
    ResponseLostError,
    ServerError,
)
from faceswap_flows.aifaceswap.sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.media import likeness, read_image
from tests.vision import photos

KEY = "sandbox-test-key"
POOR = "poor-key"
API = "/api/aifaceswap/v1"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(keys={KEY: 100_000, POOR: 1}, webhook_backoff_seconds=0.05, result_ttl_seconds=600)
    with SandboxServer(config) as server:
        yield server


@pytest.fixture(autouse=True)
def no_faults(sandbox: SandboxServer) -> Iterator[None]:
    yield
    sandbox.sandbox.set_faults(FaultConfig())


def url(media: tuple[str, dict[str, Path]], name: str) -> str:
    base, files = media
    return f"{base}/{files[name].name}"


def spent(sandbox: SandboxServer, key: str = KEY) -> int:
    return int(sandbox.ledger(key)["spent"])


@pytest.fixture
async def client(sandbox: SandboxServer) -> AIFaceSwapClient:
    async with AIFaceSwapClient(KEY, base_url=sandbox.url, max_retries=0) as client:
        yield client


async def test_extract_face_boxes_left_to_right_and_charged(sandbox, client, media) -> None:
    before = spent(sandbox)
    found = await client.extract_face(url(media, "group"))
    _, truth = photos.tiled()
    assert len(found.faces) == 3
    assert [b.x1 for b in found.faces] == sorted(b.x1 for b in found.faces)
    for box, expected in zip(found.faces, truth, strict=True):
        assert photos.iou(box.as_tuple(), expected) >= 0.5
    assert found.points == 2 and spent(sandbox) == before + 2


async def test_extract_face_finds_nothing_on_a_cat(client, media) -> None:
    assert (await client.extract_face(url(media, "cat"))).faces == []


async def test_extract_face_accepts_a_file_upload(client, media) -> None:
    found = await client.extract_face(media[1]["astronaut"])
    assert len(found.faces) == 1
    assert photos.iou(found.faces[0].as_tuple(), photos.ASTRONAUT_FACE) >= 0.5


async def test_extract_base64_face(client, media) -> None:
    found = await client.extract_base64_face(media[1]["grace"].read_bytes())
    assert len(found.pos) == 1 and photos.iou(found.pos[0].as_tuple(), photos.GRACE_FACE) >= 0.5


async def test_faceswap_really_swaps_and_calls_back(sandbox, client, media, catcher) -> None:
    before = spent(sandbox)
    submitted = await client.faceswap(url(media, "astronaut"), url(media, "grace"), webhook=catcher.hook("swap"))
    assert submitted.points == 2 and len(submitted.task_id) == 32
    callback = catcher.wait_for(submitted.task_id)[0]
    assert callback["success"] == 1 and callback["type"] == 1
    result = read_image(httpx.get(callback["result_image"]).content)
    source, new_face = photos.astronaut(), photos.grace_hopper()
    assert result.shape == source.shape
    face = photos.ASTRONAUT_FACE
    to_new, to_old = likeness(result, new_face), likeness(result, source)
    assert to_new > to_old, f"the face should look like the new face ({to_new:.2f} vs old {to_old:.2f})"
    assert to_old < 0.8, "the face must have changed"
    untouched = np.ones(source.shape[:2], bool)
    untouched[: face[3] + 150, max(0, face[0] - 120) : face[2] + 120] = False
    assert np.array_equal(result[untouched], source[untouched]), "pixels far from the face must not change"
    assert spent(sandbox) == before + 2


async def test_faceswap_with_uploaded_files(client, media, catcher) -> None:
    submitted = await client.faceswap(media[1]["astronaut"], media[1]["grace"], webhook=catcher.hook("files"))
    assert catcher.wait_for(submitted.task_id)[0]["success"] == 1


async def test_multi_faceswap_replaces_only_the_indexed_faces(client, media, catcher) -> None:
    submitted = await client.multi_faceswap(
        url(media, "group"), [url(media, "grace")], [2], webhook=catcher.hook("multi")
    )
    callback = catcher.wait_for(submitted.task_id)[0]
    assert callback["type"] == 2 and callback["success"] == 1
    result = read_image(httpx.get(callback["result_image"]).content)
    group, boxes = photos.tiled()
    x1, y1, x2, y2 = boxes[0]
    assert np.array_equal(result[y1:y2, x1:x2], group[y1:y2, x1:x2]), "face 0 was not asked for"
    x1, y1, x2, y2 = boxes[2]
    assert np.abs(result[y1:y2, x1:x2].astype(int) - group[y1:y2, x1:x2]).mean() > 5


async def test_multi_faceswap_index_out_of_range_charges_nothing(sandbox, client, media, catcher) -> None:
    before = spent(sandbox)
    with pytest.raises(InvalidRequestError, match=r"index\[0\].*3 face"):
        await client.multi_faceswap(url(media, "group"), [url(media, "grace")], [5], webhook=catcher.hook("x"))
    assert spent(sandbox) == before


async def test_no_face_in_face_image_is_a_failed_job_refunded(sandbox, client, media, catcher) -> None:
    before = spent(sandbox)
    submitted = await client.faceswap(url(media, "astronaut"), url(media, "cat"), webhook=catcher.hook("noface"))
    callback = catcher.wait_for(submitted.task_id)[0]
    assert callback["success"] == 0 and "result_image" not in callback
    sandbox.wait_idle()
    assert spent(sandbox) == before, "failed jobs are refunded"
    kinds = [e["kind"] for e in sandbox.ledger(KEY)["entries"] if e["task_id"] == submitted.task_id]
    assert kinds == ["charge", "refund"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer nope"}, "invalid API key"),
        ({"Authorization": "Basic abc"}, "missing API key"),
    ],
)
def test_authentication_errors(sandbox, headers, message) -> None:
    response = httpx.post(f"{sandbox.url}{API}/extract_face", json={"img": "https://x/y.png"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == 401 and message in response.json()["message"]


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        ("faceswap", b"{not json", "not valid JSON"),
        ("faceswap", b"[1, 2]", "JSON object"),
        (
            "faceswap",
            b'{"source_image": "x.jpg", "face_image": "https://a/b.png", "webhook": "https://h"}',
            "source_image: must be an absolute http(s) URL",
        ),
        ("multi_video_faceswap", None, "ref_info: takes 1 to 3 faces"),
        (
            "video_faceswap",
            b'{"source_video": "https://a/v.mp4", "face_image": "https://a/b.png", "duration": 2, '
            b'"enhance": 3, "webhook": "https://h"}',
            "enhance",
        ),
    ],
)
def test_malformed_bodies_are_refused_with_the_field(sandbox, endpoint, body, message) -> None:
    if body is None:
        png = base64.b64encode(photos_png()).decode()
        ref = {"face_ref": png, "face_url": "https://a/b.png"}
        body = httpx.Request(
            "POST",
            "/",
            json={"source_video": "https://a/v.mp4", "ref_info": [ref] * 4, "duration": 2, "webhook": "https://h"},
        ).content
    before = spent(sandbox)
    response = httpx.post(
        f"{sandbox.url}{API}/{endpoint}",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["code"] == 400
    assert message in response.json()["message"]
    assert spent(sandbox) == before


def photos_png() -> bytes:
    import cv2

    return cv2.imencode(".png", photos.astronaut()[150:200, 150:200])[1].tobytes()


@pytest.mark.parametrize(
    ("source", "face", "message"),
    [
        ("http://127.0.0.1:9/missing.png", "grace", "could not fetch"),
        ("note", "grace", "not an image"),
        ("astronaut", "missing", "HTTP 404"),
        ("empty", "grace", "empty"),
    ],
)
async def test_bad_inputs_are_refused_and_free(sandbox, client, media, catcher, source, face, message) -> None:
    def resolve(name: str) -> str:
        return (
            name
            if name.startswith("http")
            else (f"{media[0]}/nothing-here.png" if name == "missing" else url(media, name))
        )

    before = spent(sandbox)
    with pytest.raises(InvalidRequestError, match=message):
        await client.faceswap(resolve(source), resolve(face), webhook=catcher.hook("bad"))
    assert spent(sandbox) == before


async def test_insufficient_credits_charge_nothing(sandbox, media, catcher) -> None:
    async with AIFaceSwapClient(POOR, base_url=sandbox.url) as poor:
        with pytest.raises(InsufficientCreditsError, match="costs 2 and the balance is 1"):
            await poor.faceswap(url(media, "astronaut"), url(media, "grace"), webhook=catcher.hook("poor"))
    assert sandbox.ledger(POOR)["balance"] == 1 and sandbox.ledger(POOR)["entries"] == []


async def test_webhook_delivery_is_retried(sandbox, client, media, catcher) -> None:
    catcher.refuse_next = 2
    submitted = await client.faceswap(url(media, "astronaut"), url(media, "grace"), webhook=catcher.hook("retry"))
    assert catcher.wait_for(submitted.task_id)[0]["success"] == 1
    sandbox.wait_idle()
    attempts = [d for d in sandbox.sandbox.webhooks.deliveries if d.task_id == submitted.task_id]
    assert [d.status for d in attempts] == [500, 500, 200]


async def test_fault_switches(sandbox, client, media, catcher) -> None:
    swap = (url(media, "astronaut"), url(media, "grace"))
    sandbox.sandbox.set_faults(FaultConfig(fail_rate=1.0))
    failed = await client.faceswap(*swap, webhook=catcher.hook("fail"))
    assert catcher.wait_for(failed.task_id)[0]["success"] == 0

    sandbox.sandbox.set_faults(FaultConfig(duplicate_webhook_rate=1.0))
    twice = await client.faceswap(*swap, webhook=catcher.hook("dup"))
    assert len(catcher.wait_for(twice.task_id, count=2)) == 2

    sandbox.sandbox.set_faults(FaultConfig(drop_webhook_rate=1.0))
    dropped = await client.faceswap(*swap, webhook=catcher.hook("drop"))
    sandbox.wait_idle()
    assert catcher.callbacks(dropped.task_id) == []
    assert sandbox.sandbox.runner.jobs[dropped.task_id].status == "succeeded"

    sandbox.sandbox.set_faults(FaultConfig(delay_webhook_rate=1.0, delay_webhook_seconds=1.0))
    delayed = await client.faceswap(*swap, webhook=catcher.hook("delay"))
    callback = catcher.wait_for(delayed.task_id)[0]
    sandbox.wait_idle()
    finished_at = sandbox.sandbox.runner.jobs[delayed.task_id].finished_at
    delivered = next(d.at for d in sandbox.sandbox.webhooks.deliveries if d.task_id == delayed.task_id)
    assert callback["success"] == 1 and delivered - finished_at >= 0.9

    before = spent(sandbox)
    sandbox.sandbox.set_faults(FaultConfig(server_error_rate=1.0))
    with pytest.raises(ServerError):
        await client.faceswap(*swap, webhook=catcher.hook("5xx"))
    sandbox.sandbox.set_faults(FaultConfig(rate_limit_rate=1.0, retry_after_seconds=7))
    with pytest.raises(RateLimitedError) as limited:
        await client.faceswap(*swap, webhook=catcher.hook("429"))
    assert limited.value.retry_after == 7
    assert spent(sandbox) == before, "refused calls charge nothing"


@pytest.mark.parametrize(
    ("switch", "error", "says"),
    [
        ("error_after_accept_rate", ServerError, "after accepting"),
        ("bad_gateway_after_accept_rate", ServerError, "502 Bad Gateway"),
        ("close_after_accept_rate", ResponseLostError, "no answer came back"),
    ],
)
async def test_ambiguous_answers_after_accepting(sandbox, client, media, catcher, switch, error, says) -> None:
    """Each fault answers a call the sandbox accepted and charged: the job runs and calls back, and the client
    reports an unknown outcome (never a refusal); switched over HTTP, as at run time."""
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.put(f"{sandbox.url}/sandbox/faults", json={switch: 1.0}, headers=auth).status_code == 200
    before, jobs = spent(sandbox), set(sandbox.sandbox.runner.jobs)
    with pytest.raises(error, match=says) as caught:
        await client.faceswap(url(media, "astronaut"), url(media, "grace"), webhook=catcher.hook(switch))
    assert caught.value.outcome_unknown and not caught.value.retryable
    (task_id,) = set(sandbox.sandbox.runner.jobs) - jobs
    assert spent(sandbox) == before + 2, "accepted and charged"
    assert catcher.wait_for(task_id)[0]["success"] == 1, "the job ran and called back"
    with pytest.raises(error):
        await client.extract_face(url(media, "astronaut"))
    assert spent(sandbox) == before + 4, "a synchronous paid call is charged too"


def test_faults_can_be_switched_over_http(sandbox) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    response = httpx.put(f"{sandbox.url}/sandbox/faults", json={"fail_rate": 0.5, "seed": 3}, headers=auth)
    assert response.status_code == 200 and sandbox.sandbox.dice.config.fail_rate == 0.5
    bad = httpx.put(f"{sandbox.url}/sandbox/faults", json={"fail_rate": 2}, headers=auth)
    assert bad.status_code == 400 and "fail_rate" in bad.json()["message"]


def test_results_expire(media, catcher) -> None:
    config = SandboxConfig(keys={KEY: 10}, result_ttl_seconds=0.5)
    with SandboxServer(config) as short:
        response = httpx.post(
            f"{short.url}{API}/faceswap",
            json={
                "source_image": url(media, "astronaut"),
                "face_image": url(media, "grace"),
                "webhook": catcher.hook("ttl"),
            },
            headers={"Authorization": f"Bearer {KEY}"},
        )
        task_id = response.json()["data"]["task_id"]
        result_url = catcher.wait_for(task_id)[0]["result_image"]
        import time

        time.sleep(0.7)
        expired = httpx.get(result_url)
        assert expired.status_code == 404 and "expired" in expired.json()["message"]


def test_ledger_over_http(sandbox) -> None:
    response = httpx.get(f"{sandbox.url}/sandbox/ledger", headers={"Authorization": f"Bearer {POOR}"})
    assert response.json()["data"]["balance"] == 1


async def test_auth_error_through_the_client(sandbox) -> None:
    async with AIFaceSwapClient("wrong", base_url=sandbox.url) as client:
        with pytest.raises(AuthenticationError):
            await client.extract_face("https://x/y.png")
