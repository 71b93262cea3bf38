"""Store a finished job's result: fetch it, label and sign it, and write its provenance record next to it."""

from __future__ import annotations

from typing import Any, Literal

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.provenance.content_credentials import signing_plan
from faceswap_flows.flows.provenance.labels import SyntheticLabel
from faceswap_flows.flows.provenance.records import JobFacts, OutputOptions, record_key, record_provenance
from faceswap_flows.flows.tasks.media import fetch_result


async def fetch_and_record(
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
) -> str:
    """Fetch a finished job's result into ``storage`` under ``result_key`` (labelled as synthetic media unless
    ``output`` says not, watermarked if asked) and write its provenance record next to it; returns the key.
    Two task runs (``as_tasks``), or two steps of the caller's task run."""
    fetch, record = (fetch_result, record_provenance) if as_tasks else (fetch_result.fn, record_provenance.fn)
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
        storage, result_image, result_key, kind, label, output.watermark, output.watermark_corner, signing
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
    )
    return key
