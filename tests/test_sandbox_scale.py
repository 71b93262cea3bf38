"""The sandbox's load-test switches: callbacks held and released all at once (bounded concurrency), and the
content-addressed result cache (identical requests reuse the first swap's result bytes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faceswap_flows.aifaceswap import AIFaceSwapClient
from faceswap_flows.aifaceswap.sandbox import SandboxConfig, SandboxServer
from faceswap_flows.aifaceswap.sandbox.admin import callback_status, hold_callbacks, release_callbacks
from faceswap_flows.aifaceswap.sandbox.cache import cache_key
from tests.media import read_image

KEY = "scale-test-key"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(keys={KEY: 100_000}, result_cache=True, webhook_backoff_seconds=0.05)
    with SandboxServer(config) as server:
        yield server


def url(media: tuple[str, dict[str, Path]], name: str) -> str:
    base, files = media
    return f"{base}/{files[name].name}"


@pytest.fixture
async def client(sandbox: SandboxServer) -> AIFaceSwapClient:
    async with AIFaceSwapClient(KEY, base_url=sandbox.url, max_retries=0) as client:
        yield client


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


async def test_held_callbacks_wait_for_the_release_then_all_arrive(sandbox, client, media, catcher) -> None:
    assert hold_callbacks(sandbox.url, KEY)["hold"] is True
    try:
        swap = (url(media, "astronaut"), url(media, "grace"))
        submitted = [await client.faceswap(*swap, webhook=catcher.hook("held")) for _ in range(6)]
        jobs = sandbox.sandbox.runner.jobs
        wait_until(lambda: all(jobs[s.task_id].status == "succeeded" for s in submitted))
        wait_until(lambda: callback_status(sandbox.url, KEY)["held"] == 6)
        time.sleep(0.3)
        assert all(catcher.callbacks(s.task_id) == [] for s in submitted), "held callbacks are not sent"
        catcher.answer_after, catcher.most_in_flight, catcher.peers = 0.2, 0, []
    finally:
        released = release_callbacks(sandbox.url, KEY, concurrency=2)
    assert released["held"] == 6 and released["hold"] is False
    for job in submitted:
        assert catcher.wait_for(job.task_id)[0]["success"] == 1
    assert catcher.most_in_flight == 2, "released 2 at once"
    assert len(set(catcher.peers)) == 2, f"each of the 2 lanes keeps its connection: {catcher.peers}"
    status = callback_status(sandbox.url, KEY)
    assert status["held"] == 0 and status["delivered"] >= 6


async def test_a_paced_release_delivers_the_held_callbacks_at_the_rate_asked(sandbox, client, media, catcher) -> None:
    hold_callbacks(sandbox.url, KEY)
    try:
        swap = (url(media, "astronaut"), url(media, "grace"))
        submitted = [await client.faceswap(*swap, webhook=catcher.hook("paced")) for _ in range(6)]
        wait_until(lambda: callback_status(sandbox.url, KEY)["held"] == 6)
    finally:
        released_at = time.monotonic()
        release_callbacks(sandbox.url, KEY, concurrency=6, per_second=4)
    time.sleep(0.6)
    arrived_early = sum(1 for job in submitted if catcher.callbacks(job.task_id))
    for job in submitted:
        catcher.wait_for(job.task_id)
    took = time.monotonic() - released_at
    assert 1 <= arrived_early <= 3, f"4 a second: {arrived_early} arrived in the first 0.6 s"
    assert took >= 1.4, f"6 callbacks at 4 a second take 1.5 s, not {took:.2f} s"


async def test_the_status_names_the_callbacks_sent_again_after_a_failed_delivery(
    sandbox, client, media, catcher
) -> None:
    swap = (url(media, "astronaut"), url(media, "grace"))
    first = await client.faceswap(*swap, webhook=catcher.hook("answered"))
    catcher.wait_for(first.task_id)
    catcher.refuse_next = 1
    refused_once = await client.faceswap(*swap, webhook=catcher.hook("refused-once"))
    assert catcher.wait_for(refused_once.task_id)[0]["success"] == 1
    retried = callback_status(sandbox.url, KEY)["retried"]
    assert refused_once.task_id in retried and first.task_id not in retried


async def test_callbacks_flow_again_after_a_release(sandbox, client, media, catcher) -> None:
    assert callback_status(sandbox.url, KEY)["hold"] is False
    job = await client.faceswap(url(media, "grace"), url(media, "astronaut"), webhook=catcher.hook("free"))
    assert catcher.wait_for(job.task_id)[0]["success"] == 1


def test_callbacks_route_checks_key_and_body(sandbox) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{sandbox.url}/sandbox/callbacks").status_code == 401
    bad = httpx.put(f"{sandbox.url}/sandbox/callbacks", json={"hold": "yes"}, headers=auth)
    assert bad.status_code == 400 and "hold" in bad.json()["message"]
    bad = httpx.put(f"{sandbox.url}/sandbox/callbacks", json={"hold": False, "concurrency": 0}, headers=auth)
    assert bad.status_code == 400


async def test_identical_requests_share_one_swap(sandbox, client, media, catcher) -> None:
    cache = sandbox.sandbox.cache
    before = cache.stats()
    swap = (url(media, "astronaut"), url(media, "grace"))
    first, second = [await client.faceswap(*swap, webhook=catcher.hook("cache")) for _ in range(2)]
    other = await client.faceswap(url(media, "grace"), url(media, "astronaut"), webhook=catcher.hook("cache"))
    results = []
    async with httpx.AsyncClient() as http:
        for job in (first, second, other):
            callback = catcher.wait_for(job.task_id)[0]
            assert callback["success"] == 1
            results.append((await http.get(callback["result_image"])).content)
    assert first.task_id != second.task_id and results[0] == results[1], "a hit reuses the first result's bytes"
    assert results[2] != results[0], "other inputs are another key"
    read_image(results[0])
    after = cache.stats()
    assert after["hits"] - before["hits"] >= 1
    assert callback_status(sandbox.url, KEY)["cache"]["entries"] == after["entries"]


async def test_cache_keeps_charges_and_failures_per_job(sandbox, client, media, catcher) -> None:
    spent = int(sandbox.ledger(KEY)["spent"])
    no_face = (url(media, "cat"), url(media, "grace"))
    jobs = [await client.faceswap(*no_face, webhook=catcher.hook("noface")) for _ in range(2)]
    for job in jobs:
        assert catcher.wait_for(job.task_id)[0]["success"] == 0, "the same inputs fail the same way"
    sandbox.wait_idle()
    assert int(sandbox.ledger(KEY)["spent"]) == spent, "failed jobs are refunded, cached or not"


def test_cache_key_names_inputs_and_options() -> None:
    assert cache_key("faceswap", [b"a", b"b"]) == cache_key("faceswap", [b"a", b"b"], {})
    assert cache_key("faceswap", [b"a", b"b"]) != cache_key("faceswap", [b"b", b"a"])
    assert cache_key("multi_faceswap", [b"a"], {"index": [0]}) != cache_key("multi_faceswap", [b"a"], {"index": [1]})


def test_cache_is_off_by_default(media, catcher) -> None:
    with SandboxServer(SandboxConfig(keys={KEY: 10})) as plain:
        assert plain.sandbox.cache is None
        assert callback_status(plain.url, KEY) == {"hold": False, "held": 0, "delivered": 0, "retried": []}
