"""Background jobs: each runs its work in a bounded thread pool, publishes the result and calls back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from faceswap_flows.aifaceswap.models import CallbackType, TaskCallback
from faceswap_flows.aifaceswap.sandbox.faults import FaultDice
from faceswap_flows.aifaceswap.sandbox.ledger import Ledger
from faceswap_flows.aifaceswap.sandbox.results import ResultStore
from faceswap_flows.aifaceswap.sandbox.vision import VisionError
from faceswap_flows.aifaceswap.sandbox.webhooks import WebhookSender

logger = logging.getLogger("aifaceswap.sandbox")

Work = Callable[[Path], None]
"""Writes a job's output to the given path (runs in a worker thread)."""


@dataclass
class Job:
    task_id: str
    key: str
    operation: str
    callback_type: CallbackType
    webhook: str
    work: Work
    suffix: str
    cleanup: list[Path] = field(default_factory=list)
    status: Literal["queued", "running", "succeeded", "failed"] = "queued"
    error: str | None = None
    result_url: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def describe(self) -> dict[str, object]:
        return {
            "task_id": self.task_id,
            "operation": self.operation,
            "status": self.status,
            "error": self.error,
            "result_image": self.result_url,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class JobRunner:
    """Runs jobs with at most ``concurrency`` at once; a failed job is refunded and called back with success 0."""

    def __init__(
        self,
        *,
        concurrency: int,
        processing_delay: float,
        results: ResultStore,
        ledger: Ledger,
        webhooks: WebhookSender,
        dice: FaultDice,
        result_base_url: Callable[[], str],
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sandbox-job")
        self._slots = asyncio.Semaphore(concurrency)
        self._delay = processing_delay
        self._results = results
        self._ledger = ledger
        self._webhooks = webhooks
        self._dice = dice
        self._result_base_url = result_base_url
        self._tasks: set[asyncio.Task[None]] = set()
        self.jobs: dict[str, Job] = {}

    def submit(self, job: Job) -> None:
        self.jobs[job.task_id] = job
        task = asyncio.create_task(self._run(job), name=f"job-{job.task_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        try:
            async with self._slots:
                job.status = "running"
                if self._delay:
                    await asyncio.sleep(self._delay)
                callback = await self._execute(job)
            await self._webhooks.send(job.webhook, callback)
        except Exception:
            logger.exception("job %s crashed", job.task_id)
        finally:
            for path in job.cleanup:
                path.unlink(missing_ok=True)

    async def _execute(self, job: Job) -> TaskCallback:
        output = self._results.new_path(job.task_id, job.suffix)
        try:
            if self._dice.roll(self._dice.config.fail_rate):
                raise VisionError("fault: injected job failure")
            await asyncio.get_running_loop().run_in_executor(self._pool, job.work, output)
        except VisionError as error:
            job.status, job.error, job.finished_at = "failed", str(error), time.time()
            output.unlink(missing_ok=True)
            self._ledger.refund(job.key, job.task_id)
            logger.info("job %s failed: %s (refunded)", job.task_id, error)
            return TaskCallback(success=0, type=int(job.callback_type), task_id=job.task_id)
        name = self._results.publish(output)
        job.result_url = f"{self._result_base_url().rstrip('/')}/results/{name}"
        job.status, job.finished_at = "succeeded", time.time()
        return TaskCallback(success=1, type=int(job.callback_type), task_id=job.task_id, result_image=job.result_url)

    async def idle(self, timeout: float = 60.0) -> None:
        """Wait until every submitted job has finished and called back."""
        deadline = time.monotonic() + timeout
        while self._tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._tasks)} sandbox jobs still running after {timeout}s")
            await asyncio.wait(set(self._tasks), timeout=max(0.01, deadline - time.monotonic()))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
