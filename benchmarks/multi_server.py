"""Prefect's self-hosted multi-server topology on loopback, every piece a process of its own: PostgreSQL and Redis
(Debian packages, throw-away data folders), Prefect's Redis messaging (``prefect-redis``), two API servers
(``prefect server start --no-services``) behind nginx (least_conn, websocket locations, retry on the other
server), one ``prefect server services start`` process; then the project's stack (sandbox, two receivers with
an inbox each behind the same nginx, round robin, media server), its deployments and two or more process workers,
all talking to the balancer.

Run ``make scale-stack`` (or ``cd benchmarks && ../.venv/bin/python multi_server.py``) to start it and keep it
up until Ctrl-C; ``with MultiServerStack(folder) as stack:`` does the same in code. Every process runs in a
session (process group) of its own and is killed with its group at the end, on an exception or on SIGTERM."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postgres_server import PostgresServer
from scale_stack import (
    CLI,
    Processes,
    Stack,
    deploy,
    save_blocks,
    start_receiver,
    start_services,
    start_store_worker,
    start_workers,
    wait_http,
)

from faceswap_flows.devstack.prefect_server import BATCH_SERVER_SETTINGS, free_port

# What a log says when a message is lost: the in-memory broker's full queue, prefect-redis's dead letters, orphan
# entries acknowledged unread and handler/stream failures, a callback or event given up (sandbox, receiver).
DROP_PATTERNS = (
    "dropping message",
    "queue is full",
    "dead letter",
    "Skipping orphan pending entry",
    "Error handling message",
    "Failed to read from stream",
    "Error processing pending messages",
    "not retried",
    "callback refused",
)
# What a log says when a message is sent again (not lost, counted apart): reconnections, retried emissions, the
# sandbox's "callback of T to URL failed: ..." (retried).
RETRY_PATTERNS = ("Unable to connect to", "could not emit", "Redis connection error", "failed: ")
WEBSOCKET_PATHS = r"^/api/(events/(in|out)|logs/out|task_runs/subscriptions/scheduled|work_pools/.+/workers/connect)"

NGINX_CONF = """{user}worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream prefect_api {{
        least_conn;
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location ~ {websockets} {{
            proxy_pass http://prefect_api;
            proxy_set_header Host $http_host;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
        location / {{
            proxy_pass http://prefect_api;
            proxy_set_header Host $http_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
        }}
    }}
{receivers}}}
"""
# The receivers' balancer: round robin; a receiver that refuses the connection or times out has its request passed
# to the next one and is left out for fail_timeout. A callback POST it dropped after reading it is not passed on
# (nginx does not repeat a non-idempotent request it sent): the service gets a 502 and sends the callback again.
RECEIVERS_CONF = """    upstream receivers {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://receivers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
            proxy_next_upstream error timeout;
        }}
    }}
"""


def upstream_servers(ports: list[int], fail_timeout: int) -> str:
    return "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout={fail_timeout}s;" for p in ports)


def nginx_config(
    folder: Path,
    port: int,
    api_ports: list[int],
    receiver_port: int | None = None,
    receiver_ports: tuple[int, ...] = (),
) -> Path:
    """nginx's configuration: the API servers' balancer on ``port``; with ``receiver_port``, the receivers'."""
    servers = upstream_servers(api_ports, 5)
    receivers = ""
    if receiver_port is not None:
        receivers = RECEIVERS_CONF.format(servers=upstream_servers(list(receiver_ports), 2), port=receiver_port)
    conf = folder / "nginx.conf"
    folder.mkdir(parents=True, exist_ok=True)
    # As root its workers would run as nobody, who cannot write the temporary folders made private to us.
    user = "user root;\n" if os.geteuid() == 0 else ""
    text = NGINX_CONF.format(
        user=user, folder=folder, port=port, servers=servers, websockets=WEBSOCKET_PATHS, receivers=receivers
    )
    conf.write_text(text)
    return conf


