"""For benchmarks: a throw-away PostgreSQL server on loopback (a temporary data folder, a free port, trust auth).

Uses the server binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``) and installs
the package with apt-get when they are missing. PostgreSQL refuses to run as root: as root, the data folder is
given to the ``postgres`` user (made by the package) and every server command runs as that user (``runuser``).

>>> with PostgresServer() as pg:                      # doctest: +SKIP
...     print(pg.url)     # postgresql+asyncpg://postgres@127.0.0.1:<port>/prefect
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from local_prefect_env import ROOT  # noqa: F401  (puts the project on sys.path)

from faceswap_flows.devstack.prefect_server import free_port

SERVICE_USER = "postgres"


def _bin_dirs() -> list[Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    return [Path(p) for p in found]


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin, else the PATH's."""
    for folder in _bin_dirs():
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(initdb).resolve().parent if initdb and pg_ctl else None


def install_postgres() -> Path:
    """apt-get install postgresql (through sudo when not root); returns the binaries' folder."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise RuntimeError("PostgreSQL is not installed and sudo is missing: apt-get install postgresql")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing PostgreSQL: apt-get install -y postgresql ...", flush=True)
    subprocess.run([*prefix, "apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*prefix, "apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env)
    folder = find_binaries()
    if folder is None:
        raise RuntimeError("apt-get installed postgresql but initdb/pg_ctl were not found")
    return folder


class PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1:<free port>; ``stop()`` (also on exit from ``with``) removes it all."""

    def __init__(self, *, database: str = "prefect", port: int | None = None, max_connections: int = 300) -> None:
        self.database = database
        self.port = port or free_port()
        self.max_connections = max_connections
        self.folder: Path | None = None
        self.bin: Path | None = None
        self._as_root = os.geteuid() == 0

    @property
    def user(self) -> str:
        return SERVICE_USER if self._as_root else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data(self) -> Path:
        assert self.folder is not None
        return self.folder / "data"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", SERVICE_USER, "--"] if self._as_root else []
        return subprocess.run([*prefix, *command], check=check, capture_output=True, text=True)

    def start(self, timeout: float = 60.0) -> PostgresServer:
        self.bin = find_binaries() or install_postgres()
        self.folder = Path(tempfile.mkdtemp(prefix="faceswap-bench-pg-"))
        if self._as_root:
            record = pwd.getpwnam(SERVICE_USER)
            os.chown(self.folder, record.pw_uid, record.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c max_connections={self.max_connections}"
        started = self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t",
            str(int(timeout)), "start", check=False,
        )  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()} (log: {self.log})")
        psql = shutil.which("psql") or str(self.bin / "psql")
        deadline = time.monotonic() + timeout
        while True:
            made = subprocess.run(
                [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres", "-q",
                 "-c", f"CREATE DATABASE {self.database}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if made.returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"could not create the database: {made.stderr.strip()}")
            time.sleep(0.5)

    @property
    def pid(self) -> int:
        """The postmaster's PID (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    @property
    def log(self) -> Path:
        assert self.folder is not None
        return self.folder / "server.log"

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL of the postmaster) and delete its folder."""
        if self.folder is None or self.bin is None:
            return
        if (self.data / "postmaster.pid").exists():
            stopped = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
            if stopped.returncode != 0 and (self.data / "postmaster.pid").exists():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), 9)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
