"""``faceswap-flows doctor`` on the real stack (Prefect, sandbox, receiver, media server): every row OK on the
stack's blocks, and each wrong setting caught by its own row, with exit 1. Nothing is paid without --spend."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from faceswap_flows.blocks import AIFaceSwapCredentials, ContentSigningKey, MediaStorage, WebhookReceiver
from faceswap_flows.cli.main import app
from faceswap_flows.devstack.prefect_server import free_port
from faceswap_flows.devstack.signing_certs import make_dev_certificates
from faceswap_flows.devstack.timestamp_authority import TimestampAuthority
from tests.support import RECEIVER_SECRET

EVERY_CHECK = {
    "Prefect API",
    "Prefect events",
    "AIFaceSwapCredentials block",
    "MediaStorage block",
    "WebhookReceiver block",
    "ContentSigningKey block",
    "storage",
    "storage URL",
    "receiver",
    "receiver inbox",
    "reachability",
    "signing key",
    "signing certificate",
    "timestamp authority",
    "API rate limit",
}


def doctor(*options: str, healthy: list[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """The doctor's exit code and its rows by check, on the healthy blocks with ``options`` overriding them."""
    result = CliRunner().invoke(app, ["doctor", "--json", *healthy, *options])
    report = json.loads(result.stdout)
    return result.exit_code, {row["check"]: row for row in report["rows"]}