def need(binary: str, package: str) -> str:
    found = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if Path(p).exists()), None
    )
    if not found:
        raise RuntimeError(f"{binary} is missing: apt-get install {package} (make ci-deps installs it)")
    return found


class MultiServerStack:
    """The whole topology in ``folder`` (logs under ``folder/logs``); ``api_url`` is the balancer's."""

    def __init__(
        self,
        folder: Path,
        *,
        api_servers: int = 2,
        receivers: int = 2,
        workers: int = 2,
        max_concurrency: int = 16,
        worker_nice: int = 10,
        store_in_process: bool = True,
    ) -> None:
        self.folder = folder
        self.store_in_process = store_in_process
        self.api_servers, self.workers, self.max_concurrency = api_servers, workers, max_concurrency
        self.worker_nice = worker_nice
        self.procs = Processes(folder / "logs")
        self.pg = PostgresServer()
        self.redis_port, self.balancer_port = free_port(), free_port()
        self.api_ports = [free_port() for _ in range(api_servers)]
        self.receiver_ports = [free_port() for _ in range(receivers)]
        self.receivers_port = free_port() if receivers > 1 else None
        self.stack: Stack | None = None
        self.env: dict[str, str] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}/api"

    def prefect_env(self) -> dict[str, str]:
        redis = f"redis://127.0.0.1:{self.redis_port}"
        return {
            **BATCH_SERVER_SETTINGS,
            **os.environ,
            "PREFECT_HOME": str(self.folder / "prefect-home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.pg.url,
            "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
            "PREFECT_REDIS_MESSAGING_PORT": str(self.redis_port),
            "PREFECT_REDIS_MESSAGING_DB": "0",
            # Sent to Redis as soon as received: prefect-redis batches 5 messages (flushed every 10 s) by default,
            # and an API server killed with a partial batch loses events its clients already count as sent.
            "PREFECT_REDIS_MESSAGING_PUBLISHER_BATCH_SIZE": "1",
            "PREFECT_SERVER_DOCKET_URL": f"{redis}/1",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }

    def start_infrastructure(self) -> None:
        self.pg.start()
        redis = self.procs.start(
            "redis",
            [need("redis-server", "redis-server"), "--bind", "127.0.0.1", "--port", str(self.redis_port),
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            dict(os.environ),
        )  # fmt: skip
        self.env = self.prefect_env()
        prefect = [sys.executable, "-m", "prefect"]
        upgrade = subprocess.run(
            [*prefect, "server", "database", "upgrade", "-y"], env=self.env, capture_output=True, text=True, check=False
        )
        if upgrade.returncode != 0:
            raise RuntimeError(
                f"prefect server database upgrade failed:\n{upgrade.stdout[-2000:]}{upgrade.stderr[-2000:]}"
            )
        if redis.poll() is not None:
            raise RuntimeError(f"redis-server exited: see {self.procs.logs / 'redis.log'}")
        # The first server registers the block types at start; others started at the same moment collide on them.
        self.start_api(1)
        self.procs.start("services", [*prefect, "server", "services", "start"], self.env)
        for i in range(2, self.api_servers + 1):
            self.start_api(i)
        conf = nginx_config(
            self.folder / "nginx", self.balancer_port, self.api_ports, self.receivers_port, tuple(self.receiver_ports)
        )
        nginx = self.procs.start(
            "nginx", [need("nginx", "nginx-light"), "-c", str(conf), "-p", str(conf.parent)], self.env
        )
        wait_http(f"{self.api_url}/health", 30, nginx)

    def start_api(self, number: int, timeout: float = 120) -> None:
        """API server ``number`` (1-based) on its port, waited for until healthy (also to restart a killed one)."""
        port = self.api_ports[number - 1]
        command = [sys.executable, "-m", "prefect", "server", "start", "--no-services", "--host", "127.0.0.1",
                   "--port", str(port), "--analytics-off"]  # fmt: skip
        process = self.procs.start(f"api-{number}", command, self.env)
        wait_http(f"http://127.0.0.1:{port}/api/health", timeout, process)

    def start(self) -> MultiServerStack:
        self.start_infrastructure()
        # This process talks to the balancer too (blocks, deployments, checks): set before Prefect is imported.
        os.environ.update(
            {k: self.env[k] for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")}
        )
        self.stack = start_services(
            self.procs, self.folder, self.env, release_concurrency=64, receiver_ports=self.receiver_ports
        )
        if self.receivers_port is not None:  # the WebhookReceiver block's public_url: the receivers' balancer
            self.stack.receiver_url = f"http://127.0.0.1:{self.receivers_port}"
        save_blocks(self.stack)
        signing = [CLI, "signing", "dev-cert", "--folder", str(self.folder / "signing")]
        made = subprocess.run(signing, env=self.env, capture_output=True, text=True, check=False)
        if made.returncode != 0:
            raise RuntimeError(f"faceswap-flows signing dev-cert failed:\n{made.stdout[-2000:]}{made.stderr[-2000:]}")
        deploy(
            self.folder,
            self.env,
            max_concurrency=self.max_concurrency,
            also=("store-result",),
            nice=self.worker_nice,
            store_in_process=self.store_in_process,
        )
        start_workers(self.procs, self.env, self.workers, self.worker_nice)
        if self.store_in_process:
            start_store_worker(self.procs, self.env, self.worker_nice)
        return self

    def kill(self, name: str) -> None:
        """SIGKILL a process's group at once (a crash, not a shutdown)."""
        process = self.procs.running[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def restart_receiver(self, name: str) -> None:
        """Start receiver ``name`` again on its inbox and port (a replaced receiver on the same volume): it emits
        what it had acknowledged but not yet emitted."""
        assert self.stack is not None
        start_receiver(self.procs, self.stack, name, self.env)

    def logs(self) -> dict[str, str]:
        """Every process's log: PostgreSQL, Redis, the API servers, the services, nginx, the project's stack and
        the workers (with their flow runs' output)."""
        found = {path.stem: path.read_text(errors="replace") for path in sorted(self.procs.logs.glob("*.log"))}
        for path in self.folder.glob("nginx/*.log"):
            found[f"nginx-{path.stem}"] = path.read_text(errors="replace")
        if self.pg.folder is not None and self.pg.log.exists():
            found["postgresql"] = self.pg.log.read_text(errors="replace")
        return found

    def dropped_messages(self) -> dict[str, int]:
        """Lines of each pattern of DROP_PATTERNS in every log (see ``logs``)."""
        text = "\n".join(self.logs().values())
        return {pattern: text.count(pattern) for pattern in DROP_PATTERNS}

    def retried_messages(self) -> dict[str, int]:
        """Lines of each pattern of RETRY_PATTERNS per log, where there are any."""
        return {
            f"{name}: {pattern}": count
            for name, text in self.logs().items()
            for pattern in RETRY_PATTERNS
            if (count := text.count(pattern))
        }

    def stop(self) -> None:
        self.procs.stop_all()
        self.pg.stop()

    def __enter__(self) -> MultiServerStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Start the multi-server topology and keep it up until Ctrl-C.")
    parser.add_argument("--api-servers", type=int, default=2)
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(tempfile.mkdtemp(prefix="faceswap-multi-server-"))
    topology = MultiServerStack(folder, api_servers=args.api_servers, receivers=args.receivers, workers=args.workers)
    with topology:
        stack = topology.stack
        assert stack is not None
        print(f"Prefect API (nginx): {topology.api_url}   UI: {topology.api_url[:-4]}", flush=True)
        print(f"PostgreSQL {topology.pg.url}; Redis 127.0.0.1:{topology.redis_port}; API servers {topology.api_ports}")
        print(f"sandbox {stack.sandbox_url}  receiver {stack.receiver_url}  media {stack.media_url}")
        print(f"receivers: {', '.join(f'{name} {url} ({inbox})' for name, (url, inbox) in stack.receivers.items())}")
        print(f"logs: {topology.procs.logs}   Ctrl-C stops everything", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
