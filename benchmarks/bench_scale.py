"""Benchmark: the scale of waiting. N swaps submitted by the batch deployment in ``wait=False`` mode against a Prefect
server on PostgreSQL, with two process workers on the work pool ``bench-pool``; the results are stored by the
store deployment (the ``store-results`` sweep, triggered by the callback events).

What runs, each in its own process: PostgreSQL (a temporary cluster, installed with apt-get when missing), the
Prefect server on it, the sandbox (result cache on, so N identical swaps cost a few real ones; callbacks held),
the webhook receiver, the media server and two ``prefect worker start`` processes.

1. Submission: the batch flow run submits every item; its wall time and jobs/s.
2. No worker slot held while waiting: the batch flow run is Completed while the N jobs are still waiting for
   their callbacks, and no flow run of the pool is running then.
3. Callbacks: once every job is done, the sandbox releases all held callbacks at once (64 in flight); the
   receiver's rate (accepted callbacks/s, from its inbox) and its peak RSS (VmHWM), how fast its events
   reach the Prefect API, and the CPU seconds each process (with its children) used meanwhile.
4. Storage: the time until every result is stored with its provenance record (count == N).
Baselines in the same run: the receiver's RSS idle right after start; a bare hook endpoint (parse, keep, answer:
the bare script's webhook server) taking the same N callbacks at the same concurrency.

Run: ``cd benchmarks && ../.venv/bin/python bench_scale.py [--jobs 10000]`` (start with ``--jobs 200``).
Targets: receiver peak RSS < 300 MB, >= 200 callbacks/s, every result stored.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from local_prefect_env import start_prefect
from postgres_server import PostgresServer
from scale_stack import (
    BATCH_DEPLOYMENT,
    Processes,
    Stack,
    batch_report,
    cpu_seconds,
    deploy,
    hook_baseline,
    memory_mb,
    pool_active,
    pool_runs,
    save_blocks,
    start_services,
    start_workers,
    store_runs,
)

RECORD_SUFFIX = ".provenance.json"


@dataclass
class Samples:
    """The receiver's memory and counts over time, sampled by a background thread."""

    rows: list[tuple[float, float, int, int]] = field(default_factory=list)  # (time, RSS MB, received, pending)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, pid: int, receiver_url: str, every: float = 0.5) -> None:
        import httpx

        while not self.stop.is_set():
            try:
                counts = httpx.get(f"{receiver_url}/health", timeout=5).json()
                received, pending = int(counts["received"]), int(counts["pending"])
            except Exception:
                received, pending = -1, -1
            self.rows.append((time.time(), memory_mb(pid)[0], received, pending))
            self.stop.wait(every)

    def first(self, condition) -> float | None:
        return next((row[0] for row in self.rows if condition(row)), None)


def write_inputs(stack: Stack, folder: Path, jobs: int) -> tuple[Path, list[tuple[str, str]]]:
    """The demo photos (and their mirror images) in storage; a JSONL manifest cycling through 4 distinct pairs."""
    from PIL import Image, ImageOps

    from faceswap_flows.devstack.demo import write_demo_photos

    astronaut, grace = write_demo_photos(stack.media_dir / "bench")
    mirrored = []
    for path in (astronaut, grace):
        target = path.with_name(f"{path.stem}-mirror.png")
        ImageOps.mirror(Image.open(path)).save(target)
        mirrored.append(target)
    keys = [str(p.relative_to(stack.media_dir)) for p in (astronaut, grace, *mirrored)]
    pairs = [(keys[0], keys[1]), (keys[1], keys[0]), (keys[2], keys[3]), (keys[3], keys[2])]
    manifest = folder / f"manifest-{jobs}.jsonl"
    lines = (
        json.dumps({"source_image": pairs[i % 4][0], "face_image": pairs[i % 4][1], "id": f"item-{i}"})
        for i in range(jobs)
    )
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, pairs