def only_failure(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    failing = [row for row in rows.values() if row["status"] == "fail"]
    assert len(failing) == 1, failing
    return failing[0]


@pytest.fixture(scope="module")
def healthy(stack, prefect_api: str) -> Iterator[list[str]]:
    """The stack's blocks, plus what a production deployment has: a rate limit that exists and a signing key with a
    time-stamp authority; the options that name them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    limit = f"doctor-limit-{uuid.uuid4().hex[:6]}"

    async def create_limit() -> None:
        async with get_client() as client:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit, limit=5, slot_decay_per_second=2)
            )

    asyncio.run(create_limit())
    credentials = stack.blocks["aifaceswap"]
    AIFaceSwapCredentials(
        api_key=credentials.api_key, base_url=credentials.base_url, max_retries=0, rate_limit=limit
    ).save("doctor-credentials", overwrite=True)
    signing = stack.blocks["faceswap-signing"]
    with TimestampAuthority() as tsa:
        ContentSigningKey(
            private_key=signing.private_key,
            certificate_chain=signing.certificate_chain,
            trust_anchors=signing.trust_anchors,
            timestamp_url=tsa.url,
        ).save("doctor-signing", overwrite=True)
        yield ["--credentials", "doctor-credentials", "--signing-block", "doctor-signing"]


def test_doctor_passes_on_the_stacks_blocks_and_spends_nothing(stack, healthy: list[str]) -> None:
    spent = stack.spent()
    code, rows = doctor(healthy=healthy)
    assert set(rows) == EVERY_CHECK
    assert {check: row["status"] for check, row in rows.items()} == dict.fromkeys(EVERY_CHECK, "ok"), rows
    assert code == 0
    assert stack.receiver.url in rows["receiver"]["result"] and stack.media_server.url in rows["storage URL"]["result"]
    assert "time-stamped a test digest" in rows["timestamp authority"]["result"]
    assert stack.spent() == spent, "the doctor paid for nothing"
    assert stack.storage.list("doctor/") == [], "the storage probe was deleted"


def test_a_receiver_holding_another_secret_fails(stack, healthy: list[str]) -> None:
    WebhookReceiver(public_url=stack.receiver.url, signing_secret="not-" + RECEIVER_SECRET).save(
        "doctor-other-secret", overwrite=True
    )
    code, rows = doctor("--receiver", "doctor-other-secret", healthy=healthy)
    failure = only_failure(rows)
    assert code == 1 and failure["check"] == "receiver"
    assert "another secret" in failure["result"] and "doctor-other-secret" in failure["result"]
    assert "FACESWAP_RECEIVER_SECRET" in failure["fix"]
    assert RECEIVER_SECRET not in json.dumps(rows)


def test_a_public_url_where_nothing_listens_fails(healthy: list[str]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    WebhookReceiver(public_url=nowhere, signing_secret=RECEIVER_SECRET).save("doctor-nowhere", overwrite=True)
    code, rows = doctor("--receiver", "doctor-nowhere", healthy=healthy)
    failure = only_failure(rows)
    assert code == 1 and failure["check"] == "receiver"
    assert failure["result"].startswith(f"nothing answers at {nowhere}")


def test_a_public_url_on_another_server_answering_200_fails(catcher, healthy: list[str]) -> None:
    """The webhook catcher answers 200 to any POST under /hook: something answers, but not the challenge."""
    before = len(catcher.received)
    WebhookReceiver(public_url=f"{catcher.url}/hook", signing_secret=RECEIVER_SECRET).save(
        "doctor-other-server", overwrite=True
    )
    code, rows = doctor("--receiver", "doctor-other-server", healthy=healthy)
    assert len(catcher.received) == before + 1 and catcher.received[-1]["name"] == "challenge", "it answered 200"
    failure = only_failure(rows)
    assert code == 1 and failure["check"] == "receiver"
    assert "answers (HTTP 200) but not the receiver's challenge" in failure["result"]


def test_a_storage_whose_public_base_url_serves_nothing_fails(stack, healthy: list[str]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    MediaStorage(basepath=str(stack.media_dir), public_base_url=nowhere).save("doctor-unserved", overwrite=True)
    code, rows = doctor("--storage", "doctor-unserved", healthy=healthy)
    failure = only_failure(rows)
    assert code == 1 and failure["check"] == "storage URL"
    assert nowhere in failure["result"] and "public_base_url" in failure["fix"]
    assert rows["storage"]["status"] == "ok"


def test_s3_storage_is_checked_through_its_presigned_url(s3_storage, healthy: list[str]) -> None:
    s3_storage.save("doctor-s3", overwrite=True)
    code, rows = doctor("--storage", "doctor-s3", healthy=healthy)
    assert code == 0 and rows["storage"]["status"] == rows["storage URL"]["status"] == "ok", rows
    assert rows["storage URL"]["result"].startswith(f"{s3_storage.endpoint_url}/{s3_storage.root}/doctor/probe-")
    assert "Signature" not in rows["storage URL"]["result"], "the presigned URL's signature is not shown"
    assert s3_storage.list("doctor/") == []


def test_the_real_service_with_a_loopback_receiver_fails_reachability(stack, healthy: list[str]) -> None:
    from faceswap_flows.aifaceswap.client import DEFAULT_BASE_URL

    AIFaceSwapCredentials(api_key="sk-never-used", base_url=DEFAULT_BASE_URL).save("doctor-real", overwrite=True)
    code, rows = doctor("--credentials", "doctor-real", healthy=healthy)
    failure = only_failure(rows)
    assert code == 1 and failure["check"] == "reachability"
    assert failure["result"].startswith("WebhookReceiver.public_url:") and stack.receiver.url in failure["result"]
    assert "loopback" in failure["result"] and "tunnel" in failure["fix"]


def test_an_expired_signing_certificate_fails(healthy: list[str]) -> None:
    certificates = make_dev_certificates("doctor expired", valid_for=timedelta(seconds=1))
    ContentSigningKey(
        private_key=certificates.private_key_pem,
        certificate_chain=certificates.chain_pem,
        trust_anchors=certificates.ca_pem,
    ).save("doctor-expired", overwrite=True)
    time.sleep(1.5)
    code, rows = doctor("--signing-block", "doctor-expired", healthy=healthy)
    assert code == 1 and rows["signing certificate"]["status"] == "fail"
    assert rows["signing certificate"]["result"].startswith("expired ")
    assert "faceswap-flows signing dev-cert" in rows["signing certificate"]["fix"]
    assert rows["timestamp authority"]["status"] == "warn"
    assert "signatures stop validating when the certificate expires" in rows["timestamp authority"]["result"]


def test_a_timestamp_url_that_is_no_tsa_fails(stack, healthy: list[str]) -> None:
    signing = stack.blocks["faceswap-signing"]
    ContentSigningKey(
        private_key=signing.private_key,
        certificate_chain=signing.certificate_chain,
        trust_anchors=signing.trust_anchors,
        timestamp_url=stack.media_server.url,
    ).save("doctor-no-tsa", overwrite=True)
    code, rows = doctor("--signing-block", "doctor-no-tsa", healthy=healthy)
    failure = only_failure(rows)
    assert code == 1 and failure["check"] == "timestamp authority"
    assert failure["result"].startswith(f"{stack.media_server.url} answered HTTP 405")
    assert "signatures stop validating" in failure["result"]


def test_a_missing_block_is_named_with_the_server_and_the_command(prefect_api: str, healthy: list[str]) -> None:
    wide = {"COLUMNS": "1000"}  # one line per row
    result = CliRunner().invoke(app, ["doctor", *healthy, "--receiver", "doctor-no-such-receiver"], env=wide)
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "WebhookReceiver block" in line)
    table = " ".join(row.split())
    assert "FAIL WebhookReceiver block" in table
    assert "no WebhookReceiver block named 'doctor-no-such-receiver'" in table
    assert prefect_api in table and "faceswap-flows blocks create" in table
    _, rows = doctor("--receiver", "doctor-no-such-receiver", healthy=healthy)
    assert only_failure(rows)["check"] == "WebhookReceiver block"
    assert "receiver" not in rows and "reachability" not in rows, "no check of a block that did not load"


def test_spend_runs_one_paid_swap_reporting_the_ledgers_credits(stack, healthy: list[str]) -> None:
    from faceswap_flows.flows.ledger import job_bill

    spent = stack.spent()
    code, rows = doctor("--spend", healthy=healthy)
    swap = rows["paid swap"]
    assert code == 0 and swap["status"] == "ok", swap
    assert stack.spent() == spent + 2, "the sandbox charged one faceswap"
    job_id = swap["result"].split()[1].rstrip(",")
    assert job_bill(stack.storage, job_id).charged == 2
    assert "2 credits charged (ledger of credits)" in swap["result"]
    result_key = swap["result"].rsplit("result stored at ", 1)[1]
    assert stack.storage.exists(result_key)
    delay = float(swap["result"].split("callback ", 1)[1].split(" s after", 1)[0])
    assert 0 < delay < 120


def test_a_prefect_api_that_does_not_answer_is_named_and_nothing_else_runs(tmp_path) -> None:
    import os
    import subprocess
    import sys

    dead = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_API_URL": dead, "PREFECT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "faceswap_flows.cli", "doctor", "--json"], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert [(row["check"], row["status"]) for row in rows] == [("Prefect API", "fail")]
    assert rows[0]["result"].startswith(f"{dead} (from PREFECT_API_URL) does not answer")
