"""Nothing dropped on the multi-server topology (multi_server.py): a mixed batch of ``wait=False`` jobs, most
submitted by the batch deployment (stored by the ``store-results`` sweep) and a few by ``faceswap`` flow runs
(``store-by: trigger``: one ``store-result`` run each), optionally with one API server killed (SIGKILL) mid-run.

Checked once every callback is in and the results are stored: every job's result written exactly once (inotify
on the storage folder), every job's ``aifaceswap.task.submitted`` event in the API, every task run and flow run
in a final state, one triggered ``store-result`` run per trigger job, and no broker drop or ack failure in the
API servers' or the services' logs. Prints the figures and writes them as JSON (``--json``).

Each job has a distinct source photo (``--photo-side`` px crops around the face of the package photos): every job
is a real swap in the sandbox. Ends with a table of the checks (scale_checks.py).

Run: ``cd benchmarks && ../.venv/bin/python scale_drill.py --jobs 200 --trigger-jobs 6 [--kill-api 20]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bare_store import bare_store, stored_jobs
from bench_scale import held, run_batch, stored_results, wait_until, write_inputs
from distinct_photos import face_crops, write_distinct
from live_sweep import start_live_sweep
from local_prefect_env import percentile
from multi_server import MultiServerStack
from receiver_kill import ReceiverKill, inbox_received, inboxes_times, receiver_figures
from scale_checks import print_checks
from scale_stack import Stack, cpu_seconds, memory_mb, pool_active
from write_watch import WriteWatch

NOT_FINAL = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"]


def write_distinct_inputs(
    stack: Stack, folder: Path, jobs: int, extra: int, side: int
) -> tuple[Path, list[tuple[str, str]], dict[str, Any]]:
    """A distinct source photo (its own SHA-256) for each of the ``jobs`` batch items and the ``extra`` trigger
    jobs: ``side`` px crops around the face of the two package photos, each swapped with the other one's face
    crop; the JSONL manifest of the items, the trigger jobs' (source, face) pairs, and the workload's facts."""
    from faceswap_flows.devstack.demo import write_demo_photos

    made = stack.media_dir / "bench" / "distinct"
    started = time.monotonic()
    crops = face_crops(list(write_demo_photos(stack.media_dir / "bench")), made, side)
    faces = write_distinct(list(reversed(crops)), made, 2, "face", side=side)  # variant 0: the crop at ``side``
    sources = write_distinct(crops, made, jobs + extra, "source", side=side)
    keys = [str(path.relative_to(stack.media_dir)) for path in sources]
    face_keys = [str(path.relative_to(stack.media_dir)) for path in faces]
    pairs = [(keys[i], face_keys[i % 2]) for i in range(jobs + extra)]
    manifest = folder / f"manifest-{jobs}.jsonl"
    lines = (json.dumps({"source_image": s, "face_image": f, "id": f"item-{i}"}) for i, (s, f) in enumerate(pairs))
    manifest.write_text("\n".join(list(lines)[:jobs]) + "\n")
    workload = {
        "distinct_sources": len(sources),
        "photo_px": f"{side}x{side}",
        "photo_kb_mean": round(sum(path.stat().st_size for path in sources) / len(sources) / 1024, 1),
        "photos_seconds": round(time.monotonic() - started, 1),
        "swap_cpu_ms": swap_cpu_ms([(made / Path(s).name, made / Path(f).name) for s, f in pairs[:20]]),
    }
    return manifest, pairs[jobs:], workload


def swap_cpu_ms(pairs: list[tuple[Path, Path]]) -> float:
    """CPU ms of one swap (decode, detect both faces, paste, PNG encode) by the sandbox's engine, over ``pairs``."""
    import numpy as np
    from PIL import Image

    from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine, encode_image

    engine = FaceEngine()
    engine.swap(*(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1] for path in pairs[0]))
    started = time.process_time()
    for source, face in pairs:
        images = [np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1] for path in (source, face)]
        encode_image(engine.swap(*images), "png")
    return round((time.process_time() - started) * 1000 / len(pairs), 1)


