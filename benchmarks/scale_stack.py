"""For bench_scale: the stack in separate processes (sandbox, receiver, media server, work-pool workers), each in
its own session so that it can be measured (/proc/<pid>/status) and stopped by its PID; the work pool and the
deployments; and the baseline hook server (a bare Starlette endpoint, as the bare script of bench_orchestration)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from local_prefect_env import ROOT

from faceswap_flows.devstack.prefect_server import free_port

POOL = "bench-pool"
# The store deployments' pool when they run in the package's in-process worker (as prefect.yaml puts them).
STORE_POOL = "bench-store"
IN_PROCESS = "faceswap-in-process"
BATCH_DEPLOYMENT = "bench-batch"
CLI = str(Path(sys.executable).parent / "faceswap-flows")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB; (0, 0) once it is gone."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    return values["VmRSS"], values["VmHWM"]


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of its children it has waited for)."""
    table, tick = {}, os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), sum(int(value) for value in fields[11:15]) / tick)
    return table


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process with all its descendants (those that have
    ended count through their parent, once it has waited for them)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    used = {}
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            total += table.get(pid, (0, 0.0))[1]
            stack.extend(children.get(pid, []))
        used[name] = total
    return used


def wait_http(url: str, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode} before answering {url}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {timeout}s")
        time.sleep(0.2)


@dataclass
class Processes:
    """Child processes by name, with their logs in ``logs``; ``stop_all`` ends each by PID (TERM, then KILL)."""

    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running[name] = process
        return process

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def stop(self, name: str, grace: float = 10.0) -> None:
        process = self.running.pop(name, None)
        if process is None or process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)  # the group: a worker's flow-run subprocesses go too
            except ProcessLookupError:
                return
            try:
                process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


@dataclass
class Stack:
    sandbox_url: str
    receiver_url: str
    media_url: str
    media_dir: Path
    inbox: Path
    api_key: str
    secret: str
    receivers: dict[str, tuple[str, Path]] = field(default_factory=dict)  # process name -> (its own URL, inbox)

    @property
    def inboxes(self) -> list[Path]:
        return [inbox for _, inbox in self.receivers.values()] or [self.inbox]


def receiver_name(number: int) -> str:
    return "receiver" if number == 1 else f"receiver-{number}"  # the first is named as when it is the only one


def start_receiver(procs: Processes, stack: Stack, name: str, env: dict[str, str]) -> None:
    """Start (or start again, on the same inbox and port) the receiver process ``name`` of ``stack.receivers``."""
    url, inbox = stack.receivers[name]
    command = [CLI, "receiver", "--port", url.rsplit(":", 1)[1], "--inbox", str(inbox), "--secret", stack.secret]
    process = procs.start(name, command, env)
    wait_http(f"{url}/health", 60, process)


def start_services(
    procs: Processes,
    folder: Path,
    env: dict[str, str],
    *,
    release_concurrency: int,
    receiver_ports: list[int] | None = None,
) -> Stack:
    """Sandbox (result cache on, callbacks held), receivers (one per port of ``receiver_ports``, each with an
    inbox of its own, the same signing secret) and media server, each in its own process. ``receiver_url`` is the
    first receiver's; behind a load balancer, set it to the balancer's."""
    ports = [free_port() for _ in range(3)]
    receiver_ports = receiver_ports or [ports[1]]
    api_key, secret = "bench-key", os.urandom(18).hex()
    media_dir, inbox = folder / "faceswap-media", folder / "receiver" / "inbox.sqlite"
    media_dir.mkdir(parents=True, exist_ok=True)
    sandbox = procs.start(
        "sandbox",
        [CLI, "sandbox", "--port", str(ports[0]), "--api-key", api_key, "--credits", str(10**9),
         "--concurrency", "2", "--result-ttl", str(7 * 24 * 3600), "--result-cache", "--hold-callbacks",
         "--release-concurrency", str(release_concurrency)],
        env,
    )  # fmt: skip
    media = procs.start("media-server", [CLI, "media-server", str(media_dir), "--port", str(ports[2])], env)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    receivers = {
        receiver_name(n): (f"http://127.0.0.1:{port}", folder / receiver_name(n) / "inbox.sqlite")
        for n, port in enumerate(receiver_ports, start=1)
    }
    stack = Stack(urls[0], receivers["receiver"][0], urls[2], media_dir, inbox, api_key, secret, receivers)
    for name in receivers:
        start_receiver(procs, stack, name, env)
    wait_http(f"{urls[0]}/health", 120, sandbox)
    wait_http(f"{urls[2]}/", 60, media)
    return stack


