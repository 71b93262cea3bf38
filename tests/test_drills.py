"""Fault drills: N jobs under each fault, judged by the sandbox's ledger, the receiver's inbox and the storage.

Run alone with ``pytest -m drill``; the summary table is printed at the end of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.states import Scheduled

from faceswap_flows.flows.collect import store_result
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.ledger import Bill, every_send, settle_by_callback
from faceswap_flows.flows.options import BlockNames, SwapOptions
from faceswap_flows.flows.tasks.waiting import CallbackTimeout
from tests.drill_report import record
from tests.support import SANDBOX_KEY

pytestmark = pytest.mark.drill
ROOT = Path(__file__).resolve().parent.parent
JOBS = 4


class Ledger:
    """Counts, from the sandbox's own records, what a drill caused; and checks that our ledger of credits holds
    exactly the charges the sandbox made, once every callback the receiver took has settled its send."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.started = time.time()
        self.jobs_before = set(self._jobs())
        self.charges_before = self._charges()
        self.spent_before = stack.spent()
        self.charged_before = self._charged()
        self.billed_before = Bill.of(every_send(stack.storage))

    def _jobs(self) -> list[str]:
        return [t for t, job in self.stack.sandbox.sandbox.runner.jobs.items() if job.key == SANDBOX_KEY]

    def _charges(self) -> int:
        return sum(1 for e in self.stack.sandbox.ledger(SANDBOX_KEY)["entries"] if e["kind"] == "charge")

    def _charged(self) -> int:
        return int(self.stack.sandbox.ledger(SANDBOX_KEY)["charged"])

    def new_tasks(self) -> list[str]:
        return [t for t in self._jobs() if t not in self.jobs_before]

    def billed(self) -> Bill:
        """Our ledger's bill of the drill, after settling each send by the callbacks the receiver took."""
        for entry in self.stack.receiver.inbox.received_since(self.started, limit=10_000):
            callback = entry.callback
            settle_by_callback(self.stack.storage, entry.job.job_id, callback.task_id, callback.success == 1)
        now = Bill.of(every_send(self.stack.storage))
        return Bill(
            charged=now.charged - self.billed_before.charged,
            possibly_charged=now.possibly_charged - self.billed_before.possibly_charged,
        )

    def summary(self, fault: str, jobs: int, stored: int, acked: int) -> dict[str, object]:
        bill = self.billed()
        row = {
            "fault": fault,
            "jobs": jobs,
            "submissions": len(self.new_tasks()),
            "charges": self._charges() - self.charges_before,
            "credits": self.stack.spent() - self.spent_before,
            "callbacks acked": acked,
            "results stored": stored,
            "ledger charged (possibly)": f"{bill.charged} ({bill.possibly_charged})",
        }
        row["lost"] = acked - stored
        record(**row)
        charged = self._charged() - self.charged_before
        assert bill.charged == charged, (
            f"{fault}: our ledger holds {bill.charged} credits charged, the sandbox {charged}"
        )
        return row


def acked(stack, task_ids: list[str]) -> int:
    return sum(1 for task_id in task_ids if stack.receiver.inbox.get(task_id) is not None)


def swap_args(stack, i: int) -> tuple[str, str]:
    pairs = [("astronaut", "grace"), ("grace", "astronaut")]
    source, face = pairs[i % 2]
    return str(stack.files[source]), str(stack.files[face])


async def collect_all(task_ids: list[str], timeout: float = 60) -> list[str]:
    """Store every task's result from its callback event (events are stored a few seconds after arrival)."""
    keys = []
    for task_id in task_ids:
        deadline = time.monotonic() + timeout
        while True:
            try:
                keys.append((await store_result(task_id)).result_key)
                break
            except Exception as error:
                if "no callback event" not in str(error) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
    return keys