async def trigger_jobs(pairs: list[tuple[str, str]], count: int) -> list[str]:
    """``count`` faceswap flow runs with wait=False in this process (cycling through ``pairs``); their task ids."""
    from faceswap_flows.flows.image import faceswap

    async def one(i: int) -> str:
        source, face = pairs[i % len(pairs)]
        outcome = await faceswap(source_image=source, face_image=face, options={"wait": False})
        return str(outcome.task_id)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def submitted_events(since: float) -> set[str]:
    """Task ids of every ``aifaceswap.task.submitted`` event the API stored since ``since``."""
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client

    body = {
        "filter": {
            "event": {"name": ["aifaceswap.task.submitted"]},
            "occurred": {"since": datetime.fromtimestamp(since - 60, tz=UTC).isoformat()},
            "order": "ASC",
        },
        "limit": 50,
    }
    found: set[str] = set()
    async with get_client() as client:
        page = (await client._client.post("/events/filter", json=body)).json()
        while True:
            found.update(event["resource"]["prefect.resource.id"].rsplit(".", 1)[-1] for event in page["events"])
            if not page.get("next_page"):
                return found
            page = (await client._client.get(page["next_page"])).json()


def missing_events(stack: Stack, events: set[str]) -> list[dict[str, Any]]:
    """The jobs (at most 20) the receiver took a callback of but whose submitted event is not in the API: their
    task id and when the callback came."""
    received: dict[str, float] = {}
    for inbox in stack.inboxes:
        received.update(inbox_received(inbox))
    rows = sorted(received.items(), key=lambda row: row[1])
    missing = [{"task_id": task, "callback_at": time.ctime(at)} for task, at in rows if task not in events]
    return missing[:20]


async def run_counts() -> dict[str, int]:
    """Task runs and flow runs in the API, and how many of them are not in a final state."""
    from prefect.client.orchestration import get_client

    not_final = {"state": {"type": {"any_": NOT_FINAL}}}
    failed = {"state": {"type": {"any_": ["FAILED", "CRASHED"]}}}
    async with get_client() as client:
        http = client._client
        return {
            "task_runs": (await http.post("/task_runs/count", json={})).json(),
            "task_runs_not_final": (await http.post("/task_runs/count", json={"task_runs": not_final})).json(),
            "flow_runs": (await http.post("/flow_runs/count", json={})).json(),
            "flow_runs_not_final": (await http.post("/flow_runs/count", json={"flow_runs": not_final})).json(),
            "flow_runs_failed": (await http.post("/flow_runs/count", json={"flow_runs": failed})).json(),
        }


async def deployment_runs(name: str) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])), limit=200
        )
    return [
        {
            "task_id": run.parameters.get("task_id"),
            "state": run.state.name if run.state else "?",
            "seconds": run.total_run_time.total_seconds(),
        }
        for run in runs
    ]


