"""What the tests share: the session's Prefect server (its address set before Prefect is imported), the test
keys and secrets, and a way to put the stack's blocks back after a test overwrote them.

Import it as ``tests.support`` (never import conftest: pytest loads that under another name)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from flows.local_prefect import LocalPrefectServer, free_port

PREFECT_SERVER = LocalPrefectServer(tempfile.mkdtemp(prefix="faceswap-tests-prefect-"), port=free_port())
os.environ["PREFECT_HOME"] = str(PREFECT_SERVER.home)
os.environ["PREFECT_API_URL"] = PREFECT_SERVER.api_url
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

S3_KEY_ID = "testing-key-id"
S3_SECRET = "testing-secret"
SANDBOX_KEY = "flows-test-key"
RECEIVER_SECRET = "receiver-test-secret"

STACK_BLOCKS: dict[str, Any] = {}


def restore_stack_blocks() -> None:
    """Save the stack's blocks under the default names again (after a test overwrote them)."""
    for name, block in STACK_BLOCKS.items():
        block.save(name, overwrite=True)
