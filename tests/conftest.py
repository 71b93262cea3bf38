"""Servers the tests start themselves, once per session: Prefect, an S3-compatible server (moto), the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from faceswap_flows.devstack.prefect_server import LocalPrefectServer

# Points this process at the session's Prefect server; nothing above imports Prefect.
from tests.support import PREFECT_SERVER, RECEIVER_SECRET, S3_KEY_ID, S3_SECRET, SANDBOX_KEY, STACK_BLOCKS

if TYPE_CHECKING:
    from faceswap_flows.devstack.stack import LocalStack
    from tests.sandbox_helpers import WebhookCatcher


# The fast tier (``make test-fast``, ``-m fast``): the tests of these modules that need no server of the session,
# no sandbox, media or video; each gets the ``fast`` mark at collection. A session server started during a fast run
# fails the run (see _not_in_the_fast_tier).
FAST_MODULES = {
    "test_block_standards",
    "test_cli",
    "test_cli_errors",
    "test_cli_help",
    "test_client",
    "test_docstrings",
    "test_download_rules",
    "test_exceptions",
    "test_flow_options",
    "test_layout",
    "test_models",
    "test_money_rules",
    "test_packaging",
    "test_pricing",
    "test_sweep_jobs",
    "test_sweep_mark",
    "test_project_init",
    "test_readme",
    "test_readme_security",
    "test_reachability",
    "test_ledger",
    "test_receiver",
    "test_ui_form",
}
# In a fast module but not fast: the sandbox's own input loader against a hostile server; the console script run
# against no Prefect server, or a temporary one it starts.
NOT_FAST = {
    "test_the_sandbox_cuts_off_a_slow_input",
    "test_a_prefect_server_that_does_not_answer_says_what_to_do",
    "test_without_a_prefect_server_a_command_says_which_server_it_asked",
}
SESSION_SERVERS = {"prefect_server", "prefect_api", "s3_endpoint", "s3_storage", "stack", "faults", "media", "catcher"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
        heavy = item.get_closest_marker("slow") or item.get_closest_marker("drill") or item.get_closest_marker("ui")
        light = not heavy and not SESSION_SERVERS & set(item.fixturenames) and item.originalname not in NOT_FAST
        if module in FAST_MODULES and light:
            item.add_marker(pytest.mark.fast)


def _not_in_the_fast_tier(config: pytest.Config, what: str) -> None:
    if config.getoption("markexpr") == "fast":
        pytest.fail(f"the fast tier started {what}: a test marked fast needs a session server", pytrace=False)


@pytest.fixture(scope="session")
def prefect_server(pytestconfig: pytest.Config) -> Iterator[LocalPrefectServer]:
    """``prefect server start`` on loopback (all its services, triggers included); drills may restart it."""
    _not_in_the_fast_tier(pytestconfig, "the Prefect server")
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
def s3_endpoint(pytestconfig: pytest.Config) -> Iterator[str]:
    """moto's S3-compatible server over real HTTP on loopback."""
    _not_in_the_fast_tier(pytestconfig, "the S3 server")
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
    from faceswap_flows.blocks import MediaStorage

    bucket = f"media-{uuid.uuid4().hex[:10]}"
    storage = MediaStorage(
        basepath=f"s3://{bucket}/faceswap",
        endpoint_url=s3_endpoint,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
    )
    storage.filesystem.mkdir(bucket)
    return storage


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Path]]]:
    """The test photos behind a file server on loopback: (its URL, the files by name)."""
    from faceswap_flows.devstack.media_server import MediaServer
    from tests.media import make_photo_folder

    folder = tmp_path_factory.mktemp("media")
    files = make_photo_folder(folder)
    with MediaServer(folder) as server:
        yield server.url, files


@pytest.fixture(scope="module")
def catcher() -> Iterator[WebhookCatcher]:
    """A webhook endpoint on loopback that keeps every callback it is sent."""
    from tests.sandbox_helpers import WebhookCatcher

    with WebhookCatcher() as server:
        yield server


@pytest.fixture(scope="session")
def stack(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Everything a flow needs, running for real on loopback: sandbox, receiver, media server, the blocks saved
    under the default names; plus ``files`` (test photos) and ``folder``."""
    from faceswap_flows.devstack.stack import LocalStack
    from tests.media import make_photo_folder

    root = tmp_path_factory.mktemp("stack")
    with LocalStack(
        root,
        api_key=SANDBOX_KEY,
        credits=1_000_000,
        secret=RECEIVER_SECRET,
        sandbox={"webhook_backoff_seconds": 0.05},
        credentials={"max_retries": 0},
    ) as local:
        local.folder = root
        local.files = make_photo_folder(root / "photos")
        STACK_BLOCKS.update(local.blocks)
        yield local
    STACK_BLOCKS.clear()


@pytest.fixture
def faults(stack: LocalStack) -> Iterator[Callable[..., None]]:
    """Switch the sandbox's faults on for one test (``faults(drop_webhook_rate=1.0)``); all off afterwards."""
    from faceswap_flows.aifaceswap.sandbox import FaultConfig

    def switch(**settings: object) -> None:
        stack.sandbox.sandbox.set_faults(FaultConfig(**settings))

    yield switch
    stack.sandbox.sandbox.set_faults(FaultConfig())


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault drills' summary table, when drills ran."""
    from tests.drill_report import ROWS, table

    if ROWS:
        terminalreporter.section("fault drills")
        terminalreporter.write_line(table())