def save_blocks(stack: Stack) -> None:
    from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
    from faceswap_flows.flows.blocks_config import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_STORAGE

    AIFaceSwapCredentials(api_key=stack.api_key, base_url=stack.sandbox_url).save(DEFAULT_CREDENTIALS, overwrite=True)
    MediaStorage(basepath=str(stack.media_dir), public_base_url=stack.media_url).save(DEFAULT_STORAGE, overwrite=True)
    WebhookReceiver(public_url=stack.receiver_url, signing_secret=stack.secret).save(DEFAULT_RECEIVER, overwrite=True)


def store_deployment() -> dict[str, Any]:
    """The project's sweep deployment (``store-results``) as prefect.yaml declares it, triggers included; while it
    is not declared yet, the per-job ``store-result`` deployment."""
    declared = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    return dict(declared.get("store-results") or declared["store-result"])


def lowered(command: list[str], nice: int) -> list[str]:
    """``command`` at a lower CPU priority. ``nice`` alone does not reach across sessions (with Linux's
    autogroups each session shares the CPU as one, and the workers start each flow run in a session of its own),
    so the session's autogroup is lowered too."""
    if not nice:
        return command
    script = f"{{ echo {nice} > /proc/self/autogroup; }} 2>/dev/null; exec nice -n {nice} {shlex.join(command)}"
    return ["sh", "-c", script]


def deploy(
    folder: Path,
    env: dict[str, str],
    *,
    max_concurrency: int,
    also: tuple[str, ...] = (),
    nice: int = 0,
    store_in_process: bool = False,
) -> str:
    """Create the process work pool and deploy the batch flow (wait=False) and the store deployment to it, and
    the deployments of prefect.yaml named in ``also``; their flow runs at ``nice`` (see :func:`lowered`). With
    ``store_in_process``, the store deployments go to an in-process pool instead (:func:`start_store_worker`)."""
    from faceswap_flows.flows.deployments import PACKAGE_STORE_POOL

    pool: dict[str, Any] = {"name": POOL, "work_queue_name": "default"}
    if nice:
        pool["job_variables"] = {"command": shlex.join(lowered([sys.executable, "-m", "prefect.engine"], nice))}
    store_pool = {"name": STORE_POOL, "work_queue_name": "default"} if store_in_process else pool
    store = {**store_deployment(), "work_pool": store_pool}
    declared = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    extra = [
        {
            **declared[name],
            "work_pool": store_pool if declared[name]["work_pool"]["name"] == PACKAGE_STORE_POOL else pool,
        }
        for name in also
    ]
    project = {
        "name": "faceswap-bench-scale",
        "prefect-version": "3.9.1",
        "build": None,
        "push": None,
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}],
        "deployments": [
            {
                "name": BATCH_DEPLOYMENT,
                "entrypoint": "flows/batch/flow.py:batch_faceswap",
                "work_pool": pool,
                "parameters": {"options": {"wait": False}, "max_concurrency": max_concurrency, "force": True},
            },
            store,
            *extra,
        ],
    }
    project_file = folder / "bench-prefect.yaml"
    project_file.write_text(yaml.safe_dump(project, sort_keys=False))
    prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
    pools = [[*prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"]]
    if store_in_process:
        pools.append([*prefect, "work-pool", "create", STORE_POOL, "--type", IN_PROCESS, "--overwrite"])
    for command in (*pools, [*prefect, "deploy", "--all", "--prefect-file", str(project_file)]):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[2:6])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return str(store["name"])


def start_workers(procs: Processes, env: dict[str, str], count: int = 2, nice: int = 0) -> None:
    """``count`` process workers; ``nice`` > 0 runs them below the receiver's priority, as batch work on a host
    shared with it (their flow runs too: :func:`deploy`)."""
    for i in range(1, count + 1):
        command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process",
                   "--name", f"bench-worker-{i}"]  # fmt: skip
        procs.start(f"worker-{i}", lowered(command, nice), env)


