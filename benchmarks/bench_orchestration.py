"""Benchmark: what orchestration costs. The same N image swaps through the ``batch-faceswap`` flow and through a
bare asyncio + httpx script (submit, wait for the webhook, download), with the same concurrency, against the
same sandbox (real swaps, no processing delay) on loopback.

The sandbox, the receiver and the media server run in a process of their own (the service is remote in real
life), so the CPU each side spends is measured apart: this process (flow or script), the Prefect server, and
the stack.

Run: ``cd benchmarks && ../.venv/bin/python bench_orchestration.py [--jobs 100 500] [--concurrency 8]
[--database postgresql|sqlite]`` (PostgreSQL, the set-up docs/scale.md advises beyond a few hundred jobs, is
installed with apt-get and started by the benchmark).
Target: ratio (flow / script) <= 1.3 at N = 500.
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

    from aifaceswap.http_server import BackgroundServer

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
                    body = {"source_image": stack["source"], "face_image": stack["face"], "webhook": hook_url}
                    answer = await http.post(
                        f"{stack['sandbox']}/api/aifaceswap/v1/faceswap",
                        json=body,
                        headers={"Authorization": f"Bearer {stack['api_key']}"},
                    )
                    callback = await hooks.future(answer.json()["data"]["task_id"])
                    result = await http.get(callback["result_image"])
                    (out / f"{i}.png").write_bytes(result.content)

            await asyncio.gather(*(one(i) for i in range(jobs)))


def serve_stack(folder: str, environment: dict[str, str], ready: Any, stop: Any) -> None:
    """The sandbox, receiver and media server with the blocks saved (in a child process)."""
    os.environ.update(environment)
    from flows.demo import write_demo_photos
    from flows.local_stack import LocalStack

    with LocalStack(folder, credits=10**7) as stack:
        source_path, face_path = write_demo_photos(stack.media_dir / "bench")
        ready.put(
            {
                "sandbox": stack.sandbox.url,
                "api_key": stack.api_key,
                "source": f"{stack.media_server.url}/bench/{source_path.name}",
                "face": f"{stack.media_server.url}/bench/{face_path.name}",
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


class Meter:
    """CPU seconds spent by each process between start and stop, and the wall time."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def __enter__(self) -> Meter:
        self.started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = {name: cpu_seconds(pid) - self.started[name] for name, pid in self.pids.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--database", choices=["postgresql", "sqlite"], default="postgresql", help="the Prefect server's database"
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as resources:
        database_url, database_pid = None, None
        if args.database == "postgresql":
            from postgres_server import PostgresServer

            database = resources.enter_context(PostgresServer())
            database_url = database.url
            database_pid = int((database.data / "postmaster.pid").read_text().split()[0])
        server = start_prefect(database_url)
        assert server.process is not None
        pids = {"flow or script": os.getpid(), "prefect server": server.process.pid}
        if database_pid:
            pids["database"] = database_pid
        rows = measure(pids, args.jobs, args.concurrency)
        server.stop()
    report(rows, args.concurrency, args.database)


def measure(pids: dict[str, int], job_counts: list[int], concurrency: int) -> list[tuple[int, Meter, Meter]]:
    """Each N through the bare script, then through the batch flow, with the stack in its own process."""
    from flows.batch import batch_faceswap

    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Queue(), spawn.Event()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        environment = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
        child = spawn.Process(target=serve_stack, args=(folder, environment, ready, stop), daemon=True)
        child.start()
        try:
            stack = ready.get(timeout=120)
            pids = {**pids, "stack": stack["pid"]}
            for jobs in job_counts:
                manifest = Path(folder) / f"manifest-{jobs}.jsonl"
                line = json.dumps({"source_image": stack["source"], "face_image": stack["face"]})
                manifest.write_text("\n".join([line] * jobs))
                out = Path(folder) / f"bare-{jobs}"
                out.mkdir()
                with Meter(pids) as bare:
                    asyncio.run(bare_script(stack, jobs, concurrency, out))
                assert len(list(out.iterdir())) == jobs
                with Meter(pids) as flow:
                    report = asyncio.run(batch_faceswap(str(manifest), max_concurrency=concurrency))
                failed = [item.error for item in report.items if item.status != "stored"]
                assert not failed, f"{len(failed)} of {jobs} items not stored, first: {failed[0]}"
                rows.append((jobs, flow, bare))
        finally:
            stop.set()
            child.join(timeout=30)
    return rows


def report(rows: list[tuple[int, Meter, Meter]], concurrency: int, database: str) -> None:
    names = list(rows[0][1].cpu)
    print(f"orchestration overhead, {time.strftime('%Y-%m-%d')}, concurrency {concurrency}, Prefect on {database}")
    print(
        f"{'jobs':>6} {'side':>12} {'wall s':>7} {'ratio':>6}   CPU ms per job: " + " ".join(f"{n:>14}" for n in names)
    )
    for jobs, flow, bare in rows:
        for name, meter in (("batch flow", flow), ("bare script", bare)):
            ratio = f"{flow.wall / bare.wall:6.2f}" if meter is flow else " " * 6
            per_job = " ".join(f"{1000 * meter.cpu[n] / jobs:14.0f}" for n in names)
            print(f"{jobs:6d} {name:>12} {meter.wall:7.1f} {ratio}   {'':16}{per_job}")
    print("target: ratio <= 1.3 at 500 jobs")


if __name__ == "__main__":
    main()
