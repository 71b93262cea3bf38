"""Store a finished job's result: fetch it, label and sign it, and write its provenance record next to it."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, NamedTuple

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.ledger import Bill, PaidSend, settled_sends
from faceswap_flows.flows.provenance.content_credentials import signing_plan
from faceswap_flows.flows.provenance.labels import SyntheticLabel
from faceswap_flows.flows.provenance.records import JobFacts, OutputOptions, record_key, record_provenance
from faceswap_flows.flows.tasks.media import fetch_result


class StoredResult(NamedTuple):
    key: str
    bill: Bill | None  # None: the ledger holds no send of the job


async def fetch_and_record(storage: MediaStorage, **job: Any) -> str:
    """:func:`store_and_record`, returning only the stored key."""
    return (await store_and_record(storage, **job)).key


async def store_and_record(
    storage: MediaStorage,
    *,
    task_id: str,
    operation: str,
    job_id: str | None,
    result_image: str,
    result_key: str,
    kind: Literal["image", "video"],
    output: OutputOptions,
    credits: int | None,
    credits_estimated: bool,
    facts: JobFacts | None,
    submitted_by: dict[str, Any] | None = None,
    as_tasks: bool = True,
    log_each: bool = True,
) -> StoredResult:
    """Fetch a finished job's result into ``storage`` under ``result_key`` (labelled as synthetic media unless
    ``output`` says not, watermarked if asked) and write its provenance record next to it; returns the key and
    the job's bill (the ledger is read once).
    Two task runs (``as_tasks``), or two steps of the caller's task run; ``log_each``: a line per result at INFO
    (else DEBUG).

    The job's credits come from the ledger of credits (its send for ``task_id`` settled as accepted first);
    ``credits`` and ``credits_estimated`` are used only when the ledger holds nothing for the job."""
    fetch, record = (fetch_result, record_provenance) if as_tasks else (fetch_result.fn, record_provenance.fn)
    sends = await asyncio.to_thread(settled_job_sends, storage, job_id, task_id)
    bill = Bill.of(sends) if sends else None
    if bill is not None:
        credits, credits_estimated = bill.charged, bill.estimated
    label = None
    if output.label:
        label = SyntheticLabel(task_id=task_id, operation=operation, job_id=job_id, record_key=record_key(result_key))
    signing = await signing_plan(
        output,
        task_id=task_id,
        operation=operation,
        job_id=job_id,
        credits=credits,
        credits_estimated=credits_estimated,
        facts=facts,
        submitted_by=submitted_by,
    )
    key = await fetch(
        storage, result_image, result_key, kind, label, output.watermark, output.watermark_corner, signing, log_each
    )
    await record(
        storage,
        key,
        operation=operation,
        task_id=task_id,
        job_id=job_id,
        credits=credits,
        credits_estimated=credits_estimated,
        facts=facts,
        options=output,
        label=label,
        submitted_by=submitted_by,
        signing=signing.summary() if signing else None,
        bill=bill_record(bill, sends) if bill is not None else None,
        log_each=log_each,
    )
    return StoredResult(key, bill)


def settled_job_sends(storage: MediaStorage, job_id: str | None, task_id: str) -> list[PaidSend]:
    """The job's sends once its callback for ``task_id`` is settled in the ledger (none: no job id, or the ledger
    has no send of the job, e.g. a job submitted before the ledger existed or into another storage)."""
    return settled_sends(storage, job_id, task_id, True) if job_id else []


def bill_record(bill: Bill, sends: list[PaidSend]) -> dict[str, Any]:
    """What a provenance record keeps of the job's bill: the totals and every paid send for it."""
    return {
        **bill.model_dump(),
        "paid_sends": [
            send.model_dump(include={"operation", "purpose", "outcome", "credits", "task_id", "sent_at"})
            for send in sends
        ],
    }