def start_store_worker(procs: Processes, env: dict[str, str], nice: int = 0) -> None:
    """The in-process worker of the store pool (``prefect worker start`` knows its type from the package)."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", STORE_POOL, "--name", "bench-store-worker"]
    procs.start("store-worker", lowered(command, nice), env)


# Reading the state of the run.


async def pool_runs(client, states: list[str]) -> int:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states))),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL, STORE_POOL])),
    )
    return len(runs)


def pool_active() -> int:
    """Flow runs of the pool scheduled, pending or running now."""
    from prefect.client.orchestration import get_client

    async def count() -> int:
        async with get_client() as client:
            return await pool_runs(client, ["SCHEDULED", "PENDING", "RUNNING"])

    return asyncio.run(count())


def store_runs() -> list[str]:
    """The states of the store deployment's flow runs, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["store-results", "store-result"])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            )
        return [run.state.name if run.state else "?" for run in runs]

    return asyncio.run(read())


def batch_report(media_dir: Path) -> tuple[int, int]:
    """(submitted, failed) items, from the report the batch flow wrote to storage."""
    for path in (media_dir / "reports").glob("*.json"):
        if not path.name.endswith("-provenance.json"):
            report = json.loads(path.read_text())
            return int(report["submitted"]), int(report["failed"])
    raise RuntimeError(f"the batch flow wrote no report under {media_dir / 'reports'}")


# The baseline: the same sandbox delivering the same number of held callbacks, released the same way, to a bare
# hook endpoint (parse the JSON, keep it in a dict, answer: the bare script's webhook server) in its own process.


def hook_server(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    received: dict[str, dict[str, Any]] = {}
    times: list[float] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.json()
        received[body["task_id"]] = body
        times.append(time.time())
        return JSONResponse({"ok": True})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"received": len(received), "last": times[-1] if times else None})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def submit_direct(stack: Stack, webhook: str, inputs: list[tuple[str, str]], count: int) -> None:
    """``count`` faceswap jobs straight to the sandbox (no Prefect), cycling through ``inputs`` URL pairs."""

    slots = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(timeout=120, headers=headers) as http:

        async def one(i: int) -> None:
            source, face = inputs[i % len(inputs)]
            async with slots:
                answer = await http.post(
                    f"{stack.sandbox_url}/api/aifaceswap/v1/faceswap",
                    json={"source_image": source, "face_image": face, "webhook": webhook},
                )
                answer.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(count)))


def hook_baseline(
    procs: Processes, env: dict[str, str], stack: Stack, inputs: list[tuple[str, str]], count: int, concurrency: int
) -> tuple[float, float, float]:
    """(callbacks/s, idle RSS MB, peak RSS MB) of the bare hook endpoint taking ``count`` released callbacks."""

    from faceswap_flows.aifaceswap.sandbox.admin import callback_status, hold_callbacks, release_callbacks

    port = free_port()
    process = procs.start("hook-baseline", [sys.executable, __file__, "--hook-server", str(port)], env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", 60, process)
        idle = memory_mb(process.pid)[0]
        hold_callbacks(stack.sandbox_url, stack.api_key)
        asyncio.run(submit_direct(stack, f"{base}/hook", inputs, count))
        while callback_status(stack.sandbox_url, stack.api_key)["held"] < count:
            time.sleep(0.5)
        released_at = time.time()
        release_callbacks(stack.sandbox_url, stack.api_key, concurrency=concurrency)
        while (health := httpx.get(f"{base}/health", timeout=10).json())["received"] < count:
            time.sleep(0.2)
        return count / max(health["last"] - released_at, 1e-6), idle, memory_mb(process.pid)[1]
    finally:
        procs.stop("hook-baseline")


if __name__ == "__main__" and sys.argv[1:2] == ["--hook-server"]:
    hook_server(int(sys.argv[2]))
