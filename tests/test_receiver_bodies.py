"""Issue 14.5: the receiver never loses a callback whose token verifies. Every body encoding is read; what still
cannot be read is kept raw (unparsed), answered 200, emitted as ``aifaceswap.task.unparsed`` with the raw body,
and ``faceswap-flows collect`` stores the result URL found in it. Real receiver, Prefect and CLI on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from faceswap_flows.aifaceswap.models import sniff_image_type
from faceswap_flows.receiver import JobToken, sign
from faceswap_flows.receiver.events import task_resource_id
from faceswap_flows.receiver.unparsed import UNPARSED
from tests.support import RECEIVER_SECRET


def _job(**extra: Any) -> JobToken:
    return JobToken(job_id=uuid.uuid4().hex, operation="faceswap", **extra)


def _url(stack, job: JobToken) -> str:
    return f"{stack.receiver.url}/callbacks/{sign(job, RECEIVER_SECRET)}"


async def _events(subject: str, names: list[str], timeout: float = 20.0) -> list:
    event_filter = EventFilter(
        event=EventNameFilter(name=names), resource=EventResourceFilter(id=[task_resource_id(subject)])
    )
    deadline = time.monotonic() + timeout
    while True:
        async with get_client() as client:
            page = await client.read_events(filter=event_filter, limit=10)
        if page.events or time.monotonic() > deadline:
            return page.events
        await asyncio.sleep(0.5)


RESULT = "http://127.0.0.1:9/results/{t}.png"
ENCODINGS = {
    "JSON, numbers as strings": lambda t: {
        "json": {"success": "1", "type": "1", "task_id": t, "result_image": RESULT.format(t=t)}
    },
    "JSON, numbers as floats and a bool": lambda t: {
        "json": {"success": True, "type": 1.0, "task_id": t, "result_image": RESULT.format(t=t)}
    },
    "JSON, extra fields and no type": lambda t: {
        "json": {"success": 1, "task_id": t, "result_image": RESULT.format(t=t), "cost": 2, "meta": {"a": [1]}}
    },
    "form-urlencoded": lambda t: {
        "data": {"success": "1", "type": "1", "task_id": t, "result_image": RESULT.format(t=t)}
    },
    "multipart": lambda t: {
        "data": {"success": "1", "task_id": t, "result_image": RESULT.format(t=t)},
        "files": {"note": ("note.txt", b"extra part", "text/plain")},
    },
    "form body sent as text/plain": lambda t: {
        "content": f"success=1&type=1&task_id={t}&result_image={RESULT.format(t=t)}".encode(),
        "headers": {"Content-Type": "text/plain"},
    },
}


@pytest.mark.parametrize("encoding", list(ENCODINGS), ids=list(ENCODINGS))
async def test_every_encoding_of_a_callback_is_accepted_and_emitted(stack, encoding: str) -> None:
    job, task_id = _job(), uuid.uuid4().hex
    response = httpx.post(_url(stack, job), **ENCODINGS[encoding](task_id))
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    entry = stack.receiver.inbox.get(task_id)
    assert entry is not None and entry.callback.succeeded and entry.callback.type == 1
    assert entry.callback.result_image == RESULT.format(t=task_id)
    events = await _events(task_id, ["aifaceswap.task.succeeded"])
    assert [e.payload["result_image"] for e in events] == [RESULT.format(t=task_id)]


async def test_an_unreadable_callback_is_kept_raw_emitted_and_collected_by_the_cli(stack, prefect_api: str) -> None:
    key = stack.storage.upload(stack.files["astronaut"], f"inputs/unparsed-{uuid.uuid4().hex[:8]}.png")
    result_url = stack.storage.url_for(key)
    job, task_id = _job(result_key=f"results/unparsed/{uuid.uuid4().hex}.png"), uuid.uuid4().hex
    raw = json.dumps({"success": "maybe", "task_id": task_id, "result_image": result_url, "note": "über"}).encode()
    before = stack.receiver.app.state.unparsed.count()

    for _ in range(2):  # a redelivery of the same body is kept once
        response = httpx.post(_url(stack, job), content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "unparsed" and "success" in response.json()["error"]
    assert stack.receiver.app.state.unparsed.count() == before + 1
    assert stack.receiver.inbox.get(task_id) is None, "not taken for a readable callback"
    [kept] = [e for e in stack.receiver.app.state.unparsed.all() if e.job.job_id == job.job_id]
    assert kept.body == raw and kept.result_image == result_url and kept.task_id == task_id

    [event] = await _events(task_id, [UNPARSED])
    assert event.payload["raw"] == raw.decode() and event.payload["job_id"] == job.job_id
    assert event.payload["result_image"] == result_url and "success" in event.payload["error"]

    script = Path(sys.executable).parent / "faceswap-flows"
    done = subprocess.run(
        [str(script), "collect", task_id],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stored = stack.storage.read_bytes(job.result_key)
    assert sniff_image_type(stored) == "image/png" and len(stored) > 1000


async def test_an_unparsed_callback_without_a_task_id_is_found_by_its_job(stack) -> None:
    job = _job()
    response = httpx.post(_url(stack, job), content=b"\xff\xfe not a callback", headers={"Content-Type": "x/y"})
    assert response.status_code == 200 and response.json() == {
        "status": "unparsed",
        "task_id": None,
        "error": "the body is not JSON, form-urlencoded or multipart (Content-Type 'x/y')",
    }
    [event] = await _events(job.job_id, [UNPARSED])
    assert event.payload["raw"].endswith(" not a callback") and event.payload["result_image"] is None


@pytest.mark.parametrize(
    ("make_token", "content", "status"),
    [
        (lambda job: sign(job, "another-secret"), b"garbage", 403),
        (
            lambda job: sign(job.model_copy(update={"issued_at": int(time.time()) - 9 * 86400}), RECEIVER_SECRET),
            b"x",
            410,
        ),
        (lambda job: sign(job, RECEIVER_SECRET), b"x" * 70_000, 413),
    ],
    ids=["forged", "expired", "oversized"],
)
def test_forged_expired_and_oversized_callbacks_are_still_refused(stack, make_token, content, status) -> None:
    before = stack.receiver.app.state.unparsed.count()
    job = _job()
    response = httpx.post(f"{stack.receiver.url}/callbacks/{make_token(job)}", content=content)
    assert response.status_code == status and response.json()["status"] == "refused"
    assert stack.receiver.app.state.unparsed.count() == before, "nothing kept"
