"""A local Prefect server in a subprocess (SQLite, or a given database such as PostgreSQL): for the demo, the
trigger tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# Prefect records a task run's states from its events, by default one database write per event
# (``batch_size=1``): with many small task runs that write is most of the server's CPU. Batched like Prefect's
# own event persister (20 events, flushed at least every second), a task run's state reaches the API and the
# UI up to 1 s later, and a services process killed outright loses the states it held for that second (the
# events themselves are stored by the event persister, which already batches). docs/scale.md has the figures.
BATCH_SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "20",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def drain_prefect_workers(timeout: float = 10) -> None:
    """Send the logs and events this process still buffers for the Prefect API (before it or we go away)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout)
    EventsWorker.drain_all(timeout=timeout)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class LocalPrefectServer:
    """``prefect server start`` on loopback with its own PREFECT_HOME; stops on ``stop()`` or exit.

    ``database_url`` (e.g. ``postgresql+asyncpg://user@127.0.0.1:5432/prefect``) replaces the SQLite file in
    PREFECT_HOME; ``environment`` adds variables to the server's environment (settings such as pool sizes).
    ``batch_settings`` runs it with :data:`BATCH_SERVER_SETTINGS` (a variable already set in the environment
    wins); False: Prefect's defaults."""

    def __init__(
        self,
        home: str | Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        database_url: str | None = None,
        environment: dict[str, str] | None = None,
        batch_settings: bool = True,
    ) -> None:
        self.home = Path(home).resolve()
        self.host = host
        self.port = port or free_port()
        self.database_url = database_url
        self.extra_environment = dict(environment or {})
        self.batch_settings = batch_settings
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "server.log"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        database = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url} if self.database_url else {}
        return {
            **(BATCH_SERVER_SETTINGS if self.batch_settings else {}),
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_URL": self.ui_url,
            **database,
            **self.extra_environment,
        }

    def start(self, timeout: float = 120.0) -> LocalPrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--analytics-off",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not is_healthy(self.api_url):
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the Prefect server did not answer in {timeout}s; see {self.log_path}")
            time.sleep(0.3)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the whole process group (uvicorn and its services), escalating to SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server, stay down ``down_seconds``, and start it again on the same port and database."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def __enter__(self) -> LocalPrefectServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
