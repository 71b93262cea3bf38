"""Prefect's multi-server topology (PostgreSQL, Redis messaging, 2 API servers behind nginx, 1 services process,
2 receivers behind nginx, 2 process workers) drops nothing: a mixed batch of wait=False jobs with a distinct
source photo each, one API server killed mid-run, one receiver killed during the burst of callbacks
(benchmarks/scale_drill.py, in a process of its own as it points Prefect at its own balancer)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.optional import unavailable

ROOT = Path(__file__).resolve().parents[1]
JOBS, TRIGGER_JOBS = 200, 6


def missing() -> list[str]:
    needed = {"redis-server": "redis-server", "nginx": "nginx-light"}
    absent = [
        pkg for binary, pkg in needed.items() if not (shutil.which(binary) or Path(f"/usr/sbin/{binary}").exists())
    ]
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        absent.append("postgresql")
    return absent


@pytest.mark.drill
@pytest.mark.timeout(600)
def test_mixed_batch_on_the_multi_server_topology_drops_nothing(tmp_path: Path) -> None:
    if absent := missing():
        unavailable(f"Debian packages missing: {' '.join(absent)} (make ci-deps installs them)")
    figures_file = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "scale_drill.py", "--jobs", str(JOBS), "--trigger-jobs", str(TRIGGER_JOBS),
         "--kill-api", "8", "--kill-receiver", "0.3", "--timeout", "300", "--json", str(figures_file)],
        cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=580, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    expected = JOBS + TRIGGER_JOBS
    assert figures["killed"]["process"] == "api-2"
    assert (figures["submitted"], figures["failed"], figures["jobs"]) == (JOBS, 0, expected)
    # a distinct source photo per job: every job was a real swap in the sandbox, none from its result cache
    assert figures["workload"]["distinct_sources"] == expected
    assert (figures["cache"]["misses"], figures["cache"]["hits"]) == (expected, 0)
    # the batch run ended while every job still waited for its callback, holding no worker
    assert figures["batch_before_callbacks"] and figures["running_after_batch"] == 0
    # every result written once, with its provenance record
    assert figures["stored"] == figures["results_written"] == expected
    assert figures["results_written_twice"] == []
    # every submission's event, and every run's final state, reached the API through the broker
    assert figures["submitted_events"] == expected
    assert figures["task_runs"] > 0 and figures["task_runs_not_final"] == 0
    assert figures["flow_runs_not_final"] == 0
    # one triggered store-result run per store-by: trigger job, each Completed
    assert figures["trigger_jobs_with_run"] == figures["store_result_runs_completed"] == TRIGGER_JOBS
    assert sum(figures["dropped"].values()) == 0, figures["dropped"]
    # both receivers took callbacks; receiver 2 died during the burst, and every callback it left unanswered was
    # sent again by the sandbox and taken by the other (the results above: each stored once, none lost)
    per_receiver, killed = figures["callbacks_per_receiver"], figures["killed_receiver"]
    assert set(per_receiver) == {"receiver", "receiver-2"} and all(per_receiver.values()), per_receiver
    assert sum(per_receiver.values()) - figures["callbacks_in_two_inboxes"] == expected
    assert killed["process"] == "receiver-2" and 0 < killed["received_before_kill"] < expected, killed
    assert figures["callbacks_retried"] > 0
    assert figures["retried_taken_by_others"] == figures["callbacks_retried"]
