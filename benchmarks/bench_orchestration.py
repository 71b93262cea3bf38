"""Benchmark: what orchestration costs. The same N image swaps through the ``batch-faceswap`` flow and through a
bare asyncio + httpx script (submit, wait for the webhook, download), with the same concurrency, against the
same sandbox (real swaps, no processing delay) on loopback.

The sandbox, the receiver and the media server run in a process of their own (the service is remote in real
life), so the CPU each side spends is measured apart: this process (flow or script), the Prefect server, and
the stack.

Run: ``cd benchmarks && ../.venv/bin/python bench_orchestration.py [--jobs 100 500] [--concurrency 8]
[--rounds 3] [--items-per-task N] [--database postgresql|sqlite] [--server-settings batch|prefect-defaults]``:
each side runs ``--rounds`` times per N, alternating which goes first, and the medians are shown with the host's
CPU steal. PostgreSQL (the set-up docs/scale.md advises beyond a few hundred jobs) is installed with apt-get and
started by the benchmark. The Prefect server runs with the settings docs/scale.md advises for batches (the
devstack's BATCH_SERVER_SETTINGS: task-run states written 20 at a time) unless ``prefect-defaults``.
Targets at N = 500: ratio (flow / script) <= 1.25 with the items in groups, <= 1.6 with ``--items-per-task 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from local_prefect_env import start_prefect

from faceswap_flows.devstack.prefect_server import BATCH_SERVER_SETTINGS


class Hooks:
    """The bare script's webhook endpoint: resolves one future per task_id (thread-safe)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.futures: dict[str, asyncio.Future[dict]] = {}
        self.early: dict[str, dict] = {}
        self.lock = threading.Lock()

    def future(self, task_id: str) -> asyncio.Future[dict]:
        assert self.loop is not None
        with self.lock:
            future = self.futures.setdefault(task_id, self.loop.create_future())
            if task_id in self.early:
                future.set_result(self.early.pop(task_id))
        return future

    def arrived(self, body: dict) -> None:
        with self.lock:
            future = self.futures.get(body["task_id"])
            if future is None:
                self.early[body["task_id"]] = body
                return
        assert self.loop is not None
        self.loop.call_soon_threadsafe(lambda: future.done() or future.set_result(body))


async def bare_script(stack: dict[str, Any], jobs: int, concurrency: int, out: Path) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from faceswap_flows.aifaceswap.http_server import BackgroundServer

    hooks = Hooks()
    hooks.loop = asyncio.get_running_loop()

    async def hook(request: Request) -> JSONResponse:
        hooks.arrived(await request.json())
        return JSONResponse({"ok": True})

    slots = asyncio.Semaphore(concurrency)
    with BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        hook_url = f"{server.url}/hook"
        async with httpx.AsyncClient(timeout=120) as http:

            async def one(i: int) -> None:
                async with slots:
                    source, face = item_inputs(stack, i)
                    body = {"source_image": source, "face_image": face, "webhook": hook_url}
                    answer = await http.post(
                        f"{stack['sandbox']}/api/aifaceswap/v1/faceswap",
                        json=body,
                        headers={"Authorization": f"Bearer {stack['api_key']}"},
                    )
                    callback = await hooks.future(answer.json()["data"]["task_id"])
                    result = await http.get(callback["result_image"])
                    (out / f"{i}.png").write_bytes(result.content)

            await asyncio.gather(*(one(i) for i in range(jobs)))


def item_inputs(stack: dict[str, Any], i: int) -> tuple[str, str]:
    """Item ``i``'s (source, face) URLs: its own photos when the workload has distinct ones."""
    sources, faces = stack["sources"] or [stack["source"]], stack["faces"] or [stack["face"]]
    return sources[i % len(sources)], faces[i % len(faces)]