async def test_drill_webhooks_dropped(stack, faults) -> None:
    faults(drop_webhook_rate=0.5, seed=11)
    ledger = Ledger(stack)
    outcomes = await asyncio.gather(
        *(faceswap(*swap_args(stack, i), options=SwapOptions(timeout_seconds=4)) for i in range(JOBS)),
        return_exceptions=True,
    )
    stored = [o for o in outcomes if not isinstance(o, BaseException)]
    timed_out = [o for o in outcomes if isinstance(o, CallbackTimeout)]
    assert len(stored) + len(timed_out) == JOBS and stored and timed_out, outcomes
    tasks = ledger.new_tasks()
    row = ledger.summary("webhook dropped (50%)", JOBS, len(stored), acked(stack, tasks))
    assert row["submissions"] == row["charges"] == JOBS and row["credits"] == 2 * JOBS
    assert row["lost"] == 0 and all(stack.storage.exists(o.result_key) for o in stored)
    assert all(error.task_id in tasks for error in timed_out), "each timeout names a task_id to collect later"


async def test_drill_webhooks_duplicated(stack, faults) -> None:
    faults(duplicate_webhook_rate=1.0)
    ledger = Ledger(stack)
    outcomes = await asyncio.gather(*(faceswap(*swap_args(stack, i)) for i in range(JOBS)))
    stack.sandbox.wait_idle()
    tasks = ledger.new_tasks()
    assert all(stack.receiver.inbox.get(t).deliveries == 2 for t in tasks), "each callback came twice"
    row = ledger.summary(
        "webhook duplicated", JOBS, sum(stack.storage.exists(o.result_key) for o in outcomes), acked(stack, tasks)
    )
    assert row["submissions"] == row["charges"] == row["results stored"] == JOBS and row["lost"] == 0


async def test_drill_callbacks_delayed_past_the_wait(stack, faults) -> None:
    faults(delay_webhook_rate=1.0, delay_webhook_seconds=2.5)
    ledger = Ledger(stack)
    outcomes = await asyncio.gather(
        *(faceswap(*swap_args(stack, i), options=SwapOptions(timeout_seconds=0.5)) for i in range(JOBS)),
        return_exceptions=True,
    )
    assert all(isinstance(o, CallbackTimeout) for o in outcomes), outcomes
    stack.sandbox.wait_idle()
    keys = await collect_all([o.task_id for o in outcomes])
    row = ledger.summary(
        "callback later than the wait",
        JOBS,
        sum(stack.storage.exists(k) for k in keys),
        acked(stack, ledger.new_tasks()),
    )
    assert row["submissions"] == row["charges"] == row["results stored"] == JOBS and row["lost"] == 0


async def test_drill_5xx_and_429_bursts(stack, faults) -> None:
    """500s before accepting (their outcome is unknown to the client) and 429s, with the opt-in resubmit policy:
    a 429 is retried at once, a 500 waits for the job's callback for the grace, then is sent again."""
    from faceswap_flows.blocks import WebhookReceiver
    from tests.support import RECEIVER_SECRET

    block = WebhookReceiver(public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET)
    block.lost_answer_grace_seconds = 3
    await block.asave("drill-receiver-3s", overwrite=True)
    faults(server_error_burst=3, rate_limit_burst=3, retry_after_seconds=0.2)
    ledger = Ledger(stack)
    outcomes = await asyncio.gather(
        *(
            faceswap(
                *swap_args(stack, i),
                options=SwapOptions(on_unknown_outcome="resubmit"),
                blocks=BlockNames(receiver="drill-receiver-3s"),
            )
            for i in range(JOBS)
        )
    )
    row = ledger.summary(
        "5xx before accepting + 429 bursts (3 + 3 calls), resubmit policy",
        JOBS,
        sum(stack.storage.exists(o.result_key) for o in outcomes),
        acked(stack, ledger.new_tasks()),
    )
    assert row["submissions"] == row["charges"] == row["results stored"] == JOBS and row["lost"] == 0


