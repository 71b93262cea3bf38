"""Servers the tests start themselves, once per session: Prefect, an S3-compatible server (moto), the sandbox."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

S3_KEY_ID = "testing-key-id"
S3_SECRET = "testing-secret"


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect API (the test harness: a server subprocess on SQLite) for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server over real HTTP on loopback."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_storage(s3_endpoint: str):
    """A MediaStorage on a fresh bucket of the moto server."""
    from blocks import MediaStorage

    bucket = f"media-{uuid.uuid4().hex[:10]}"
    storage = MediaStorage(
        basepath=f"s3://{bucket}/faceswap",
        endpoint_url=s3_endpoint,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
    )
    storage.filesystem.mkdir(bucket)
    return storage
