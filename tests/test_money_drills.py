"""Money rules against the real stack (sandbox, receiver, Prefect, storage), each written to fail when its bug is put
back: a callback the inbox could not keep is not acknowledged (the service retries it), a budget of 0 charges
nothing, a video's options are part of its work's identity, and a job sent twice is waited for by job."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faceswap_flows.aifaceswap import AIFaceSwapClient
from faceswap_flows.aifaceswap.models import FaceSwapRequest
from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.exceptions import BudgetExceeded, SubmissionOutcomeUnknown
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.options import BlockNames, SwapOptions
from faceswap_flows.flows.provenance.records import OutputOptions
from faceswap_flows.receiver import JobToken, ReceiverServer, sign
from tests.media import read_image
from tests.support import RECEIVER_SECRET, SANDBOX_KEY
from tests.test_drills import Ledger
from tests.test_money_rules import _plan_one, _store
from tests.vision import photos


def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


# (1) A callback the inbox could not keep is answered 5xx: the service retries it, and the retry is kept.


@pytest.fixture
def own_receiver(stack, tmp_path: Path) -> Iterator[ReceiverServer]:
    """A receiver of its own (its inbox is the one made to fail), emitting to the session's Prefect server."""
    with ReceiverServer(tmp_path / "inbox.sqlite", RECEIVER_SECRET) as receiver:
        yield receiver


def photo_url(stack, name: str) -> str:
    target = stack.media_dir / "inputs" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(stack.files[name].read_bytes())
    return f"{stack.media_server.url}/inputs/{name}.png"


async def test_a_callback_the_inbox_could_not_keep_is_refused_then_retried_and_kept(stack, own_receiver) -> None:
    job = JobToken(job_id=uuid.uuid4().hex, operation="faceswap")
    request = FaceSwapRequest(
        source_image=photo_url(stack, "astronaut"),
        face_image=photo_url(stack, "grace"),
        webhook=f"{own_receiver.url}/callbacks/{sign(job, RECEIVER_SECRET)}",
    )
    deliveries = stack.sandbox.sandbox.webhooks.deliveries
    writer = sqlite3.connect(own_receiver.inbox.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another writer holds the inbox: the receiver's write fails (locked)
    try:
        async with AIFaceSwapClient(SANDBOX_KEY, base_url=stack.sandbox.url, max_retries=0) as client:
            task_id = (await client.send(request)).task_id
        mine = lambda: [d for d in deliveries if d.task_id == task_id]  # noqa: E731
        await asyncio.to_thread(until, lambda: mine(), 60, "the sandbox's first delivery")
        first = mine()[0]
        assert first.status == 503, f"a callback the inbox did not keep was answered {first.status}"
        assert own_receiver.inbox.counts() == {"received": 0, "pending": 0}
        assert own_receiver.app.state.emitter.emitted == 0 and own_receiver.app.state.unparsed.count() == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    await asyncio.to_thread(until, lambda: any(d.status == 200 for d in mine()), 30, "a retried delivery kept")
    assert [d.status for d in mine()][-1] == 200 and len(mine()) >= 2
    assert own_receiver.inbox.get(task_id).job == job and own_receiver.inbox.counts()["received"] == 1
    await asyncio.to_thread(until, lambda: own_receiver.app.state.emitter.emitted == 1, 30, "its event emitted")


# (2) max_credits=0 is a budget of nothing: refused before any charge, single flow and batch.


async def test_a_budget_of_zero_charges_nothing(stack, tmp_path: Path) -> None:
    ledger = Ledger(stack)
    with pytest.raises(BudgetExceeded, match="the budget is 0"):
        await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), options=SwapOptions(max_credits=0))
    manifest = tmp_path / "manifest.jsonl"
    rows = [
        {"id": "one", "source_image": str(stack.files["astronaut"]), "face_image": str(stack.files["grace"])},
        {"id": "two", "source_image": str(stack.files["grace"]), "face_image": str(stack.files["astronaut"])},
    ]
    manifest.write_text("\n".join(json.dumps(row) for row in rows))
    state = await batch_faceswap(str(manifest), options=SwapOptions(max_credits=0), force=True, return_state=True)
    assert state.is_failed() and "2 skipped" in state.message, state.message
    report = await state.result(raise_on_failure=False)
    assert [(item.id, item.status) for item in report.items] == [("one", "skipped"), ("two", "skipped")]
    assert report.credits == 0
    assert ledger.new_tasks() == [] and ledger._charges() == ledger.charges_before, "the sandbox charged nothing"
    assert stack.spent() == ledger.spent_before


# (3) A video's enhance and trim are part of its work: changed, it runs again; the same, it is done.


