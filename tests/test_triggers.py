"""wait=False: the flow ends after submission, and the store-result deployment, triggered by the success
event as prefect.yaml declares it, stores the result through a real deployment run."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter

from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.options import SwapOptions
from tests.media import read_image
from tests.support import delete_deployments, prefect_cli, served_deployments


@pytest.fixture(scope="module")
def served_store_result(stack, prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with served_deployments([], prefect_api, log) as process:
        yield process, log


async def wait_for_deployment(name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            found = await client.read_deployments(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
            )
            automations = await client.read_automations_by_name(f"{name}__automation_1") if found else []
            if found and automations:
                return str(found[0].id)
            await asyncio.sleep(0.5)
    raise AssertionError(f"deployment {name} was not served in {timeout}s")


@pytest.mark.slow
async def test_wait_false_then_the_trigger_stores_the_result(stack, served_store_result) -> None:
    process, log = served_store_result
    deployment_id = await wait_for_deployment("store-result")
    outcome = await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), options=SwapOptions(wait=False))
    assert outcome.status == "submitted" and outcome.result_uri is None
    deadline = time.monotonic() + 120
    while not stack.storage.exists(outcome.result_key):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"the trigger did not store the result:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.5)
    assert read_image(stack.storage.read_bytes(outcome.result_key)).shape == (512, 512, 3)
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id={"any_": [deployment_id]}))
    triggered = [run for run in runs if run.parameters.get("task_id") == outcome.task_id]
    assert len(triggered) == 1
    assert triggered[0].parameters["result_key"] == outcome.result_key


def test_prefect_yaml_deploys(prefect_api: str) -> None:
    """`prefect deploy --all` accepts prefect.yaml: every flow, the nightly schedule and the trigger; the store
    deployments on the pool of the package's in-process worker type."""
    for pool, kind in (("faceswap-pool", "process"), ("faceswap-store", "faceswap-in-process")):
        created = prefect_cli(prefect_api, "work-pool", "create", pool, "--type", kind, "--overwrite")
        assert created.returncode == 0, created.stdout + created.stderr
    deployed = prefect_cli(prefect_api, "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    async def check() -> None:
        async with get_client() as client:
            deployments = {d.name: d for d in await client.read_deployments()}
            expected = {
                "faceswap",
                "extract-faces",
                "multi-faceswap",
                "video-faceswap",
                "multi-video-faceswap",
                "nightly-batch",
                "store-result",
                "store-results",
            }
            try:
                assert expected <= set(deployments)
                stores = {"store-result", "store-results"}
                assert all(deployments[name].work_pool_name == "faceswap-pool" for name in expected - stores)
                assert all(deployments[name].work_pool_name == "faceswap-store" for name in stores)
                nightly = deployments["nightly-batch"]
                assert nightly.schedules and nightly.schedules[0].schedule.cron == "0 2 * * *"
                assert nightly.parameters["options"]["require_consent"] is True, (
                    "the nightly batch swaps consented faces only"
                )
                automations = await client.read_automations_by_name("store-result__automation_1")
                assert automations and automations[0].trigger.expect == {"aifaceswap.task.succeeded"}
                sweeps = await client.read_automations_by_name("store-results__automation_1")
                assert sweeps and sweeps[0].trigger.within.total_seconds() == 30
                limit = deployments["store-results"].global_concurrency_limit
                assert limit is not None and limit.limit == 1
            finally:  # nobody serves these: later tests serve their own deployments of the same names
                await delete_deployments(sorted(expected))

    asyncio.run(check())