def serve_stack(
    folder: str, environment: dict[str, str], ready: Any, stop: Any, distinct: str = "none", count: int = 0
) -> None:
    """The sandbox, receiver and media server with the blocks saved (in a child process); with ``distinct``
    ("source" or "both"), ``count`` distinct source (and face) photos made from the package photos."""
    os.environ.update(environment)
    from distinct_photos import write_distinct

    from faceswap_flows.devstack.demo import write_demo_photos
    from faceswap_flows.devstack.stack import LocalStack

    with LocalStack(folder, credits=10**7) as stack:
        source_path, face_path = write_demo_photos(stack.media_dir / "bench")
        base = f"{stack.media_server.url}/bench"
        made = stack.media_dir / "bench" / "distinct"
        sources = write_distinct([source_path, face_path], made, count, "source") if distinct != "none" else []
        faces = write_distinct([face_path, source_path], made, count, "face") if distinct == "both" else []
        ready.put(
            {
                "sandbox": stack.sandbox.url,
                "api_key": stack.api_key,
                "source": f"{base}/{source_path.name}",
                "face": f"{base}/{face_path.name}",
                "sources": [f"{base}/distinct/{path.name}" for path in sources],
                "faces": [f"{base}/distinct/{path.name}" for path in faces],
                "pid": os.getpid(),
            }
        )
        stop.wait()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of all its descendants (live, or finished and reaped), from /proc; for
    this process, only its own (the Prefect server and the stack are its children, measured apart)."""
    if pid == os.getpid():
        return sum(os.times()[:2])
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            total += sum(int(value) for value in _stat(current)[11:15])
            todo.extend(children.get(current, []))
    return total / os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> tuple[int, int]:
    """The machine's (stolen, total) CPU ticks so far, from /proc/stat (stolen: taken by the VM's host)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[7], sum(values[:8])


