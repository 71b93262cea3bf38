"""For benchmarks: start a local Prefect server and point this process at it, before Prefect is imported."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceswap_flows.devstack.prefect_server import LocalPrefectServer


def start_prefect(
    database_url: str | None = None, *, batch_settings: bool = True, **environment: str
) -> LocalPrefectServer:
    """A fresh `prefect server start` (SQLite unless ``database_url``, temporary home; with the devstack's
    BATCH_SERVER_SETTINGS unless ``batch_settings`` is False), stopped at exit; this process talks to it."""
    server = LocalPrefectServer(
        tempfile.mkdtemp(prefix="faceswap-bench-prefect-"), database_url=database_url, batch_settings=batch_settings
    )
    os.environ.update(environment)
    server.start()
    atexit.register(server.stop)
    os.environ.update(
        {
            "PREFECT_API_URL": server.api_url,
            "PREFECT_HOME": str(server.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    return server


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
