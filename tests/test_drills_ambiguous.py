"""Drills for ambiguous answers: each fault that leaves a paid submission's outcome unknown, with each kind of swap
flow, and a worker SIGKILLed at a random instant. Judged by the sandbox's ledger, the receiver's inbox and the
storage: no job is charged twice, and every job the service accepted has its result stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Scheduled

from faceswap_flows.blocks import WebhookReceiver
from faceswap_flows.flows.image import faceswap, multi_faceswap
from faceswap_flows.flows.options import BlockNames
from faceswap_flows.flows.video import video_faceswap
from tests.drill_report import record
from tests.support import RECEIVER_SECRET
from tests.test_drills import Ledger, acked
from tests.vision import photos

pytestmark = pytest.mark.drill
ROOT = Path(__file__).resolve().parent.parent
KILL_RUNS = 30
KILL_PARALLEL = 6


async def receiver_block(stack, grace: float) -> str:
    """The stack's receiver with a grace of ``grace`` seconds for unknown outcomes, saved under its own name."""
    name = f"drill-receiver-{int(grace)}s"
    block = WebhookReceiver(public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET)
    block.lost_answer_grace_seconds = grace
    await block.asave(name, overwrite=True)
    return name


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """480x360, 25 fps, 1.2 s, the astronaut drifting right."""
    folder = tmp_path_factory.mktemp("drill-video")
    return photos.write_video(folder / "face.mp4", lambda i: photos.face_video_frame(i)[0], 30, fps=25)


async def three_flows(stack, clip: Path, receiver: str) -> list[object]:
    """faceswap, multi_faceswap and video_faceswap at once, each its own job."""
    files = stack.files
    return await asyncio.gather(
        faceswap(str(files["astronaut"]), str(files["grace"]), blocks=BlockNames(receiver=receiver)),
        multi_faceswap(
            str(files["group"]), [str(files["grace"])], blocks=BlockNames(receiver=receiver), face_indexes=[1]
        ),
        video_faceswap(str(clip), str(files["grace"]), blocks=BlockNames(receiver=receiver)),
        return_exceptions=True,
    )


def judge(stack, ledger: Ledger, fault: str, outcomes: list[object]) -> dict[str, object]:
    """Every flow stored its result, each job was charged once, and nothing acknowledged was lost."""
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert not failures, failures
    stack.sandbox.wait_idle()
    stored = sum(stack.storage.exists(o.result_key) and stack.storage.exists(o.provenance_key) for o in outcomes)
    row = ledger.summary(fault, len(outcomes), stored, acked(stack, ledger.new_tasks()))
    assert row["submissions"] == row["charges"] == row["results stored"] == len(outcomes), row
    assert row["lost"] == 0
    return row


@pytest.mark.parametrize(
    ("fault", "switch"),
    [
        ("500 after accepting", "error_after_accept_rate"),
        ("502 HTML after accepting", "bad_gateway_after_accept_rate"),
        ("connection closed after accepting", "close_after_accept_rate"),
    ],
)
async def test_drill_ambiguous_answer_after_accepting(stack, faults, clip, fault, switch) -> None:
    """The service accepted and charged each job, then the answer proved nothing: each flow waits for its job's
    callback, re-attaches, stores the result, and sends nothing again."""
    receiver = await receiver_block(stack, 20)
    faults(**{switch: 1.0})
    ledger = Ledger(stack)
    outcomes = await three_flows(stack, clip, receiver)
    judge(stack, ledger, f"{fault} (3 flows)", outcomes)


async def test_drill_callbacks_later_than_every_retry(stack, faults, clip) -> None:
    """A 500 after accepting, and callbacks 30 s late: past every task retry delay (1 + 5 + 15 s), so a blind retry
    would have paid again. Within the grace, each flow re-attaches to its job."""
    receiver = await receiver_block(stack, 60)
    faults(error_after_accept_rate=1.0, delay_webhook_rate=1.0, delay_webhook_seconds=30.0)
    ledger = Ledger(stack)
    outcomes = await three_flows(stack, clip, receiver)
    judge(stack, ledger, "500 + callback 30 s late (3 flows)", outcomes)


# The kill drill: flow runs executed by worker processes (tests/kill_drill_worker.py) that are SIGKILLed.


async def flow_state(run_id: UUID):
    async with get_client() as client:
        return (await client.read_flow_run(run_id)).state