async def test_drill_prefect_api_restarted_while_callbacks_arrive(stack, faults, prefect_server) -> None:
    faults(delay_webhook_rate=1.0, delay_webhook_seconds=8.0)
    ledger = Ledger(stack)
    submitted = await asyncio.gather(
        *(faceswap(*swap_args(stack, i), options=SwapOptions(wait=False)) for i in range(JOBS))
    )
    tasks = [o.task_id for o in submitted]
    stopping = time.monotonic()
    await asyncio.to_thread(prefect_server.stop)
    try:
        assert time.monotonic() - stopping < 7, "the API must be down before the callbacks come"
        stack.sandbox.wait_idle()  # every callback was delivered while the API was down
        assert acked(stack, tasks) == JOBS, "the receiver acknowledged every callback with the API down"
        pending = {e.callback.task_id for e in stack.receiver.inbox.pending()}
        assert set(tasks) <= pending, "they wait in the inbox until the API is back"
    finally:
        await asyncio.to_thread(prefect_server.start)
    keys = await collect_all(tasks)
    row = ledger.summary("Prefect API restarted", JOBS, sum(stack.storage.exists(k) for k in keys), acked(stack, tasks))
    assert row["submissions"] == row["charges"] == row["results stored"] == JOBS and row["lost"] == 0


async def test_drill_receiver_restarted(stack, faults) -> None:
    ledger = Ledger(stack)
    first = await faceswap(*swap_args(stack, 0), options=SwapOptions(wait=False))
    stack.sandbox.wait_idle()
    assert stack.receiver.inbox.get(first.task_id) is not None
    faults(delay_webhook_rate=1.0, delay_webhook_seconds=2.0)
    later = await asyncio.gather(
        *(faceswap(*swap_args(stack, i), options=SwapOptions(wait=False)) for i in range(1, JOBS))
    )
    stack.restart_receiver()
    stack.sandbox.wait_idle()
    tasks = [first.task_id, *(o.task_id for o in later)]
    keys = await collect_all(tasks)
    row = ledger.summary("receiver restarted", JOBS, sum(stack.storage.exists(k) for k in keys), acked(stack, tasks))
    assert row["submissions"] == row["charges"] == row["results stored"] == JOBS and row["lost"] == 0


@pytest.fixture
def served_faceswap(stack, prefect_api: str, tmp_path: Path):
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "serve.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "faceswap_flows.flows.deployments", "faceswap"],
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        return process

    yield start, log
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


async def test_drill_worker_killed_after_submit(stack, faults, served_faceswap) -> None:
    start, log = served_faceswap
    faults(delay_webhook_rate=1.0, delay_webhook_seconds=5.0)
    ledger = Ledger(stack)
    worker = start()

    async def served() -> bool:
        async with get_client() as client:
            try:
                await client.read_deployment_by_name("faceswap/faceswap")
                return True
            except Exception:
                return False

    await wait_until(served, 90, f"the served deployment (log: {log})")
    runs = []
    for i in range(2):
        source, face = swap_args(stack, i)
        runs.append(
            await run_deployment(
                "faceswap/faceswap", parameters={"source_image": source, "face_image": face}, timeout=0
            )
        )

    async with get_client() as client:

        async def all_submitted() -> bool:
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id for run in runs]))
            )
            return sum(
                1 for t in task_runs if t.name.startswith("submit") and t.state is not None and t.state.is_completed()
            ) == len(runs)

        await wait_until(all_submitted, 90, f"both submissions (log: {log})")
        os.killpg(worker.pid, signal.SIGKILL)  # the worker dies while its runs wait for their callbacks
        worker.wait(10)
        for run in runs:
            await client.set_flow_run_state(run.id, Scheduled(), force=True)
        start()

        async def all_completed() -> bool:
            states = [(await client.read_flow_run(run.id)).state for run in runs]
            failed = [s for s in states if s.is_failed() or s.is_crashed()]
            assert not failed, f"{failed}\n{log.read_text()[-3000:]}"
            return all(s.is_completed() for s in states)

        await wait_until(all_completed, 120, "the rescheduled runs")
    tasks = ledger.new_tasks()
    stored = sum(stack.storage.exists(stack.receiver.inbox.get(t).job.result_key) for t in tasks)
    row = ledger.summary("worker killed after submit", len(runs), stored, acked(stack, tasks))
    assert row["submissions"] == row["charges"] == row["results stored"] == len(runs) and row["lost"] == 0
