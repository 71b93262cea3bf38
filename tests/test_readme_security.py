"""The security page (docs/security.md) states what is fuzzed, with how many cases, and the download limits: each
figure is read from the code it describes, so the page cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis.internal.detection import is_hypothesis_test

from faceswap_flows.aifaceswap.sandbox import SandboxConfig
from faceswap_flows.aifaceswap.sandbox.app import ENDPOINTS
from faceswap_flows.aifaceswap.sandbox.openapi import sandbox_openapi
from faceswap_flows.blocks import AIFaceSwapCredentials
from faceswap_flows.flows.tasks.media import INPUT_LIMITS
from faceswap_flows.receiver.openapi import receiver_openapi
from tests import test_fuzz_drill, test_fuzz_parsers, test_fuzz_receiver, test_openapi

SECTION = Path(__file__).parent.parent.joinpath("docs", "security.md").read_text()


def _properties(module) -> list:
    return [f for name, f in vars(module).items() if name.startswith("test_") and is_hypothesis_test(f)]


def _operations(document: dict) -> int:
    return sum(len(methods) for methods in document["paths"].values())


def _says(text: str) -> None:
    assert text in SECTION, f"docs/security.md should say {text!r}"


def test_the_fuzzing_figures_are_the_tests_own() -> None:
    receiver_props = _properties(test_fuzz_receiver)
    _says(f"{test_fuzz_receiver.FUZZ.max_examples} per property, {len(receiver_props)} properties")
    parser_props = _properties(test_fuzz_parsers)
    _says(f"{test_fuzz_parsers.CASES.max_examples} per property, {len(parser_props)} properties")
    sandbox_ops = _operations(sandbox_openapi(ENDPOINTS)) - len(test_openapi.NOT_FUZZED)
    _says(
        f"{test_openapi.CASES_PER_OPERATION} per operation (1 for `GET /health`, which takes no input): {sandbox_ops} "
        "sandbox, "
        f"{_operations(receiver_openapi())} receiver operations"
    )
    requests = sum(test_fuzz_drill.PER_SERVER.values())
    _says(f"{requests:,} requests + {3 * test_fuzz_drill.RAW_PER_SERVER} malformed messages")


def test_the_download_limits_are_the_defaults() -> None:
    credentials = AIFaceSwapCredentials(api_key="k")
    assert credentials.max_result_bytes == 2 * 1024**3 == INPUT_LIMITS.max_bytes
    assert credentials.result_download_timeout_seconds == 600 == INPUT_LIMITS.timeout_seconds
    _says("`max_result_bytes` (default 2 GiB)")
    _says("`result_download_timeout_seconds` (default 600 s")
    _says("**Inputs given as URLs** (read by the flows for their SHA-256 or to trim a video): 2 GiB and 600 s.")
    assert credentials.allowed_result_hosts == [] and credentials.allow_private_result_addresses is False
    sandbox = SandboxConfig()
    figures = re.findall(r"`(\w+)` (\d+) (MiB|s)", SECTION)
    assert {name: int(value) for name, value, _ in figures} == {
        "max_image_bytes": sandbox.max_image_bytes // 2**20,
        "max_video_bytes": sandbox.max_video_bytes // 2**20,
        "fetch_timeout_seconds": int(sandbox.fetch_timeout_seconds),
        "fetch_total_seconds": int(sandbox.fetch_total_seconds),
    }
