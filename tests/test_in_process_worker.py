"""The store pool's worker (flows/in_process_worker.py), started by Prefect's own commands: `prefect work-pool create
--type faceswap-in-process` and `prefect worker start` know the type from the package's entry point; the
store-result deployment of prefect.yaml, triggered by a job's success event, runs inside the worker's process (no
process per run) as soon as it is scheduled (the worker polls once an hour here: the scheduled-run event wakes
it); a flow that is not the package's is refused before it runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.deployments import run_deployment

from faceswap_flows.flows.exceptions import NotThisPackagesFlow
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.in_process_worker import WORKER_TYPE, package_flow
from faceswap_flows.flows.options import SwapOptions
from tests.media import read_image
from tests.support import delete_deployments, prefect_cli, stop_group

ROOT = Path(__file__).resolve().parent.parent
POOL = "faceswap-store"  # prefect.yaml's store pool
OUTSIDER_MARK = Path(os.environ.get("TMPDIR", "/tmp")) / f"faceswap-outsider-ran-{os.getpid()}"


@dataclass(frozen=True)
class StoreWorker:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def store_worker(stack, prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreWorker]:
    created = prefect_cli(prefect_api, "work-pool", "create", POOL, "--type", WORKER_TYPE, "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    log = tmp_path_factory.mktemp("store-worker") / "worker.log"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_WORKER_QUERY_SECONDS": "3600"}
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = StoreWorker(process, log)
    deadline = time.monotonic() + 120
    while "started!" not in worker.text():
        assert process.poll() is None and time.monotonic() < deadline, worker.text()[-3000:]
        time.sleep(0.2)
    try:
        yield worker
    finally:
        stop_group(process)


async def runs_of(deployment_name: str) -> list:
    async with get_client() as client:
        deployments = [d for d in await client.read_deployments() if d.name == deployment_name]
        assert deployments, f"no deployment {deployment_name}"
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id={"any_": [deployments[0].id]}))


@pytest.mark.slow
async def test_the_triggered_store_result_runs_inside_the_worker_as_soon_as_scheduled(
    stack, prefect_api: str, store_worker: StoreWorker
) -> None:
    deployed = prefect_cli(prefect_api, "deploy", "--name", "store-result")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    try:
        async with get_client() as client:
            deadline = time.monotonic() + 60
            while not await client.read_automations_by_name("store-result__automation_1"):
                assert time.monotonic() < deadline, "prefect deploy made no trigger"
                await asyncio.sleep(0.5)
        outcome = await faceswap(
            str(stack.files["astronaut"]), str(stack.files["grace"]), options=SwapOptions(wait=False)
        )
        assert outcome.status == "submitted" and outcome.result_key
        deadline = time.monotonic() + 120
        while not stack.storage.exists(outcome.result_key):
            assert store_worker.process.poll() is None, store_worker.text()[-3000:]
            assert time.monotonic() < deadline, f"not stored (the worker polls hourly):\n{store_worker.text()[-3000:]}"
            await asyncio.sleep(0.25)
        assert read_image(stack.storage.read_bytes(outcome.result_key)).shape == (512, 512, 3)
        runs = [run for run in await runs_of("store-result") if run.parameters.get("task_id") == outcome.task_id]
        assert len(runs) == 1 and runs[0].work_pool_name == POOL
        deadline = time.monotonic() + 30
        while not (runs[0].state and runs[0].state.is_final()):
            assert time.monotonic() < deadline, runs[0].state
            await asyncio.sleep(0.25)
            async with get_client() as client:
                runs[0] = await client.read_flow_run(runs[0].id)
        assert runs[0].state.is_completed(), runs[0].state
        # the worker's own process ran it: no process was started for the run
        assert runs[0].infrastructure_pid == str(store_worker.process.pid)
    finally:
        await delete_deployments(["store-result"])


@flow(name="outsider")
def outsider() -> None:
    OUTSIDER_MARK.write_text("ran")


@pytest.mark.slow
async def test_a_flow_that_is_not_the_packages_is_refused_before_it_runs(store_worker: StoreWorker) -> None:
    OUTSIDER_MARK.unlink(missing_ok=True)
    deployment = await outsider.to_deployment(name="outsider", work_pool_name=POOL)
    await deployment.apply()
    try:
        run = await run_deployment("outsider/outsider", timeout=90)
        assert run.state is not None and run.state.is_crashed(), (run.state, store_worker.text()[-3000:])
        assert "is not a flow of faceswap_flows" in (run.state.message or ""), run.state.message
        assert "put this deployment in a process work pool" in (run.state.message or "")
        assert not OUTSIDER_MARK.exists()
    finally:
        await delete_deployments(["outsider"])


@pytest.mark.parametrize(
    "entrypoint",
    [
        "tests/test_in_process_worker.py:outsider",
        "faceswap_flows.tests.test_in_process_worker:outsider",
        "os:path",
        "",
        "faceswap_flows.flows.collect",
        "faceswap_flows.flows.collect:FinishedJob",
        "faceswap_flows.flows.nowhere:store_result",
    ],
)
def test_package_flow_refuses_what_is_not_a_flow_of_the_package(entrypoint: str) -> None:
    with pytest.raises(NotThisPackagesFlow, match=r"entrypoint: .* is not a flow of faceswap_flows"):
        package_flow(entrypoint)


def test_package_flow_imports_the_store_flows_by_module_or_checkout_path() -> None:
    assert package_flow("faceswap_flows.flows.collect:store_result").name == "store-result"
    assert package_flow("flows/sweep/flow.py:store_results").name == "store-results"