def settle_runs(timeout: float) -> dict[str, int]:
    """Run counts once nothing is left unfinished (task-run states reach the API through the broker), or at
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        counts = asyncio.run(run_counts())
        if counts["task_runs_not_final"] == 0 and counts["flow_runs_not_final"] == 0:  # Failed runs are final
            return counts
        if time.monotonic() > deadline:
            return counts
        time.sleep(2)


def kill_later(topology: MultiServerStack, name: str, delay: float, figures: dict) -> threading.Timer:
    def kill() -> None:
        topology.kill(name)
        figures["killed"] = {"process": name, "after_seconds": delay}
        print(f"  killed {name} (SIGKILL) {delay:.0f} s into the batch", flush=True)

    timer = threading.Timer(delay, kill)
    timer.daemon = True
    timer.start()
    return timer


def drill(args: argparse.Namespace, topology: MultiServerStack, figures: dict) -> None:
    stack = topology.stack
    assert stack is not None
    if args.photo_side:
        manifest, pairs, workload = write_distinct_inputs(
            stack, topology.folder, args.jobs, args.trigger_jobs, args.photo_side
        )
    else:
        (manifest, pairs), workload = write_inputs(stack, topology.folder, args.jobs), {"distinct_sources": 4}
    figures["workload"] = workload
    print(f"  workload: {workload}", flush=True)
    sandbox_cpu = cpu_seconds({"sandbox": topology.procs.pid("sandbox")})["sandbox"]
    watch = WriteWatch(stack.media_dir / "results").start()
    started = time.time()
    timer = kill_later(topology, "api-2", args.kill_api, figures) if args.kill_api else None

    async def submit() -> list[str]:
        batch = asyncio.create_task(run_batch(stack, manifest, args.jobs, figures))
        triggered = await trigger_jobs(pairs, args.trigger_jobs) if args.trigger_jobs else []
        await batch
        return triggered

    trigger_ids = asyncio.run(submit())
    expected = figures["submitted"] + len(trigger_ids)
    wait_until("every callback held", lambda: held(stack)["held"] >= expected, args.timeout)
    if timer is not None:
        timer.join()
    from faceswap_flows.aifaceswap.sandbox.admin import release_callbacks

    if args.live_sweep:
        paced = expected / args.release_per_second if args.release_per_second else 0
        figures["live_sweep"] = asyncio.run(start_live_sweep(args.live_sweep + paced, args.poll_seconds))
    roots = {name: process.pid for name, process in topology.procs.running.items() if process.poll() is None}
    roots["postgresql"] = topology.pg.pid
    cpu_before = cpu_seconds(roots)
    released_at = time.time()
    release_callbacks(stack.sandbox_url, stack.api_key, concurrency=64, per_second=args.release_per_second)
    killer = ReceiverKill(topology, "receiver-2", args.kill_receiver).start() if args.kill_receiver else None
    wait_until("every callback received", lambda: inboxes_times(stack.inboxes)[0] >= expected, args.timeout, 0.2)
    cpu_after = cpu_seconds({name: pid for name, pid in roots.items() if name != "receiver-2" or not killer})
    used = {name: round(cpu_after[name] - cpu_before[name], 1) for name in cpu_after}
    figures["cpu_while_receiving"] = dict(sorted(used.items(), key=lambda item: -item[1]))
    count, _first, last = inboxes_times(stack.inboxes)
    figures["callbacks_per_s"] = round(count / max(last - released_at, 1e-6), 1)
    figures["receiver_peak_rss_mb"] = round(memory_mb(topology.procs.pid("receiver"))[1], 1)
    figures["receive_seconds"] = round(last - released_at, 1)
    if killer is not None:
        killer.finish(figures)
    wait_until("every result stored", lambda: stored_results(stack.media_dir) >= expected, args.timeout, 0.5)
    cpu_stored = cpu_seconds({name: pid for name, pid in roots.items() if name in cpu_after})
    used = {name: round(cpu_stored[name] - cpu_before[name], 1) for name in cpu_stored}
    figures["cpu_release_to_stored"] = dict(sorted(used.items(), key=lambda item: -item[1]))
    wait_until("the pool idle", lambda: not pool_active(), args.timeout, 2)
    figures["seconds"] = time.time() - started
    figures["release_to_stored_seconds"] = round(time.time() - released_at, 1)
    figures.update(storing_figures(stack, released_at, expected))
    collect(args, topology, figures, watch, started, expected, trigger_ids, sandbox_cpu)


def storing_figures(stack: Stack, released_at: float, expected: int) -> dict[str, Any]:
    """How fast the results were stored: from the release of the callbacks to the last provenance record written
    (a result's last write), and the callback -> stored latency of each result (its record's mtime)."""
    received: dict[str, float] = {}
    for inbox in stack.inboxes:
        received.update(inbox_received(inbox))
    stored_at = {}
    for record in (stack.media_dir / "results").rglob("*.provenance.json"):
        stored_at[json.loads(record.read_text())["task_id"]] = record.stat().st_mtime
    last = max(stored_at.values(), default=released_at)
    latencies = sorted(at - received[task] for task, at in stored_at.items() if task in received)
    return {
        "release_to_last_stored_seconds": round(last - released_at, 1),
        "results_per_s": round(expected / max(last - released_at, 1e-6), 1),
        "callback_to_stored_p50_s": round(percentile(latencies, 0.5), 2) if latencies else None,
        "callback_to_stored_p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
        "load_while_storing": os.getloadavg(),
    }


def bare_baseline(stack: Stack, figures: dict[str, Any]) -> None:
    """The same results fetched, labelled, signed and written by a bare script (bare_store.py), for the ratio."""
    jobs = stored_jobs(stack.media_dir, stack.inboxes)
    figures["bare_baseline"] = bare = asyncio.run(bare_store(jobs, "faceswap-signing"))
    figures["results_per_s_ratio_to_bare"] = round(bare["per_s"] / max(figures.get("results_per_s") or 0, 1e-6), 2)


def collect(
    args: argparse.Namespace,
    topology: MultiServerStack,
    figures: dict,
    watch: WriteWatch,
    started: float,
    expected: int,
    trigger_ids: list[str],
    sandbox_cpu: float,
) -> None:
    """The figures of the checks, once every result is stored."""
    stack = topology.stack
    assert stack is not None
    counts = watch.stop()
    # A result is the file its provenance record is named after (temporary files renamed into place aside).
    results = {path: n for path, n in counts.items() if f"{path}.provenance.json" in counts}
    figures.update(
        jobs=expected,
        trigger_jobs=len(trigger_ids),
        stored=stored_results(stack.media_dir),
        results_written=len(results),
        results_written_twice=sorted(path for path, n in results.items() if n > 1),
        submitted_events=len(events := asyncio.run(submitted_events(started))),
        submitted_events_missing=missing_events(stack, events),
        **settle_runs(args.timeout),
        dropped=topology.dropped_messages(),
        retried=topology.retried_messages(),
        cache=(status := held(stack)).get("cache", {}),
        **receiver_figures(stack, status, "receiver-2" if args.kill_receiver else None),
    )
    used = cpu_seconds({"sandbox": topology.procs.pid("sandbox")})["sandbox"] - sandbox_cpu
    figures["sandbox_cpu_ms_per_job"] = round(used * 1000 / max(expected, 1), 1)
    sweeps = asyncio.run(deployment_runs("store-results"))
    figures["store_results_runs"] = {
        "runs": len(sweeps),
        "completed": sum(1 for run in sweeps if run["state"] == "Completed"),
        "run_seconds": sorted(round(run["seconds"], 1) for run in sweeps),
    }
    runs = asyncio.run(deployment_runs("store-result"))
    figures["store_result_runs"] = len(runs)
    figures["store_result_runs_completed"] = sum(1 for run in runs if run["state"] == "Completed")
    figures["trigger_jobs_with_run"] = len(set(trigger_ids) & {run["task_id"] for run in runs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="items of the batch deployment (store-by: sweep)")
    parser.add_argument("--trigger-jobs", type=int, default=6, help="faceswap flow runs (store-by: trigger)")
    parser.add_argument("--kill-api", type=float, default=0, help="SIGKILL API server 2 this many s into the batch")
    parser.add_argument(
        "--kill-receiver",
        type=float,
        default=0,
        help="freeze receiver 2 this many s after the callbacks' release, SIGKILL it 0.5 s later",
    )
    parser.add_argument("--receivers", type=int, default=2, help="receivers behind nginx, an inbox each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--store-worker",
        choices=["in-process", "process"],
        default="in-process",
        help="the store deployments' pool: the package's in-process worker (as prefect.yaml) or the process workers'",
    )
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="the workers' niceness: storing yields the cores to the receiver"
    )
    parser.add_argument(
        "--photo-side", type=int, default=160, help="a distinct source photo per job, this many px (0: 4 pairs cycled)"
    )
    parser.add_argument(
        "--release-per-second", type=float, help="release the held callbacks at this sustained rate (default: at once)"
    )
    parser.add_argument(
        "--live-sweep",
        type=float,
        default=0,
        help="start a store-results run this many s long (+ the paced release) before the release (0: the trigger's)",
    )
    parser.add_argument("--poll-seconds", type=float, default=0.25, help="the live sweep's look at the inbox")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(tempfile.mkdtemp(prefix="faceswap-scale-drill-"))
    print(f"work folder and logs: {folder}", flush=True)
    figures: dict[str, Any] = {"topology": "PostgreSQL + Redis messaging, 2 API servers behind nginx, 1 services"}
    started = time.monotonic()
    print(f"load before: {os.getloadavg()}", flush=True)
    try:
        topology = MultiServerStack(
            folder,
            receivers=args.receivers,
            workers=args.workers,
            worker_nice=args.worker_nice,
            store_in_process=args.store_worker == "in-process",
        )
        with topology:
            figures["start_seconds"] = time.monotonic() - started
            figures["topology"] += (
                f", {args.receivers} receivers behind nginx, {args.workers} process workers (nice {args.worker_nice})"
                f", store deployments on a {args.store_worker} worker"
            )
            drill(args, topology, figures)
            bare_baseline(topology.stack, figures)
    finally:
        figures["logs"] = str(folder / "logs")
        figures["load_after"] = os.getloadavg()
        print(json.dumps(figures, indent=1, default=str), flush=True)
        if args.json:
            args.json.write_text(json.dumps(figures, default=str))
    met = print_checks(figures)
    print(f"load after: {figures['load_after']}; every check met: {met}", flush=True)


if __name__ == "__main__":
    main()