@pytest.mark.parametrize(
    ("changed", "change"),
    [("enhance", {"enhance": 1}), ("trim_start", {"trim_start": 0.2}), ("trim_end", {"trim_end": 0.8})],
)
def test_a_video_with_other_edits_is_other_work(tmp_path: Path, stack, changed: str, change: dict) -> None:
    clip = photos.write_video(tmp_path / "face.mp4", lambda i: photos.face_video_frame(i)[0], 30, fps=25)
    storage = MediaStorage(basepath=str(tmp_path / "store"))
    row = {"operation": "video_faceswap", "source_video": str(clip), "face_image": str(stack.files["grace"])}
    first = _plan_one(storage, tmp_path / "work", row, OutputOptions())
    _store(storage, first)
    assert _plan_one(storage, tmp_path / "work", row, OutputOptions()).status == "done", "same everything: done"
    other = _plan_one(storage, tmp_path / "work", {**row, **change}, OutputOptions())
    assert other.status == "run" and other.fingerprint != first.fingerprint, f"another {changed} is new work"


# (5) A job sent twice: its first task's callback comes late, its second task's never; the flow takes the first.


async def test_a_resubmitted_job_stores_the_result_of_its_other_task_once(stack, faults) -> None:
    receiver = WebhookReceiver(public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET)
    receiver.lost_answer_grace_seconds = 6
    await receiver.asave("money-drill-receiver", overwrite=True)
    faults(error_after_accept_rate=1.0, delay_webhook_rate=1.0, delay_webhook_seconds=15.0)
    ledger = Ledger(stack)
    flow = asyncio.create_task(
        faceswap(
            str(stack.files["astronaut"]),
            str(stack.files["grace"]),
            options=SwapOptions(on_unknown_outcome="resubmit", timeout_seconds=40),
            blocks=BlockNames(receiver="money-drill-receiver"),
        )
    )
    jobs = stack.sandbox.sandbox.runner.jobs

    def first_task_finished() -> bool:
        return any(jobs[task].finished_at for task in ledger.new_tasks())

    await asyncio.to_thread(until, first_task_finished, 60, "the first send's job done, its callback delayed")
    await asyncio.sleep(0.5)  # its delivery is sleeping now: the faults below are for the second send only
    (first_task,) = ledger.new_tasks()
    faults(drop_webhook_rate=1.0)
    outcome = await flow
    second_task = next(task for task in ledger.new_tasks() if task != first_task)
    assert outcome.task_id == second_task and ledger._charges() - ledger.charges_before == 2, "the job was sent twice"
    record = json.loads(stack.storage.read_bytes(outcome.provenance_key))
    assert record["task_id"] == first_task, "the result is the first task's: the second never called back"
    assert read_image(stack.storage.read_bytes(outcome.result_key)) is not None
    stored = [key for key in stack.storage.list("results/faceswap/") if outcome.job_id[:16] in key]
    assert sorted(stored) == sorted([outcome.result_key, outcome.provenance_key]), "stored exactly once"
    assert stack.receiver.inbox.get(second_task) is None


# The resubmit policy sends a job at most twice more: three sends, three charges at most, then it gives up.


async def test_the_resubmit_policy_sends_a_job_at_most_three_times(stack, faults) -> None:
    receiver = WebhookReceiver(public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET)
    receiver.lost_answer_grace_seconds = 2
    await receiver.asave("money-drill-impatient", overwrite=True)
    faults(error_after_accept_rate=1.0, drop_webhook_rate=1.0)
    ledger = Ledger(stack)
    with pytest.raises(SubmissionOutcomeUnknown, match=r"sent 3 times .*on_unknown_outcome=resubmit: no more sends"):
        await faceswap(
            str(stack.files["grace"]),
            str(stack.files["astronaut"]),
            options=SwapOptions(on_unknown_outcome="resubmit"),
            blocks=BlockNames(receiver="money-drill-impatient"),
        )
    assert len(ledger.new_tasks()) == 3 and ledger._charges() - ledger.charges_before == 3, "1 send + 2 resends"


# A lost answer is an unknown outcome even when a task retry comes before the job's callback.


async def test_a_lost_answer_is_not_sent_again_before_its_late_callback(stack, faults) -> None:
    await AIFaceSwapCredentials(api_key=SANDBOX_KEY, base_url=stack.sandbox.url, timeout=1.0, max_retries=0).asave(
        "money-drill-1s", overwrite=True
    )
    receiver = WebhookReceiver(public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET)
    receiver.lost_answer_grace_seconds = 15
    await receiver.asave("money-drill-15s", overwrite=True)
    faults(lose_response_rate=1.0, lose_response_seconds=3, delay_webhook_rate=1.0, delay_webhook_seconds=4)
    ledger = Ledger(stack)
    outcome = await faceswap(
        str(stack.files["astronaut"]),
        str(stack.files["grace"]),
        blocks=BlockNames(credentials="money-drill-1s", receiver="money-drill-15s"),
    )
    assert outcome.status == "stored" and stack.storage.exists(outcome.result_key)
    assert ledger.new_tasks() == [outcome.task_id], "sent once: the task retry (after 1 s) came before the callback"