class Meter:
    """CPU seconds spent by each process between start and stop, the wall time, and the share of the machine's
    CPU time its host took meanwhile (steal: a busy neighbour on a shared VM makes a run slower)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.phases: dict[str, float] = {}

    def __enter__(self) -> Meter:
        self.started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._ticks = _cpu_ticks()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = {name: cpu_seconds(pid) - self.started[name] for name, pid in self.pids.items()}
        stolen, total = (now - before for now, before in zip(_cpu_ticks(), self._ticks, strict=True))
        self.steal = stolen / total if total else 0.0


Round = tuple[Meter, Meter]  # (batch flow, bare script)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side per N, alternated; medians shown")
    parser.add_argument("--items-per-task", type=int, default=None, help="the batch flow's items_per_task")
    parser.add_argument(
        "--database", choices=["postgresql", "sqlite"], default="postgresql", help="the Prefect server's database"
    )
    parser.add_argument(
        "--distinct",
        choices=["none", "source", "both"],
        default="source",
        help="each item's own source photo (and face photo: both), made from the package photos; none: one pair",
    )
    parser.add_argument(
        "--server-settings",
        choices=["batch", "prefect-defaults"],
        default="batch",
        help="the Prefect server's settings: the devstack's BATCH_SERVER_SETTINGS, or Prefect's defaults",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as resources:
        database_url, database_pid = None, None
        if args.database == "postgresql":
            from postgres_server import PostgresServer

            database = resources.enter_context(PostgresServer())
            database_url = database.url
            database_pid = int((database.data / "postmaster.pid").read_text().split()[0])
        server = start_prefect(database_url, batch_settings=args.server_settings == "batch")
        assert server.process is not None
        pids = {"flow or script": os.getpid(), "prefect server": server.process.pid}
        if database_pid:
            pids["database"] = database_pid
        options = {} if args.items_per_task is None else {"items_per_task": args.items_per_task}
        rows, finishing = measure(pids, args.jobs, args.concurrency, args.rounds, options, args.distinct)
        server.stop()
    described = {**options, "distinct photos": args.distinct, "server settings": server_settings(args.server_settings)}
    report(rows, args.concurrency, args.database, described, finishing)


def server_settings(choice: str) -> str:
    if choice != "batch":
        return "Prefect's defaults"
    return "batch (" + " ".join(f"{name}={value}" for name, value in BATCH_SERVER_SETTINGS.items()) + ")"


def measure(
    pids: dict[str, int],
    job_counts: list[int],
    concurrency: int,
    rounds: int,
    options: dict[str, Any],
    distinct: str = "none",
) -> tuple[list[tuple[int, list[Round]]], dict[str, float]]:
    """Each N through the bare script and through the batch flow, ``rounds`` times each, alternating which side
    goes first, with the stack in its own process; and the CPU of what the flow adds to each result."""
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Queue(), spawn.Event()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        environment = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
        child = spawn.Process(
            target=serve_stack, args=(folder, environment, ready, stop, distinct, max(job_counts)), daemon=True
        )
        child.start()
        try:
            stack = ready.get(timeout=120)
            pids = {**pids, "stack": stack["pid"]}
            for jobs in job_counts:
                manifest = Path(folder) / f"manifest-{jobs}.jsonl"
                lines = (
                    json.dumps(dict(zip(("source_image", "face_image"), item_inputs(stack, i), strict=True)))
                    for i in range(jobs)
                )
                manifest.write_text("\n".join(lines))

                done = []
                for number in range(rounds):
                    out = Path(folder) / f"bare-{jobs}-{number}"
                    if number % 2 == 0:
                        bare = run_bare(pids, stack, jobs, concurrency, out)
                        flow = run_flow(pids, manifest, jobs, concurrency, options)
                    else:
                        flow = run_flow(pids, manifest, jobs, concurrency, options)
                        bare = run_bare(pids, stack, jobs, concurrency, out)
                    done.append((flow, bare))
                    print(f"N={jobs} round {number + 1}: flow {flow.wall:.1f} s, bare {bare.wall:.1f} s", flush=True)
                rows.append((jobs, done))
            finishing = finishing_cpu_ms(out)
        finally:
            stop.set()
            child.join(timeout=30)
    return rows, finishing


def finishing_cpu_ms(results: Path, count: int = 20) -> dict[str, float]:
    """CPU ms per result of what the flow does to every result and the bare script does not: embed the
    synthetic-media label (IPTC) and a C2PA manifest signed with the stack's signing block; measured in this
    process on ``count`` of the bare script's own results."""
    from faceswap_flows.flows.defaults import DEFAULT_SIGNING
    from faceswap_flows.flows.provenance.content_credentials import (
        ManifestFacts,
        SigningPlan,
        load_signing_key,
        sign_bytes,
    )
    from faceswap_flows.flows.provenance.labels import SyntheticLabel, label_image

    inputs = [{"field": f, "key": f"inputs/{f}.png", "sha256": "0" * 64} for f in ("source_image", "face_image")]
    facts = ManifestFacts(operation="faceswap", task_id="bench", credits=1, inputs=inputs)
    plan = SigningPlan(block=DEFAULT_SIGNING, key=asyncio.run(load_signing_key(DEFAULT_SIGNING)), facts=facts)
    label = SyntheticLabel(task_id="bench", operation="faceswap")
    files = sorted(results.iterdir())[:count]
    spent = {"label": 0.0, "sign": 0.0}
    for path in files:
        started = time.process_time()
        labelled, media_type = label_image(path.read_bytes(), label)
        labelled_at = time.process_time()
        sign_bytes(plan, labelled, media_type, path.name)
        spent["label"] += labelled_at - started
        spent["sign"] += time.process_time() - labelled_at
    return {name: 1000 * value / len(files) for name, value in spent.items()}


def run_bare(pids: dict[str, int], stack: dict[str, Any], jobs: int, concurrency: int, out: Path) -> Meter:
    out.mkdir()
    with Meter(pids) as bare:
        asyncio.run(bare_script(stack, jobs, concurrency, out))
    assert len(list(out.iterdir())) == jobs
    return bare


def run_flow(pids: dict[str, int], manifest: Path, jobs: int, concurrency: int, options: dict[str, Any]) -> Meter:
    from faceswap_flows.flows.batch.flow import batch_faceswap

    async def batch() -> Any:
        return await batch_faceswap(
            str(manifest), max_concurrency=concurrency, force=True, return_state=True, **options
        )

    with Meter(pids) as flow:
        state = asyncio.run(batch())
    report = state.result(raise_on_failure=False)
    failed = [item.error for item in report.items if item.status != "stored"]
    assert not failed, f"{len(failed)} of {jobs} items not stored, first: {failed[0]}"
    flow.phases = asyncio.run(flow_phases(state.state_details.flow_run_id))
    return flow


