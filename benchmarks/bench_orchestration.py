"""Benchmark: what orchestration costs. The same N image swaps through the ``batch-faceswap`` flow and through a
bare asyncio + httpx script (submit, wait for the webhook, download), with the same concurrency, against the
same sandbox (real swaps, no processing delay) on loopback.

Run: ``.venv/bin/python benchmarks/bench_orchestration.py [--jobs 100 500] [--concurrency 8]``.
Target: ratio (flow / script) <= 1.3 at N = 500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

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


async def bare_script(stack, jobs: int, concurrency: int, source: str, face: str, out: Path) -> None:
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
        async with httpx.AsyncClient(timeout=120) as http:

            async def one(i: int) -> None:
                async with slots:
                    answer = await http.post(
                        f"{stack.sandbox.url}/api/aifaceswap/v1/faceswap",
                        json={"source_image": source, "face_image": face, "webhook": f"{server.url}/hook"},
                        headers={"Authorization": f"Bearer {stack.api_key}"},
                    )
                    callback = await hooks.future(answer.json()["data"]["task_id"])
                    result = await http.get(callback["result_image"])
                    (out / f"{i}.png").write_bytes(result.content)

            await asyncio.gather(*(one(i) for i in range(jobs)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    start_prefect()
    from flows.batch import batch_faceswap
    from flows.demo import write_demo_photos
    from flows.local_stack import LocalStack

    rows = []
    with tempfile.TemporaryDirectory() as folder, LocalStack(folder, credits=10**7) as stack:
        source_path, face_path = write_demo_photos(stack.media_dir / "bench")
        source = f"{stack.media_server.url}/bench/{source_path.name}"
        face = f"{stack.media_server.url}/bench/{face_path.name}"
        for jobs in args.jobs:
            manifest = Path(folder) / f"manifest-{jobs}.jsonl"
            manifest.write_text(
                "\n".join(json.dumps({"source_image": source, "face_image": face}) for _ in range(jobs))
            )
            out = Path(folder) / f"bare-{jobs}"
            out.mkdir()
            started = time.perf_counter()
            asyncio.run(bare_script(stack, jobs, args.concurrency, source, face, out))
            bare = time.perf_counter() - started
            started = time.perf_counter()
            report = asyncio.run(batch_faceswap(str(manifest), max_concurrency=args.concurrency))
            flow = time.perf_counter() - started
            assert report.stored == jobs, report
            assert len(list(out.iterdir())) == jobs
            rows.append((jobs, flow, bare))
    print(f"orchestration overhead, {time.strftime('%Y-%m-%d')}, concurrency {args.concurrency} (seconds)")
    print(f"{'jobs':>6} {'batch flow':>11} {'bare script':>12} {'ratio':>6}  target")
    for jobs, flow, bare in rows:
        print(f"{jobs:6d} {flow:11.1f} {bare:12.1f} {flow / bare:6.2f}  <= 1.3 at 500")


if __name__ == "__main__":
    main()
