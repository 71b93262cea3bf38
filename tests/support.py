"""What the tests share: the session's Prefect server (its address set before Prefect is imported), the test
keys and secrets, and a way to put the stack's blocks back after a test overwrote them.

Import it as ``tests.support`` (never import conftest: pytest loads that under another name)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceswap_flows.devstack.prefect_server import LocalPrefectServer, free_port

if TYPE_CHECKING:
    from prefect.client.schemas.objects import TaskRun

PREFECT_SERVER = LocalPrefectServer(tempfile.mkdtemp(prefix="faceswap-tests-prefect-"), port=free_port())
os.environ["PREFECT_HOME"] = str(PREFECT_SERVER.home)
os.environ["PREFECT_API_URL"] = PREFECT_SERVER.api_url
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parent.parent
S3_KEY_ID = "testing-key-id"
S3_SECRET = "testing-secret"
SANDBOX_KEY = "flows-test-key"
RECEIVER_SECRET = "receiver-test-secret"

STACK_BLOCKS: dict[str, Any] = {}


def restore_stack_blocks() -> None:
    """Save the stack's blocks under the default names again (after a test overwrote them)."""
    for name, block in STACK_BLOCKS.items():
        block.save(name, overwrite=True)


def impatient_blocks(stack: Any, prefix: str, grace_seconds: float = 3) -> tuple[str, str]:
    """Blocks named ``<prefix>`` and ``<prefix>-receiver`` that give up on an answer after 1 s, and on a lost
    answer's callback after ``grace_seconds``."""
    from faceswap_flows.blocks import AIFaceSwapCredentials, WebhookReceiver

    AIFaceSwapCredentials(api_key=SANDBOX_KEY, base_url=stack.sandbox.url, timeout=1.0, max_retries=0).save(
        prefix, overwrite=True
    )
    receiver = WebhookReceiver(
        public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET, lost_answer_grace_seconds=grace_seconds
    )
    receiver.save(f"{prefix}-receiver", overwrite=True)
    return prefix, f"{prefix}-receiver"


@contextmanager
def served_deployments(names: list[str], prefect_api: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m faceswap_flows.flows.deployments NAME ...`` (the deployments of prefect.yaml, served with their
    triggers, polling every second) in a process group of its own, stopped at the end; its output goes to ``log``."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "faceswap_flows.flows.deployments", *names],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(10)
            break
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def sweep_now(since: Any, **options: Any) -> Any:
    """A store-results sweep run of what has already happened since ``since`` (no window to wait for)."""
    from faceswap_flows.flows.sweep.flow import store_results

    settings = {"lookback_seconds": 0, "window_seconds": 0, "settle_seconds": 0, "poll_seconds": 0.5}
    return store_results(since=since, **{**settings, **options})


async def recorded_task_runs(
    flow_run_id: Any, expected: int = 1, timeout: float = 30.0, *, named: tuple[str, ...] = ()
) -> list[TaskRun]:
    """The flow run's task runs as the API records them, once there are ``expected`` and all are in a final state:
    task states reach the API through events, a moment after the flow returned (up to the task-run recorder's
    flush interval with the devstack's BATCH_SERVER_SETTINGS). ``named``: a final one starts with each of these."""
    import asyncio
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            final = [run for run in runs if run.state and run.state.is_final()]
            seen = all(any(run.name.startswith(prefix) for run in final) for prefix in named)
            if (len(final) == len(runs) >= expected and seen) or time.monotonic() > deadline:
                return final
            await asyncio.sleep(0.5)


def prefect_cli(prefect_api: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``prefect --no-prompt ARGS`` against ``prefect_api``, from the checkout (its prefect.yaml), output captured."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    command = [sys.executable, "-m", "prefect", "--no-prompt", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


async def delete_deployments(names: list[str]) -> None:
    """Delete the named deployments and the automations their triggers made (``NAME__automation_1``)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for deployment in await client.read_deployments():
            if deployment.name in names:
                await client.delete_deployment(deployment.id)
        for name in names:
            for automation in await client.read_automations_by_name(f"{name}__automation_1"):
                await client.delete_automation(automation.id)
