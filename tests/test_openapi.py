"""Issue 21.3: the sandbox and the receiver publish OpenAPI documents built from the wire models at
``/openapi.json``; Schemathesis (seeded, a bounded number of cases per operation) finds no 5xx, no dropped
connection and no answer outside the documented statuses, media types and schemas. Servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from faceswap_flows.aifaceswap.sandbox import SandboxConfig, SandboxServer
from faceswap_flows.receiver import ReceiverServer

CASES_PER_OPERATION = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
KEY = "openapi-fuzz-key"
SECRET = "openapi-fuzz-secret"
# Switching injected faults on makes the sandbox answer 5xx on purpose: documented, not fuzzed.
NOT_FUZZED = {("PUT", "/sandbox/faults")}
RAN: dict[str, int] = {}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(keys={KEY: 1_000_000}, fetch_timeout_seconds=1.0, fetch_total_seconds=2.0)
    with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def receiver(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverServer]:
    folder: Path = tmp_path_factory.mktemp("openapi-receiver")
    with ReceiverServer(folder / "inbox.sqlite", SECRET) as server:
        yield server


def _documented_routes(app, document: dict) -> None:
    routes = {(method, route.path) for route in app.routes if isinstance(route, Route) for method in route.methods}
    routes = {(m, p) for m, p in routes if m != "HEAD" and p != "/openapi.json"}
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert routes == documented


def _fuzz(base_url: str, headers: dict[str, str]) -> dict[str, int]:
    """The cases sent to each operation, counted where they are sent."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    sent: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in NOT_FUZZED:
            continue

        name = f"{operation.method.upper()} {operation.path}"

        @settings(
            max_examples=CASES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            sent[name] = sent.get(name, 0) + 1  # noqa: B023 (run() is called within this iteration)
            case.validate_response(response, checks=CHECKS)

        run()
    return sent


def _cases_sent(base_url: str, operations: int) -> dict[str, int]:
    """The cases each documented operation (but the faults switch) must have been sent: CASES_PER_OPERATION, or 1
    when it takes nothing at all (no parameter, body or credentials: Hypothesis stops after its only case)."""
    document = httpx.get(f"{base_url}/openapi.json").json()
    inputs = ("parameters", "requestBody", "security")
    claimed = {
        f"{method.upper()} {path}": CASES_PER_OPERATION if any(operation.get(key) for key in inputs) else 1
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if (method.upper(), path) not in NOT_FUZZED
    }
    assert len(claimed) == operations, sorted(claimed)
    return claimed


def test_the_documents_cover_every_route(sandbox: SandboxServer, receiver: ReceiverServer) -> None:
    for server in (sandbox, receiver):
        document = httpx.get(f"{server.url}/openapi.json").json()
        assert document["openapi"] == "3.1.0" and document["components"]["schemas"]
        _documented_routes(server.app if hasattr(server, "app") else server._config.app, document)
    sandbox_doc = httpx.get(f"{sandbox.url}/openapi.json").json()
    faceswap = sandbox_doc["paths"]["/api/aifaceswap/v1/faceswap"]["post"]
    body = faceswap["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(sandbox_doc["components"]["schemas"][body]["required"]) == {"webhook", "source_image", "face_image"}


def test_schemathesis_finds_nothing_in_the_sandbox(sandbox: SandboxServer) -> None:
    RAN["sandbox"] = _fuzz(sandbox.url, {"Authorization": f"Bearer {KEY}"})
    assert RAN["sandbox"] == _cases_sent(sandbox.url, operations=14)
    assert sandbox.ledger(KEY)["spent"] == 0, "a fuzzed request never costs a credit"


def test_schemathesis_finds_nothing_in_the_receiver(receiver: ReceiverServer) -> None:
    RAN["receiver"] = _fuzz(receiver.url, {"Authorization": f"Bearer {SECRET}"})
    assert RAN["receiver"] == _cases_sent(receiver.url, operations=6)  # the challenge came with doctor
    assert receiver.inbox.counts()["received"] == 0, "no token verified, nothing kept"
    assert receiver.app.state.unparsed.count() == 0
