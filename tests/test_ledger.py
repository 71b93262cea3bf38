"""The ledger of credits is the one bill: every paid send is in it, and every figure a user reads (the flow's
outcome, its credits artifact, the provenance record, the batch report, `faceswap-flows credits`) is the
ledger's and equals what the sandbox charged."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import cv2
import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.cli.main import app
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.collect import store_result
from faceswap_flows.flows.image import multi_faceswap
from faceswap_flows.flows.ledger import (
    Bill,
    PaidSend,
    every_send,
    job_bill,
    job_sends,
    settle_by_callback,
    spend_rows,
    write_send,
)
from faceswap_flows.flows.options import BlockNames, SwapOptions
from tests.support import SANDBOX_KEY, impatient_blocks
from tests.vision import photos


def send(job: str, number: int, outcome: str, credits: int = 2, **extra: object) -> PaidSend:
    fields = {"job_id": job, "send_id": f"faceswap-send{number}", "operation": "faceswap", "credits": credits}
    fields.update(outcome=outcome, sent_at=1_700_000_000.0 + number, **extra)
    return PaidSend.model_validate(fields)


def test_a_bill_counts_proven_charges_apart_from_possible_ones() -> None:
    sends = [
        send("j", 1, "unknown"),
        send("j", 2, "refused"),
        send("j", 3, "accepted", task_id="t3", estimated=False),
        send("j", 4, "sent"),
        send("j", 5, "failed", task_id="t5"),
    ]
    bill = Bill.of(sends)
    assert (bill.charged, bill.possibly_charged, bill.sends) == (4, 4, 5)
    assert (bill.unknown, bill.refused, bill.failed, bill.task_ids) == (2, 1, 1, ["t3", "t5"])
    assert bill.estimated, "the failed send's credits are the price list's, not an answer's"


def test_a_callback_settles_the_send_it_answers(tmp_path: Path) -> None:
    storage = MediaStorage(basepath=str(tmp_path))
    write_send(storage, send("j", 1, "unknown"))
    write_send(storage, send("j", 2, "unknown"))
    means = send("j", 0, "accepted", purpose="face detection of x", send_id="extract_face-1", operation="extract_face")
    write_send(storage, means)
    bill = settle_by_callback(storage, "j", "task-a", True)
    assert (bill.charged, bill.possibly_charged) == (4, 2), "the oldest unknown submission took the callback"
    again = settle_by_callback(storage, "j", "task-a", True)
    assert again == bill, "the same callback settles nothing twice"
    failed = settle_by_callback(storage, "j", "task-b", False)
    assert (failed.charged, failed.possibly_charged, failed.failed) == (6, 0, 1)
    assert [s.outcome for s in job_sends(storage, "j")] == ["accepted", "accepted", "failed"]


def test_a_half_written_entry_is_skipped_not_counted(tmp_path: Path) -> None:
    storage = MediaStorage(basepath=str(tmp_path))
    write_send(storage, send("j", 1, "accepted", task_id="t"))
    storage.write_bytes("ledger/j/faceswap-send2.json", b'{"job_id": "j", "send_')
    assert job_bill(storage, "j").charged == 2


def test_spend_is_grouped_by_day_operation_deployment_and_flow_run() -> None:
    sends = [
        send("a", 1, "accepted", flow_run_id="r1", deployment_id="d1"),
        send("b", 1, "unknown", flow_run_id="r2"),
        send("b", 2, "refused", flow_run_id="r2"),
    ]
    rows = spend_rows(sends)
    assert [(r["deployment"], r["flow_run"]) for r in rows] == [("-", "flow r2"), ("d1", "flow r1"), ("", "")]
    assert rows[-1] == {
        "day": "total", "operation": "", "deployment": "", "flow_run": "", "sends": 3, "charged": 2,
        "possibly charged": 2, "refused": 1, "failed jobs": 0,
    }  # fmt: skip
    assert spend_rows(sends, ["operation"]) == [
        {"operation": "faceswap", "sends": 3, "charged": 2, "possibly charged": 2, "refused": 1, "failed jobs": 0},
        {"operation": "total", "sends": 3, "charged": 2, "possibly charged": 2, "refused": 1, "failed jobs": 0},
    ]
    with pytest.raises(ValueError, match="by:"):
        spend_rows(sends, ["customer"])


def sandbox_charged(stack) -> int:
    return int(stack.sandbox.ledger(SANDBOX_KEY)["charged"])


def _cli_total() -> dict[str, str]:
    result = CliRunner().invoke(app, ["credits", "--csv", "--by", "operation"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[-1]["operation"] == "total"
    return rows[-1]


async def cli_total() -> dict[str, str]:
    """The total row of `faceswap-flows credits --csv` (the command runs its own event loop: in a thread)."""
    return await asyncio.to_thread(_cli_total)


def charged_in_ledger(storage: MediaStorage) -> int:
    return Bill.of(every_send(storage)).charged


async def credits_artifact_total(flow_run_id: str) -> int:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    (table,) = [a for a in artifacts if a.key and a.key.startswith("credits-")]
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)
    return sum(int(row["credits charged"]) for row in rows)


async def test_choosing_faces_by_reference_photo_bills_the_detection_too(stack, tmp_path: Path) -> None:
    """multi_faceswap by reference: 2 (the group's faces) + 2 (the reference's) + 5 (the swap) = 9 credits, and
    every figure says 9: the outcome, the provenance record, the credits artifact, the CLI, the sandbox."""
    reference = tmp_path / "who.png"
    cv2.imwrite(str(reference), photos.other_shot(photos.grace_hopper(), (40, 0, 480, 520)))
    charged, listed = sandbox_charged(stack), int((await cli_total())["charged"])
    state = await multi_faceswap(
        str(stack.files["group"]), [str(stack.files["astronaut"])], reference_images=[str(reference)], return_state=True
    )
    outcome = await state.result()
    assert sandbox_charged(stack) - charged == 9
    assert outcome.credits == 9 and outcome.possibly_charged == 0 and outcome.sends == 3
    record = json.loads(stack.storage.read_bytes(outcome.provenance_key))
    assert record["credits"] == 9 and not record["credits_estimated"]
    assert sorted(s["operation"] for s in record["bill"]["paid_sends"]) == [
        "extract_face", "extract_face", "multi_faceswap"]  # fmt: skip
    assert await credits_artifact_total(str(state.state_details.flow_run_id)) == 9
    assert int((await cli_total())["charged"]) - listed == 9


@pytest.fixture(scope="module")
def impatient(stack) -> tuple[str, str]:
    return impatient_blocks(stack, "ledger-impatient", grace_seconds=2)


def two_item_manifest(stack, folder: Path) -> str:
    manifest = folder / "two.jsonl"
    rows = [
        {"source_image": str(stack.files["astronaut"]), "face_image": str(stack.files["grace"]), "id": "one"},
        {"source_image": str(stack.files["grace"]), "face_image": str(stack.files["astronaut"]), "id": "two"},
    ]
    manifest.write_text("\n".join(json.dumps(row) for row in rows))
    return str(manifest)


async def test_a_batch_reports_what_its_unknown_outcomes_may_have_cost(stack, faults, impatient, tmp_path) -> None:
    """Answers lost and callbacks late: the items fail naming their jobs with 2 credits possibly charged each (the
    sandbox took 4); once the callbacks arrived, `credits` settles them (4 charged, as the sandbox) and a
    collected result's record carries the job's credits and its one send."""
    faults(lose_response_rate=1.0, lose_response_seconds=3, delay_webhook_rate=1.0, delay_webhook_seconds=4)
    charged, listed = sandbox_charged(stack), await cli_total()
    blocks = BlockNames(credentials=impatient[0], receiver=impatient[1])
    state = await batch_faceswap(two_item_manifest(stack, tmp_path), force=True, blocks=blocks, return_state=True)
    report = await state.result(raise_on_failure=False)
    assert [(i.status, i.credits, i.possibly_charged) for i in report.items] == [("failed", 0, 2)] * 2
    assert report.credits == 0 and report.possibly_charged == 4
    assert all(i.job_id and f"collect --job {i.job_id}" in (i.error or "") for i in report.items)
    faults()
    stack.sandbox.wait_idle()
    assert sandbox_charged(stack) - charged == 4
    for _ in range(30):  # the callbacks' events are stored by the API a few seconds after they arrived
        now = await cli_total()
        if int(now["charged"]) - int(listed["charged"]) == 4:
            break
        await asyncio.sleep(1)
    assert int(now["charged"]) - int(listed["charged"]) == 4, "settled by the callbacks: as the sandbox"
    assert int(now["possibly charged"]) == int(listed["possibly charged"])
    collected = await store_result("", job_id=report.items[0].job_id)
    record = json.loads(stack.storage.read_bytes(collected.provenance_key))
    assert record["credits"] == 2 and collected.credits == 2
    assert [(s["outcome"], s["credits"]) for s in record["bill"]["paid_sends"]] == [("accepted", 2)]


async def test_resubmitted_jobs_are_billed_for_every_send(stack, faults, impatient, tmp_path) -> None:
    """on_unknown_outcome=resubmit with every answer lost after acceptance and no callback: 3 sends per item, all
    charged by the sandbox (12 credits for 2 items), all in the report as possibly charged, the message counting
    the three sends."""
    faults(error_after_accept_rate=1.0, drop_webhook_rate=1.0)
    charged = sandbox_charged(stack)
    blocks = BlockNames(credentials=impatient[0], receiver=impatient[1])
    options = SwapOptions(on_unknown_outcome="resubmit")
    state = await batch_faceswap(
        two_item_manifest(stack, tmp_path), force=True, blocks=blocks, options=options, return_state=True
    )
    report = await state.result(raise_on_failure=False)
    faults()
    assert sandbox_charged(stack) - charged == 12
    assert [(i.status, i.credits, i.possibly_charged) for i in report.items] == [("failed", 0, 6)] * 2
    assert report.possibly_charged == 12
    assert all("sent 3 times" in (i.error or "") for i in report.items)
    for item in report.items:
        assert [s.outcome for s in job_sends(stack.storage, item.job_id or "")] == ["unknown"] * 3