def stored_results(media_dir: Path) -> int:
    """Results under results/ that have their provenance record beside them."""
    count = 0
    for _dir, _, files in os.walk(media_dir / "results"):
        names = set(files)
        count += sum(1 for name in names if name.endswith(RECORD_SUFFIX) and name[: -len(RECORD_SUFFIX)] in names)
    return count


def inbox_times(inbox: Path) -> tuple[int, float, float]:
    with sqlite3.connect(f"file:{inbox}?mode=ro", uri=True) as db:
        count, first, last = db.execute("SELECT COUNT(*), MIN(received_at), MAX(received_at) FROM callbacks").fetchone()
    return int(count), float(first or 0), float(last or 0)


def held(stack: Stack) -> dict:
    from faceswap_flows.aifaceswap.sandbox.admin import callback_status

    return callback_status(stack.sandbox_url, stack.api_key)


async def run_batch(stack: Stack, manifest: Path, jobs: int, figures: dict) -> None:
    """Run the batch deployment; wait until it is final; check that the jobs still wait and no slot is held."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started = time.time()
    run = await run_deployment(f"batch-faceswap/{BATCH_DEPLOYMENT}", parameters={"manifest": str(manifest)}, timeout=0)
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                break
            await asyncio.sleep(1)
        finished = time.time()
        status, received = held(stack), inbox_times(stack.inbox)[0]
        figures["batch_state"] = run.state.name if run.state else "?"
        figures["submit_wall"] = finished - started
        figures["batch_run_seconds"] = (
            (run.end_time - run.start_time).total_seconds() if run.end_time and run.start_time else float("nan")
        )
        figures["running_after_batch"] = await pool_runs(client, ["RUNNING", "PENDING"])
        figures["held_at_completion"] = status["held"]
        figures["received_at_completion"] = received
        figures["batch_before_callbacks"] = bool(run.state and run.state.is_completed() and received == 0)
        figures["submitted"], figures["failed"] = batch_report(stack.media_dir)
    print(
        f"batch flow run {run.state.name if run.state else '?'} after {figures['submit_wall']:.1f} s; callbacks held "
        f"by the sandbox: {status['held']}, received: {received}; pool runs running: {figures['running_after_batch']}",
        flush=True,
    )


def wait_stored(media_dir: Path, jobs: int, timeout: float, stall: float) -> bool:
    """Until every result is stored (True), or nothing more was stored for ``stall`` seconds while no flow run of
    the pool is active, or ``timeout`` (False)."""
    started = last_change = last_note = time.monotonic()
    last = -1
    while (count := stored_results(media_dir)) < jobs:
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        elif now - last_change > stall and not pool_active():
            print(f"  stalled: {count} of {jobs} stored, nothing more for {stall:.0f} s and no run active", flush=True)
            return False
        if now - started > timeout:
            return False
        if now - last_note > 30:
            print(f"  ... {count} of {jobs} results stored", flush=True)
            last_note = now
        time.sleep(2)
    return True


def catch_up(stack: Stack, args: argparse.Namespace, released_at: float, expected: int) -> tuple[int, float]:
    """The documented catch-up after a sweep missed jobs: one store-results run by hand over the events since the
    release; returns (stored in all, seconds the catch-up took)."""
    from datetime import UTC, datetime

    from prefect.deployments import run_deployment

    since = datetime.fromtimestamp(released_at - 5, tz=UTC).isoformat()
    print(f"  catch-up: a store-results run by hand, since={since}", flush=True)
    started = time.time()
    created = run_deployment("store-results/store-results", parameters={"since": since}, timeout=0)
    if asyncio.iscoroutine(created):  # run_deployment is sync outside an event loop, async inside one
        asyncio.run(created)
    wait_stored(stack.media_dir, expected, args.timeout, args.stall_seconds)
    return stored_results(stack.media_dir), time.time() - started


def wait_until(what: str, condition, timeout: float, every: float = 1.0) -> float:
    started = time.monotonic()
    last_note = started
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")
        if time.monotonic() - last_note > 30:
            print(f"  ... still waiting: {what}", flush=True)
            last_note = time.monotonic()
        time.sleep(every)
    return time.monotonic() - started


def measure(args: argparse.Namespace, procs: Processes, folder: Path, figures: dict) -> None:
    pg = PostgresServer()
    pg.start()
    atexit.register(pg.stop)
    server = start_prefect(database_url=pg.url)
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_WORKER_QUERY_SECONDS": "2"}
    print(f"PostgreSQL {pg.url}; Prefect API {server.api_url}", flush=True)
    stack = start_services(procs, folder, env, release_concurrency=args.release_concurrency)
    time.sleep(2)
    figures.update(jobs=args.jobs, rss_idle=memory_mb(procs.pid("receiver"))[0])
    save_blocks(stack)
    figures["store_deployment"] = deploy(folder, env, max_concurrency=args.max_concurrency)
    start_workers(procs, env, 2)
    manifest, pairs = write_inputs(stack, folder, args.jobs)
    samples = Samples()
    sampler = threading.Thread(target=samples.run, args=(procs.pid("receiver"), stack.receiver_url), daemon=True)
    sampler.start()

    asyncio.run(run_batch(stack, manifest, args.jobs, figures))
    if figures["batch_state"] != "Completed":
        raise RuntimeError(f"the batch flow run ended {figures['batch_state']}: see {procs.logs}")
    expected = figures["submitted"]  # items the service refused (see the batch report) have no callback
    wait_until("every job done and its callback held", lambda: held(stack)["held"] >= expected, args.timeout)

    from faceswap_flows.aifaceswap.sandbox.admin import release_callbacks

    roots = {name: procs.pid(name) for name in procs.running}
    roots.update({"prefect server": server.process.pid, "postgresql": pg.pid})
    cpu_before = cpu_seconds(roots)
    released_at = time.time()
    figures["released"] = release_callbacks(stack.sandbox_url, stack.api_key, concurrency=args.release_concurrency)[
        "held"
    ]
    wait_until("every callback received", lambda: inbox_times(stack.inbox)[0] >= expected, args.timeout, 0.2)
    cpu_after = cpu_seconds(roots)
    count, _first, last = inbox_times(stack.inbox)
    figures["cpu_while_receiving"] = {name: cpu_after[name] - cpu_before[name] for name in roots}
    figures["callbacks_per_s"] = count / max(last - released_at, 1e-6)
    figures["receive_seconds"] = last - released_at
    wait_until("every event emitted", lambda: samples.rows and samples.rows[-1][3] == 0, args.timeout, 0.5)
    emitted = samples.first(lambda row: row[0] > released_at and row[2] >= expected and row[3] == 0)
    figures["events_per_s"] = expected / max((emitted or time.time()) - released_at, 1e-6)
    figures["all_stored"] = wait_stored(stack.media_dir, expected, args.timeout, args.stall_seconds)
    figures["store_seconds"] = time.time() - released_at
    figures["catch_up"] = None
    if not figures["all_stored"] and figures["store_deployment"] == "store-results":
        figures["catch_up"] = catch_up(stack, args, released_at, expected)
    figures["stored"] = stored_results(stack.media_dir)
    figures["store_runs"] = store_runs()
    samples.stop.set()
    sampler.join(5)
    rss, peak = memory_mb(procs.pid("receiver"))
    figures["rss_peak"] = peak
    figures["rss_end"] = rss
    figures["rss_sampled_max"] = max((row[1] for row in samples.rows), default=0.0)
    figures["cache"] = held(stack).get("cache", {})
    for name in [n for n in procs.running if n.startswith("worker")]:
        procs.stop(name)
    inputs = [(f"{stack.media_url}/{source}", f"{stack.media_url}/{face}") for source, face in pairs]
    baseline = hook_baseline(procs, env, stack, inputs, args.jobs, args.release_concurrency)
    figures["hook_per_s"], figures["hook_rss_idle"], figures["hook_rss_peak"] = baseline


def report(figures: dict) -> None:
    jobs = figures["jobs"]
    yes = "yes" if figures["batch_before_callbacks"] else "NO"
    cpu_use = dict(sorted(figures["cpu_while_receiving"].items(), key=lambda item: -item[1]))
    rows = [
        ("jobs (wait=False), 2 process workers, PostgreSQL", f"{jobs}", "", ""),
        (
            "submit: batch deployment run, wall",
            f"{figures['submit_wall']:.0f} s, {jobs / figures['submit_wall']:.1f} jobs/s",
            f"flow run itself {figures['batch_run_seconds']:.0f} s",
            "",
        ),
        (
            "batch run Completed before any callback",
            f"{yes} ({figures['held_at_completion']} jobs waiting)",
            f"pool runs running then: {figures['running_after_batch']}",
            "yes, 0 slots",
        ),
        (
            "callbacks accepted by the receiver",
            f"{figures['callbacks_per_s']:.0f} /s ({figures['receive_seconds']:.1f} s)",
            f"same sandbox -> bare hook endpoint {figures['hook_per_s']:.0f} /s",
            ">= 200 /s",
        ),
        (
            "receiver peak RSS (VmHWM)",
            f"{figures['rss_peak']:.0f} MB (sampled max {figures['rss_sampled_max']:.0f})",
            f"idle after start {figures['rss_idle']:.0f} MB; bare hook peak {figures['hook_rss_peak']:.0f} MB",
            "< 300 MB",
        ),
        (
            "CPU s used while the callbacks arrived",
            ", ".join(f"{name} {used:.1f}" for name, used in cpu_use.items()),
            f"{os.cpu_count()} cores x {figures['receive_seconds']:.0f} s = "
            f"{(os.cpu_count() or 1) * figures['receive_seconds']:.0f} CPU s",
            "",
        ),
        ("callback events reach the Prefect API", f"{figures['events_per_s']:.0f} /s", "", ""),
        (
            f"release -> all stored ({figures['store_deployment']})",
            ("" if figures["all_stored"] else "NOT ALL, stopped after ") + f"{figures['store_seconds']:.0f} s",
            f"{len(figures['store_runs'])} run(s): {', '.join(sorted(set(figures['store_runs'])))}",
            "",
        ),
        (
            "catch-up by hand (store-results --since release)",
            f"{figures['catch_up'][0]} stored after {figures['catch_up'][1]:.0f} s" if figures["catch_up"] else "-",
            "",
            "",
        ),
        (
            "stored with provenance record == submitted",
            f"{figures['stored']} of {figures['submitted']}",
            f"items failed at submission: {figures['failed']}",
            "all",
        ),
    ]
    head = ("case", "figure", "baseline (same run)", "target")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"\nscale of waiting, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; sandbox cache {figures['cache']}")
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--max-concurrency", type=int, default=16, help="the batch flow's items in flight")
    parser.add_argument("--release-concurrency", type=int, default=64, help="held callbacks delivered at once")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed for each phase")
    parser.add_argument(
        "--stall-seconds", type=float, default=300, help="stop waiting for results after this long without progress"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stored media (deleted by default; logs stay)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # exit handlers run on SIGTERM too
    folder = Path(tempfile.mkdtemp(prefix="faceswap-bench-scale-"))
    procs = Processes(folder / "logs")
    atexit.register(procs.stop_all)
    print(f"work folder and logs: {folder}", flush=True)
    figures: dict = {}
    complete = False
    try:
        measure(args, procs, folder, figures)
        complete = True
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(folder / "faceswap-media", ignore_errors=True)
        if not complete:  # interrupted or failed: what was measured so far
            print(f"partial figures: {json.dumps(figures, default=str)}", flush=True)
    report(figures)


if __name__ == "__main__":
    main()
