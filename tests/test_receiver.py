"""The webhook receiver over HTTP, its Prefect events, and waiting for a callback at every possible moment."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL, temporary_settings

from faceswap_flows.flows.tasks.waiting import (
    CallbackTimeout,
    received_callbacks,
    task_event_filter,
    wait_for_task_callback,
)
from faceswap_flows.receiver import JobToken, sign
from faceswap_flows.receiver.events import Emitter
from faceswap_flows.receiver.inbox import Inbox
from tests.support import RECEIVER_SECRET


def new_job(**extra) -> JobToken:
    return JobToken(job_id=uuid.uuid4().hex, operation="faceswap", **extra)


def callback_body(task_id: str, success: int = 1) -> dict:
    body = {"success": success, "type": 1, "task_id": task_id}
    if success:
        body["result_image"] = f"http://127.0.0.1:9/results/{task_id}.png"
    return body


def deliver(receiver_url: str, job: JobToken, body: dict | bytes, secret: str = RECEIVER_SECRET) -> httpx.Response:
    url = f"{receiver_url}/callbacks/{sign(job, secret)}"
    if isinstance(body, bytes):
        return httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    return httpx.post(url, json=body)


async def stored_events(task_id: str, timeout: float = 20.0, count: int = 1) -> list:
    """The events the API stored for a task, waiting for the persister to flush."""
    deadline = time.monotonic() + timeout
    while True:
        async with get_client() as client:
            page = await client.read_events(filter=task_event_filter(task_id), limit=10)
        if len(page.events) >= count or time.monotonic() > deadline:
            return page.events
        await asyncio.sleep(0.5)


async def test_valid_callback_becomes_an_event_with_the_flow_run(stack) -> None:
    run_id = str(uuid.uuid4())
    job, task_id = new_job(flow_run_id=run_id, result_key="results/x.png", storage_block="media"), uuid.uuid4().hex
    response = deliver(stack.receiver.url, job, callback_body(task_id))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    events = await stored_events(task_id)
    assert len(events) == 1
    event = events[0]
    assert event.event == "aifaceswap.task.succeeded"
    assert event.resource.id == f"aifaceswap.task.{task_id}"
    assert event.payload["result_key"] == "results/x.png" and event.payload["job_id"] == job.job_id
    assert [r.id for r in event.related] == [f"prefect.flow-run.{run_id}"]


async def test_failed_callback_event(stack) -> None:
    task_id = uuid.uuid4().hex
    assert deliver(stack.receiver.url, new_job(), callback_body(task_id, success=0)).status_code == 200
    assert (await stored_events(task_id))[0].event == "aifaceswap.task.failed"


async def test_duplicate_delivery_emits_nothing_new(stack) -> None:
    job, task_id = new_job(), uuid.uuid4().hex
    assert deliver(stack.receiver.url, job, callback_body(task_id)).json()["status"] == "accepted"
    assert deliver(stack.receiver.url, job, callback_body(task_id)).json()["status"] == "duplicate"
    await asyncio.sleep(1.0)
    assert len(await stored_events(task_id, count=2, timeout=8)) == 1
    assert stack.receiver.inbox.get(task_id).deliveries == 2


@pytest.mark.parametrize(
    ("make_url", "body", "status", "message"),
    [
        (lambda url, job: f"{url}/callbacks/{sign(job, 'another-secret')}", None, 403, "forged"),
        (lambda url, job: f"{url}/callbacks/not-a-token", None, 404, "unknown job"),
        (lambda url, job: f"{url}/callbacks/{sign(job, RECEIVER_SECRET)[:-3]}abc", None, 403, "forged"),
        # a verified token's unreadable body: kept raw as unparsed, answered 200 (tests/test_receiver_bodies.py)
        (lambda url, job: f"{url}/callbacks/{sign(job, RECEIVER_SECRET)}", b"{not json", 200, "not JSON"),
        (
            lambda url, job: f"{url}/callbacks/{sign(job, RECEIVER_SECRET)}",
            b'{"success": 1, "type": 1}',
            200,
            "task_id",
        ),
        (lambda url, job: f"{url}/callbacks/{sign(job, RECEIVER_SECRET)}", b"x" * 70_000, 413, "larger"),
    ],
)
def test_bad_callbacks_are_refused_and_emit_nothing(stack, make_url, body, status, message) -> None:
    job, task_id = new_job(), uuid.uuid4().hex
    content = body if body is not None else httpx.Request("POST", "/", json=callback_body(task_id)).content
    response = httpx.post(
        make_url(stack.receiver.url, job), content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status and message in response.json()["error"]
    assert stack.receiver.inbox.get(task_id) is None


def test_expired_token_is_refused(stack) -> None:
    job = new_job(issued_at=int(time.time()) - 8 * 24 * 3600)
    assert deliver(stack.receiver.url, job, callback_body(uuid.uuid4().hex)).status_code == 410


async def test_a_second_task_of_a_job_is_kept_and_reported_as_duplicate_job(stack) -> None:
    """A job sent twice calls back twice: both callbacks are kept (never refused, no result lost), the second
    emits aifaceswap.task.duplicate-job with both task_ids and the credits at stake, and a wait by job takes the
    first successful one."""
    job = new_job(flow_run_id=str(uuid.uuid4()), credits=5)
    failed, succeeded = uuid.uuid4().hex, uuid.uuid4().hex
    assert deliver(stack.receiver.url, job, callback_body(failed, success=0)).json()["status"] == "accepted"
    second = deliver(stack.receiver.url, job, callback_body(succeeded))
    assert second.status_code == 200 and second.json()["status"] == "duplicate-job"
    assert stack.receiver.inbox.get(succeeded).first_task_id == failed
    by_job = httpx.get(
        f"{stack.receiver.url}/jobs/{job.job_id}", headers={"Authorization": f"Bearer {RECEIVER_SECRET}"}
    )
    assert by_job.json()["callback"]["task_id"] == succeeded, "the job's first successful callback"
    deadline = time.monotonic() + 20
    while True:
        async with get_client() as client:
            page = await client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=["aifaceswap.task.duplicate-job"]),
                    resource=EventResourceFilter(id=[f"aifaceswap.task.{succeeded}"]),
                ),
                limit=5,
            )
        if page.events or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert len(page.events) == 1
    payload = page.events[0].payload
    assert payload["task_ids"] == [failed, succeeded] and payload["job_id"] == job.job_id
    assert payload["credits_at_stake"] == 5, "the price the job's token carries"
    found = await wait_for_task_callback(
        "any", 10, receiver_url=stack.receiver.url, secret=RECEIVER_SECRET, job_id=job.job_id
    )
    assert found.task_id == succeeded and found.succeeded


def test_a_task_id_replayed_under_another_job_is_refused(stack) -> None:
    task_id = uuid.uuid4().hex
    assert deliver(stack.receiver.url, new_job(), callback_body(task_id)).status_code == 200
    replay = deliver(stack.receiver.url, new_job(), callback_body(task_id))
    assert replay.status_code == 409 and "replayed" in replay.json()["error"]


def test_an_inbox_made_before_duplicate_jobs_is_upgraded_in_place(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE callbacks (task_id TEXT PRIMARY KEY, job_id TEXT NOT NULL UNIQUE, job TEXT NOT NULL, "
        "body TEXT NOT NULL, received_at REAL NOT NULL, emitted_at REAL, deliveries INTEGER NOT NULL DEFAULT 1);"
    )
    job = new_job()
    old.execute(
        "INSERT INTO callbacks (task_id, job_id, job, body, received_at) VALUES (?, ?, ?, ?, ?)",
        ("t1", job.job_id, job.model_dump_json(), json.dumps(callback_body("t1")), time.time()),
    )
    old.commit()
    old.close()
    inbox = Inbox(path)
    try:
        assert inbox.get("t1") is not None, "the old rows are kept"
        from faceswap_flows.aifaceswap.models import TaskCallback

        assert inbox.record(job, TaskCallback.model_validate(callback_body("t2"))).value == "duplicate-job"
    finally:
        inbox.close()


def test_inbox_lookup_needs_the_secret(stack) -> None:
    job, task_id = new_job(), uuid.uuid4().hex
    deliver(stack.receiver.url, job, callback_body(task_id))
    assert httpx.get(f"{stack.receiver.url}/tasks/{task_id}").status_code == 401
    found = httpx.get(f"{stack.receiver.url}/tasks/{task_id}", headers={"Authorization": f"Bearer {RECEIVER_SECRET}"})
    assert found.status_code == 200 and found.json()["job"]["job_id"] == job.job_id


async def test_the_inbox_lists_what_arrived_since_a_time_by_who_stores_it(stack) -> None:
    """(Failed callbacks: no sweep of other tests would try to store them.)"""
    since = time.time()
    sweep = [(new_job(store_by="sweep"), uuid.uuid4().hex) for _ in range(3)]
    other = (new_job(store_by="trigger"), uuid.uuid4().hex)
    for job, task_id in [*sweep, other]:
        assert deliver(stack.receiver.url, job, callback_body(task_id, success=0)).status_code == 200
    assert httpx.get(f"{stack.receiver.url}/callbacks", params={"since": since}).status_code == 401
    auth = {"Authorization": f"Bearer {RECEIVER_SECRET}"}
    for bad in ({"since": "yesterday"}, {"since": since, "limit": "all"}):
        refused = httpx.get(f"{stack.receiver.url}/callbacks", params=bad, headers=auth)
        assert refused.status_code == 422 and "since must be epoch seconds" in refused.json()["error"]
    found = await received_callbacks(stack.receiver.url, RECEIVER_SECRET, since, store_by="sweep", page=2)
    assert [entry["task_id"] for entry in found] == [task_id for _, task_id in sweep], "oldest first, every page"
    assert found[0]["job_id"] == sweep[0][0].job_id and found[0]["store_by"] == "sweep"
    everything = await received_callbacks(stack.receiver.url, RECEIVER_SECRET, since)
    assert other[1] in [entry["task_id"] for entry in everything]
    assert await received_callbacks(stack.receiver.url, RECEIVER_SECRET, time.time() + 60) == []


async def test_wait_sees_a_callback_that_arrived_before_it_started(stack) -> None:
    task_id = uuid.uuid4().hex
    deliver(stack.receiver.url, new_job(), callback_body(task_id))
    started = time.monotonic()
    callback = await wait_for_task_callback(task_id, 30, receiver_url=stack.receiver.url, secret=RECEIVER_SECRET)
    assert callback.task_id == task_id and callback.succeeded
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("head_start", [0.0, 1.0, 8.0])
async def test_wait_from_events_alone_whenever_the_event_was_emitted(stack, head_start: float) -> None:
    """Without the inbox shortcut: an event emitted just before subscribing (not yet stored, maybe not in the
    backfill), a second before, or long enough before to be stored, is still seen."""
    task_id = uuid.uuid4().hex
    deliver(stack.receiver.url, new_job(), callback_body(task_id))
    await asyncio.sleep(head_start)
    callback = await wait_for_task_callback(task_id, 30, recheck_every=1.0)
    assert callback.task_id == task_id


async def test_wait_sees_a_callback_that_arrives_during_the_wait(stack) -> None:
    task_id = uuid.uuid4().hex

    async def later() -> None:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(deliver, stack.receiver.url, new_job(), callback_body(task_id))

    sender = asyncio.create_task(later())
    started = time.monotonic()
    callback = await wait_for_task_callback(task_id, 30, receiver_url=stack.receiver.url, secret=RECEIVER_SECRET)
    await sender
    assert callback.task_id == task_id
    assert 1.4 < time.monotonic() - started < 10


async def test_wait_times_out_naming_the_task(stack) -> None:
    task_id = uuid.uuid4().hex
    with pytest.raises(CallbackTimeout, match=task_id):
        await wait_for_task_callback(task_id, 1.5, receiver_url=stack.receiver.url, secret=RECEIVER_SECRET)


async def test_inbox_keeps_callbacks_while_the_api_is_down(stack, tmp_path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite")
    job, task_id = new_job(), uuid.uuid4().hex
    from faceswap_flows.aifaceswap.models import TaskCallback

    inbox.record(job, TaskCallback.model_validate(callback_body(task_id)))
    emitter = Emitter(inbox)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        async with get_client() as down:
            with pytest.raises(Exception):  # noqa: B017 - any transport error: the API is unreachable
                await emitter.emit_pending(down)
    assert [e.callback.task_id for e in inbox.pending()] == [task_id]
    inbox.close()
    reopened = Inbox(tmp_path / "inbox.sqlite")  # a restart loses nothing acknowledged
    async with get_client() as up:
        assert await Emitter(reopened).emit_pending(up) == 1
    assert reopened.pending() == []
    assert len(await stored_events(task_id)) == 1


@pytest.fixture
def lone_receiver(tmp_path):
    """A receiver on its own inbox (no callback is ever sent to it, so nothing is emitted)."""
    from faceswap_flows.receiver import ReceiverServer

    with ReceiverServer(tmp_path / "inbox.sqlite", RECEIVER_SECRET) as server:
        yield server


def test_the_challenge_proves_the_secret_without_sending_it(lone_receiver) -> None:
    from faceswap_flows.receiver.tokens import challenge_answer

    nonce = uuid.uuid4().hex
    answered = httpx.post(f"{lone_receiver.url}/challenge", json={"nonce": nonce})
    assert answered.status_code == 200, answered.text
    assert answered.json()["answer"] == challenge_answer(RECEIVER_SECRET, nonce)
    assert answered.json()["answer"] != challenge_answer("another-secret", nonce)
    assert RECEIVER_SECRET not in answered.text
    assert answered.json()["inbox"] == {"writable": True, "error": None}
    again = httpx.post(f"{lone_receiver.url}/challenge", json={"nonce": uuid.uuid4().hex}).json()["answer"]
    assert again != answered.json()["answer"], "each nonce has its own answer"
    assert lone_receiver.inbox.counts() == {"received": 0, "pending": 0}, "the inbox probe is rolled back"


def test_the_challenge_cannot_sign_a_job_token(lone_receiver) -> None:
    """Only hex nonces are answered, and after a prefix no token payload has: an answer is never a token's
    signature (the secret's HMAC of a payload would let anyone forge callbacks)."""
    payload, _ = sign(new_job(), RECEIVER_SECRET).split(".")
    refused = httpx.post(f"{lone_receiver.url}/challenge", json={"nonce": payload})
    assert refused.status_code == 422 and "hex" in refused.json()["error"]
    hex_payload = payload.encode().hex()
    answer = httpx.post(f"{lone_receiver.url}/challenge", json={"nonce": hex_payload[:128]}).json()["answer"]
    bare = hmac.new(RECEIVER_SECRET.encode(), hex_payload[:128].encode(), hashlib.sha256).hexdigest()
    assert answer != bare, "the answer covers a prefix, not the nonce alone"
    for body in (b"", b"[]", b'{"nonce": 7}', b"\xff"):
        assert httpx.post(f"{lone_receiver.url}/challenge", content=body).status_code == 422


def test_the_challenge_says_when_the_inbox_cannot_be_written(lone_receiver) -> None:
    import sqlite3

    holder = sqlite3.connect(lone_receiver.inbox.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the inbox's write lock
    try:
        inbox = httpx.post(f"{lone_receiver.url}/challenge", json={"nonce": uuid.uuid4().hex}, timeout=30).json()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert inbox["inbox"]["writable"] is False
    assert "locked" in inbox["inbox"]["error"] and "inbox.sqlite" in inbox["inbox"]["error"]
