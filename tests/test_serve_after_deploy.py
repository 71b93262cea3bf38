"""`faceswap-flows serve` after `faceswap-flows deploy`: the served deployment replaces the deployed one of the same
name, and a run of it imports the flow from the package (it used to look for code in storage at None and crash)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.deployments import run_deployment

from tests.support import served_deployments


@pytest.mark.slow
async def test_a_served_deployment_runs_after_prefect_deploy_made_it(stack, prefect_api: str, tmp_path: Path) -> None:
    environment = {**os.environ, "PREFECT_API_URL": prefect_api}
    cli = [sys.executable, "-m", "faceswap_flows.cli"]
    project = tmp_path / "project"
    for command in (["init", str(project)], ["deploy", "store-result", "--project", str(project)]):
        done = subprocess.run([*cli, *command], env=environment, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = tmp_path / "serve.log"
    with served_deployments(["store-result"], prefect_api, log):
        run = await run_deployment(
            "store-result/store-result", parameters={"task_id": "never-submitted-task"}, timeout=120
        )
    assert run.state is not None and run.state.is_failed(), (run.state, log.read_text()[-3000:])
    assert "no callback event for task_id never-submitted-task" in (run.state.message or "")
    assert "Downloading flow code from storage" not in log.read_text()