async def flow_phases(flow_run_id: Any) -> dict[str, float]:
    """Seconds from the flow run's start to the end of each of its phases (the last task run of each task:
    plan_batch, stage_inputs, swap_items...) and of the run, from Prefect's own task-run timings."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    await asyncio.sleep(2)  # the task-run recorder writes the last states from events
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        of_run, tasks = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), []
        while page := await client.read_task_runs(flow_run_filter=of_run, offset=len(tasks), limit=200):
            tasks += page
    if run.start_time is None:
        return {}
    ends: dict[str, float] = {}
    for task_run in tasks:
        if task_run.end_time is not None:
            name = task_run.task_key.rsplit("-", 1)[0]
            ends[name] = max(ends.get(name, 0.0), (task_run.end_time - run.start_time).total_seconds())
    if run.end_time is not None:
        ends["end"] = (run.end_time - run.start_time).total_seconds()
    return dict(sorted(ends.items(), key=lambda item: item[1]))


def report(
    rows: list[tuple[int, list[Round]]],
    concurrency: int,
    database: str,
    options: dict[str, Any],
    finishing: dict[str, float],
) -> None:
    names = list(rows[0][1][0][0].cpu)
    print(
        f"orchestration overhead, {time.strftime('%Y-%m-%d')}, concurrency {concurrency}, Prefect on {database}"
        + "".join(f", {name}={value}" for name, value in options.items())
    )
    print(
        f"{'jobs':>6} {'side':>12} {'wall s':>7} {'ratio':>6}  {'steal':>5}   CPU ms per job: "
        + " ".join(f"{n:>14}" for n in names)
    )
    for jobs, done in rows:
        for side, name in ((0, "batch flow"), (1, "bare script")):
            meters = sorted((run[side] for run in done), key=lambda meter: meter.wall)
            median = meters[len(meters) // 2]
            ratio = f"{median_wall(done, 0) / median_wall(done, 1):6.2f}" if side == 0 else " " * 6
            per_job = " ".join(f"{1000 * median.cpu[n] / jobs:14.0f}" for n in names)
            print(f"{jobs:6d} {name:>12} {median.wall:7.1f} {ratio}  {100 * median.steal:4.0f}%   {'':16}{per_job}")
        print(f"{'':6} {'each round':>12}: " + ", ".join(f"{flow.wall / bare.wall:.2f}" for flow, bare in done))
        print(
            f"{'':6} {'CPU ratio':>12}: "
            + ", ".join(f"{sum(flow.cpu.values()) / sum(bare.cpu.values()):.2f}" for flow, bare in done)
            + " (all processes' CPU, flow / script, each round: what other work on the cores does not change)"
        )
        phases = sorted((run[0] for run in done), key=lambda meter: meter.wall)[len(done) // 2].phases
        print(
            f"{'':6} {'flow phases':>12}: s from the run's start to the end of "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items())
        )
    workload = {
        "none": "every item the same pair of photos",
        "source": "a distinct source photo per item (crop, mirror, colour shift of 2 package photos), one face photo",
        "both": "a distinct source photo and a distinct face photo per item",
    }[str(options.get("distinct photos", "none"))]
    print(
        "the flow also does what the bare script does not, for every item: SHA-256 of every input in its plan, a "
        "submission record, the synthetic-media label and a signed C2PA manifest in the result, a provenance "
        f"record; label {finishing['label']:.1f} ms and C2PA signing {finishing['sign']:.1f} ms of CPU per result "
        "(measured here on the bare script's results), included in the flow's figures"
    )
    print(f"workload: {workload}; load average {Path('/proc/loadavg').read_text().split()[:3]}")
    print("median of the rounds (CPU and steal: the median run's); targets at 500 jobs: ratio <= 1.25 (groups),")
    print("<= 1.6 (items_per_task=1)")


def median_wall(done: list[Round], side: int) -> float:
    walls = sorted(run[side].wall for run in done)
    return walls[len(walls) // 2]


if __name__ == "__main__":
    main()