def start_worker(run_id: UUID, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.kill_drill_worker", str(run_id)],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def finish(process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"worker of pid {process.pid} still running after {timeout}s")
        await asyncio.sleep(0.2)


async def wait_running(run_id: UUID, process: subprocess.Popen[bytes], timeout: float = 120) -> float:
    """When the flow run started (monotonic), or raise when its process ended first."""
    deadline = time.monotonic() + timeout
    while True:
        state = await flow_state(run_id)
        if state is not None and state.is_running():
            return time.monotonic()
        assert process.poll() is None, f"the worker of {run_id} ended before running ({state})"
        assert time.monotonic() < deadline, f"{run_id} did not start"
        await asyncio.sleep(0.1)


async def new_run(stack, receiver: str, i: int) -> UUID:
    pairs = [("astronaut", "grace"), ("grace", "astronaut")]
    source, face = (str(stack.files[name]) for name in pairs[i % 2])
    async with get_client() as client:
        run = await client.create_flow_run(
            faceswap,
            parameters={
                "source_image": source,
                "face_image": face,
                "blocks": {"receiver": receiver},
                "options": {"timeout_seconds": 120},
            },
            state=Scheduled(),
        )
    return run.id


async def killed_then_retried(stack, receiver: str, i: int, window: float, log: Path) -> dict[str, object]:
    """One run: its worker SIGKILLed at a uniformly random instant between flow start and (about) its callback,
    then the flow run retried by a fresh worker until it ends."""
    run_id = await new_run(stack, receiver, i)
    worker = start_worker(run_id, log)
    started = await wait_running(run_id, worker)
    delay = random.uniform(0, window)
    await asyncio.sleep(max(0.0, started + delay - time.monotonic()))
    killed, killed_at = worker.poll() is None, time.time()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    await finish(worker, 10)
    state = await flow_state(run_id)
    if killed and not state.is_final():
        async with get_client() as client:
            await client.set_flow_run_state(run_id, Scheduled(), force=True)
        retry = start_worker(run_id, log)
        await finish(retry, 240)
        state = await flow_state(run_id)
    return {"run": str(run_id), "killed": killed, "killed_at": killed_at, "after": round(delay, 2), "state": state}


@pytest.mark.timeout(600)  # 4m38s on 2 cores at a load average of 12: past the default 300 s
async def test_drill_worker_killed_at_a_random_instant(stack, faults, tmp_path: Path) -> None:
    """30 flow runs, each worker SIGKILLed at a uniformly random instant between its flow's start and its callback,
    then the flow run retried: no job is charged twice, and every job the service accepted has its result stored
    once (its one result key, with its provenance record). The sandbox answers 3 s after accepting (a slow
    gateway) and calls back 8 s late (after a retried run has looked for the callback), so about a quarter of the
    kills fall between the service accepting a job and the submission being recorded."""
    random.seed(int(os.environ.get("KILL_DRILL_SEED", "14")))
    receiver = await receiver_block(stack, 30)
    faults(delay_webhook_rate=1.0, delay_webhook_seconds=8.0, lose_response_rate=1.0, lose_response_seconds=3.0)
    log = tmp_path / "workers.log"
    ledger = Ledger(stack)

    calibration = await new_run(stack, receiver, 0)
    worker = start_worker(calibration, log)
    started = await wait_running(calibration, worker)
    await finish(worker, 240)
    assert (await flow_state(calibration)).is_completed(), log.read_text()[-3000:]
    (task_id,) = ledger.new_tasks()
    arrived = stack.receiver.inbox.get(task_id).received_at
    window = max(1.0, arrived - (time.time() - (time.monotonic() - started)))

    slots = asyncio.Semaphore(KILL_PARALLEL)

    async def one(i: int) -> dict[str, object]:
        async with slots:
            return await killed_then_retried(stack, receiver, i, window, log)

    runs = await asyncio.gather(*(one(i) for i in range(KILL_RUNS)))
    stack.sandbox.wait_idle()
    tasks = [t for t in ledger.new_tasks() if t != task_id]
    entries = [stack.receiver.inbox.get(t) for t in tasks]
    assert all(entries), "every accepted job called back"
    jobs = [entry.job.job_id for entry in entries]
    assert len(jobs) == len(set(jobs)), "a job was charged twice"
    stored = sum(
        stack.storage.exists(e.job.result_key) and stack.storage.exists(f"{e.job.result_key}.provenance.json")
        for e in entries
    )
    accepted_at = {e.job.flow_run_id: stack.sandbox.sandbox.runner.jobs[e.callback.task_id].created_at for e in entries}
    after_acceptance = sum(r["killed"] and accepted_at.get(r["run"], float("inf")) < r["killed_at"] for r in runs)
    completed = [r for r in runs if r["state"].is_completed()]
    unknown = [r for r in runs if not r["state"].is_completed()]
    for r in unknown:
        message = r["state"].message or ""
        assert r["state"].is_failed() and "SubmissionOutcomeUnknown" in message, f"{r}\n{log.read_text()[-3000:]}"
    row = {
        "fault": f"worker SIGKILLed: {sum(r['killed'] for r in runs)} killed, {after_acceptance} after "
        f"accepting, {len(unknown)} unknown",
        "jobs": KILL_RUNS,
        "submissions": len(tasks),
        "charges": ledger._charges() - ledger.charges_before - 1,
        "credits": stack.spent() - ledger.spent_before - 2,
        "callbacks acked": acked(stack, tasks),
        "results stored": stored,
        "lost": acked(stack, tasks) - stored,
    }
    bill = ledger.billed()
    row["ledger charged (possibly)"] = f"{bill.charged} ({bill.possibly_charged})"
    record(**row)
    assert row["charges"] == len(tasks) == len(set(jobs)) and row["lost"] == 0, row
    assert bill.charged == ledger._charged() - ledger.charged_before, "our ledger holds what the sandbox charged"
    assert len(completed) == len(tasks), "every accepted job's run completed; the others were never accepted"
    assert sum(r["killed"] for r in runs) >= KILL_RUNS // 2, "most workers were killed before they finished"
    assert after_acceptance >= 3, "some workers died after their job was accepted (the double-charge window)"
    accepted_unknown = [r for r in unknown if r["run"] in accepted_at]
    assert not accepted_unknown, f"the service accepted these jobs, yet their runs ended unknown: {accepted_unknown}"
