"""Servers the tests start themselves, once per session: Prefect, an S3-compatible server (moto), the sandbox."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from flows.local_prefect import LocalPrefectServer, free_port

# One real Prefect server (SQLite) for the whole session, started on first use. Its address is set before
# Prefect is imported, so that every thread and subprocess of the tests talks to it.
PREFECT_SERVER = LocalPrefectServer(tempfile.mkdtemp(prefix="faceswap-tests-prefect-"), port=free_port())
os.environ["PREFECT_HOME"] = str(PREFECT_SERVER.home)
os.environ["PREFECT_API_URL"] = PREFECT_SERVER.api_url
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

S3_KEY_ID = "testing-key-id"
S3_SECRET = "testing-secret"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[LocalPrefectServer]:
    """``prefect server start`` on loopback (all its services, triggers included); drills may restart it."""
    PREFECT_SERVER.start()
    try:
        yield PREFECT_SERVER
    finally:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
        EventsWorker.drain_all(timeout=5)
        PREFECT_SERVER.stop()


@pytest.fixture(scope="session")
def prefect_api(prefect_server: LocalPrefectServer) -> str:
    return prefect_server.api_url


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


SANDBOX_KEY = "flows-test-key"
RECEIVER_SECRET = "receiver-test-secret"


class Stack:
    """Everything a flow needs, running for real on loopback: sandbox, receiver, media server, blocks."""

    def __init__(self, sandbox, receiver, media_server, storage, folder, files, inbox_path) -> None:
        self.inbox_path = inbox_path
        self.sandbox = sandbox
        self.receiver = receiver
        self.media_server = media_server
        self.storage = storage
        self.folder = folder
        self.files = files

    def spent(self) -> int:
        return int(self.sandbox.ledger(SANDBOX_KEY)["spent"])


_STACK_BLOCKS: dict[str, object] = {}


def restore_stack_blocks() -> None:
    """Save the stack's blocks under the default names again (after a test overwrote them)."""
    for name, block in _STACK_BLOCKS.items():
        block.save(name, overwrite=True)


@pytest.fixture(scope="session")
def stack(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from aifaceswap.sandbox import SandboxConfig, SandboxServer
    from blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
    from blocks.media_server import MediaServer
    from flows.blocks_config import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_STORAGE
    from receiver import ReceiverServer
    from tests.media import make_photo_folder

    root = tmp_path_factory.mktemp("stack")
    files = make_photo_folder(root / "photos")
    media_root = root / "media"
    config = SandboxConfig(keys={SANDBOX_KEY: 1_000_000}, webhook_backoff_seconds=0.05)
    with (
        SandboxServer(config) as sandbox,
        ReceiverServer(root / "inbox.sqlite", RECEIVER_SECRET) as receiver,
        MediaServer(media_root) as media_server,
    ):
        storage = MediaStorage(basepath=str(media_root), public_base_url=media_server.url)
        _STACK_BLOCKS[DEFAULT_STORAGE] = storage
        _STACK_BLOCKS[DEFAULT_CREDENTIALS] = AIFaceSwapCredentials(
            api_key=SANDBOX_KEY, base_url=sandbox.url, max_retries=0
        )
        _STACK_BLOCKS[DEFAULT_RECEIVER] = WebhookReceiver(public_url=receiver.url, signing_secret=RECEIVER_SECRET)
        restore_stack_blocks()
        yield Stack(sandbox, receiver, media_server, storage, root, files, root / "inbox.sqlite")


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault drills' summary table, when drills ran."""
    from tests.drill_report import ROWS, table

    if ROWS:
        terminalreporter.section("fault drills")
        terminalreporter.write_line(table())
