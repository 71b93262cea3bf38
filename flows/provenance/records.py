"""Provenance records: for every stored result, a JSON record next to it (``<result_key>.provenance.json``) that
says what made it (operation, inputs and their SHA-256, parameters, task_id, credits), in which flow run and
deployment, on whose behalf, with whose consent, how it was signed, and the SHA-256 of the stored (labelled,
signed) file. The labels inside the files are written by :mod:`flows.provenance.labels`, the signed manifests by
:mod:`flows.provenance.content_credentials`; :mod:`flows.provenance.audit` checks a file against both.

Records never hold secrets: no API key, no webhook URL or token, no image bytes, and URLs lose their query
string (a presigned URL's query is a credential) and any user:password.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import hashlib
import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from prefect import task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from faceswap_flows.aifaceswap.models import sniff_image_type
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.media.staged import StagedMedia
from faceswap_flows.flows.options import OutputOptions
from faceswap_flows.flows.provenance.labels import (
    DIGITAL_SOURCE_TYPE,
    SyntheticLabel,
    utc_now,
)
from faceswap_flows.receiver.events import SUBMITTED, task_resource_id

RECORD_SUFFIX = ".provenance.json"
RECORD_VERSION = "faceswap-flows/provenance/1"
CHUNK = 1024 * 1024


def strip_query(url: str) -> str:
    """The URL without query string, fragment or user:password (what records and events may keep)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "s3"):
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return strip_query(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def record_key(result_key: str) -> str:
    return f"{result_key}{RECORD_SUFFIX}"


def is_stored(storage: MediaStorage, result_key: str) -> bool:
    """Whether the result is stored whole: its provenance record is written last."""
    return storage.exists(record_key(result_key)) and storage.exists(result_key)


class InputRecord(BaseModel):
    """One input as the service got it: its storage key or its URL (without query), and its SHA-256."""

    field: str
    key: str | None = None
    url: str | None = None
    sha256: str | None = None


def output_parameters(options: OutputOptions) -> dict[str, Any]:
    """The output options as a job's submitted event keeps them, in their first, flat spelling (the store-result
    deployment reads a job's choices from it, and a batch's fingerprints of stored work are made of it)."""
    return {
        "label_outputs": options.label,
        "watermark": options.watermark,
        "watermark_corner": options.watermark_corner,
        "sign_outputs": options.sign,
        "signing_block": options.signing_block,
    }


# A record's parameters once kept the output options flat, under these names; now under ``output``, each named as
# the option it records (``output.label``), as the flows' ``output`` parameter names them.
OLD_OUTPUT_FIELDS = {
    "label_outputs": "label",
    "sign_outputs": "sign",
    "watermark": "watermark",
    "watermark_corner": "watermark_corner",
    "signing_block": "signing_block",
}


def recorded_parameters(parameters: Mapping[str, Any], options: OutputOptions) -> dict[str, Any]:
    """A record's parameters: the job's, with the output options under ``output`` named as the options are."""
    kept = {name: value for name, value in parameters.items() if name not in OLD_OUTPUT_FIELDS}
    return {**kept, "output": options.model_dump(include=set(OLD_OUTPUT_FIELDS.values()))}


def output_choices(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The output options a record's parameters keep, read from either spelling (``output.label``, or the old
    ``label_outputs``)."""
    old = {new: parameters[name] for name, new in OLD_OUTPUT_FIELDS.items() if name in parameters}
    return {**old, **(parameters.get("output") or {})}


def old_field_names(record: Mapping[str, Any]) -> list[str]:
    """The old names a stored record was written with, as ``old -> new`` (none for a record of this version)."""
    parameters = record.get("parameters") or {}
    return [
        f"parameters.{name} -> parameters.output.{new}" for name, new in OLD_OUTPUT_FIELDS.items() if name in parameters
    ]


class JobFacts(BaseModel):
    """What a swap was asked to do: its inputs and parameters (never secrets, bytes or the webhook)."""

    inputs: list[InputRecord] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    digital_source_type: str = DIGITAL_SOURCE_TYPE
    consent: list[dict[str, Any]] = Field(default_factory=list)


def job_facts(
    inputs: Mapping[str, StagedMedia | Sequence[StagedMedia] | None],
    consent: Sequence[Mapping[str, Any]] = (),
    **parameters: Any,
) -> JobFacts:
    """The facts of a job from its staged inputs (lists become ``field[i]``), the consent records of its face
    photos, and its parameters."""
    records = []
    for name, staged in inputs.items():
        if staged is None:
            continue
        items = (
            [(name, staged)] if isinstance(staged, StagedMedia) else [(f"{name}[{i}]", s) for i, s in enumerate(staged)]
        )
        for field, media in items:
            url = None if media.key else strip_query(media.url)
            records.append(InputRecord(field=field, key=media.key, url=url, sha256=media.sha256))
    return JobFacts(inputs=records, parameters=_clean(parameters), consent=[dict(c) for c in consent])


@functools.cache
def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


@functools.cache
def _host() -> str:
    return socket.gethostname()


_deployment_names: dict[str, str] = {}


async def run_facts() -> dict[str, Any]:
    """The flow run, its deployment and who ran it: the work pool and the run's creator when Prefect knows
    them, and always the OS user and host of the process that ran it. Inside a flow run this costs no API call
    (the run is in its context; deployment names are read once per process)."""
    run_by: dict[str, Any] = {"os_user": _os_user(), "host": _host()}
    facts: dict[str, Any] = {"flow_run": None, "deployment": None, "run_by": run_by}
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    run_id = str(run.id) if run is not None else flow_run.get_id()
    if not run_id:
        return facts
    facts["flow_run"] = {"id": run_id}
    try:
        if run is None:
            async with get_client() as client:
                run = await client.read_flow_run(UUID(run_id))
        facts["flow_run"].update(name=run.name, flow_id=str(run.flow_id))
        if run.work_pool_name:
            run_by.update(work_pool=run.work_pool_name, work_queue=run.work_queue_name)
        if run.created_by:
            run_by["created_by"] = {
                "type": run.created_by.type,
                "id": str(run.created_by.id) if run.created_by.id else None,
                "name": run.created_by.display_value,
            }
        if run.deployment_id:
            deployment_id = str(run.deployment_id)
            if deployment_id not in _deployment_names:
                async with get_client() as client:
                    _deployment_names[deployment_id] = (await client.read_deployment(run.deployment_id)).name
            facts["deployment"] = {"id": deployment_id, "name": _deployment_names[deployment_id]}
    except Exception as error:  # the record is still written, with what is known
        get_run_logger().warning("provenance: could not read flow run %s from the API: %s", run_id, error)
    return facts


async def submission_facts(task_id: str) -> dict[str, Any] | None:
    """The payload of a task's ``aifaceswap.task.submitted`` event (the facts its submitting run recorded)."""
    event_filter = EventFilter(
        event=EventNameFilter(name=[SUBMITTED]), resource=EventResourceFilter(id=[task_resource_id(task_id)])
    )
    async with get_client() as client:
        page = await client.read_events(filter=event_filter, limit=1)
    return dict(page.events[0].payload) if page.events else None


class OutputRecord(BaseModel):
    key: str
    uri: str
    sha256: str
    bytes: int
    media_type: str
    labelled: bool
    label: dict[str, str] | None = None
    watermark: dict[str, str] | None = None
    content_credentials: dict[str, Any] | None = None


class ProvenanceRecord(BaseModel):
    """The sidecar record of one stored result."""

    record: str = RECORD_VERSION
    synthetic: bool = True
    digital_source_type: str = DIGITAL_SOURCE_TYPE
    operation: str
    task_id: str
    job_id: str | None = None
    credits: int | None = None
    credits_estimated: bool = False
    bill: dict[str, Any] | None = None
    inputs: list[InputRecord] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    consent: list[dict[str, Any]] = Field(default_factory=list)
    output: OutputRecord
    flow_run: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None
    run_by: dict[str, Any] = Field(default_factory=dict)
    submitted_by: dict[str, Any] | None = None
    recorded_at: str = Field(default_factory=utc_now)
    software: dict[str, str] = Field(default_factory=dict)


@functools.cache
def _software() -> dict[str, str]:
    found = {}
    for name in ("faceswap-flows", "prefect"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _media_type(head: bytes) -> str:
    if head[4:8] == b"ftyp":
        return "video/mp4"
    return sniff_image_type(head[:32]) or "application/octet-stream"


def hash_stream(handle: IO[bytes]) -> tuple[str, int, bytes]:
    """SHA-256, size and first bytes of a stream, read in chunks."""
    digest, size, head = hashlib.sha256(), 0, b""
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        if len(head) < 64:
            head += chunk[:64]
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size, head


def stored_hash(storage: MediaStorage, key: str) -> tuple[str, int, bytes]:
    with storage.open(key) as handle:
        return hash_stream(handle)


@task(name="record-provenance", task_run_name="record provenance of {key}", retries=2, retry_delay_seconds=[1, 5])
async def record_provenance(
    storage: MediaStorage,
    key: str,
    *,
    operation: str,
    task_id: str,
    job_id: str | None,
    credits: int | None,
    credits_estimated: bool = False,
    facts: JobFacts | None = None,
    options: OutputOptions | None = None,
    label: SyntheticLabel | None = None,
    submitted_by: dict[str, Any] | None = None,
    signing: dict[str, Any] | None = None,
    bill: dict[str, Any] | None = None,
    log_each: bool = True,
) -> ProvenanceRecord:
    """Hash the stored result as storage holds it and write its provenance record next to it.

    Args:
        storage: The MediaStorage block the media is read from and written to.
        key: The stored result's key.
        operation: The API operation.
        task_id: The service's task.
        job_id: The job, if known.
        credits: Credits charged, if known.
        credits_estimated: Whether `credits` is an estimate.
        facts: The job's provenance facts (inputs, their SHA-256, parameters).
        options: The output choices (label, watermark, signing).
        label: The embedded synthetic-media label, if any.
        submitted_by: Who submitted the job (flow run, deployment, user).
        signing: What the signing plan says of the embedded manifest. None: signing was off.
        bill: The job's bill from the ledger of credits (totals and every paid send), if known.
        log_each: Log the record at INFO (False: DEBUG; a sweep logs each chunk's counts).

    Returns:
        The record written.
    """
    options = options or OutputOptions()
    facts = facts or JobFacts()
    sha256, size, head = await asyncio.to_thread(stored_hash, storage, key)
    media_type = _media_type(head)
    watermark = None
    if options.watermark and media_type.startswith("image/"):
        watermark = {"text": options.watermark, "corner": options.watermark_corner}
    record = ProvenanceRecord(
        operation=operation,
        task_id=task_id,
        job_id=job_id or None,
        credits=credits,
        credits_estimated=credits_estimated,
        bill=bill,
        inputs=facts.inputs,
        parameters=recorded_parameters(facts.parameters, options),
        consent=facts.consent,
        output=OutputRecord(
            key=key,
            uri=strip_query(storage.uri(key)),
            sha256=sha256,
            bytes=size,
            media_type=media_type,
            labelled=label is not None,
            label=label.tags() if label else None,
            watermark=watermark,
            content_credentials=signing or {"signed": False, "reason": "output.sign=False"},
        ),
        submitted_by=submitted_by,
        software=_software(),
        **await run_facts(),
    )
    target = record_key(key)
    await asyncio.to_thread(storage.write_bytes, target, record.model_dump_json(indent=2).encode())
    get_run_logger().log(
        logging.INFO if log_each else logging.DEBUG,
        "provenance of %s: sha256 %s, record %s",
        key,
        sha256[:16],
        storage.uri(target),
    )
    return record


def write_manifest(storage: MediaStorage, key: str, items: list[dict[str, Any]]) -> str:
    """One JSON manifest of a batch: each item's outcome with its stored provenance record (None when the item
    stored nothing: failed, skipped, or handed to the store-result trigger, which writes the record later)."""
    entries = []
    for item in items:
        sidecar = item.get("provenance_key")
        record = json.loads(storage.read_bytes(sidecar)) if sidecar and storage.exists(sidecar) else None
        entries.append({**item, "record": record})
    manifest = {"record": f"{RECORD_VERSION}/manifest", "created_at": utc_now(), "items": entries}
    return storage.write_bytes(key, json.dumps(manifest, indent=2).encode())
