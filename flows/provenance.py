"""Provenance records: for every stored result, a JSON record next to it (``<result_key>.provenance.json``) that
says what made it (operation, inputs and their SHA-256, parameters, task_id, credits), in which flow run and
deployment, on whose behalf, and the SHA-256 of the stored (labelled) file; and the audit that checks a file
against its record. The labels inside the files are written by :mod:`flows.labels`.

Records never hold secrets: no API key, no webhook URL or token, no image bytes, and URLs lose their query
string (a presigned URL's query is a credential) and any user:password.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from prefect import task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, field_validator

from faceswap_flows.aifaceswap.models import sniff_image_type
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.labels import (
    DIGITAL_SOURCE_TYPE,
    LEGACY_DIGITAL_SOURCE_TYPES,
    SyntheticLabel,
    WatermarkCorner,
    embedded_label,
    utc_now,
)
from faceswap_flows.flows.media_tasks import StagedMedia
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


class OutputOptions(BaseModel):
    """What is done to a result before it is stored: the synthetic-media label (on unless explicitly turned
    off), and an optional visible watermark (images only)."""

    label: bool = True
    watermark: str | None = None
    watermark_corner: WatermarkCorner = "bottom-right"

    @field_validator("watermark")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


def output_parameters(options: OutputOptions) -> dict[str, Any]:
    """The output options as the flow parameters that set them."""
    return {
        "label_outputs": options.label,
        "watermark": options.watermark,
        "watermark_corner": options.watermark_corner,
    }


class JobFacts(BaseModel):
    """What a swap was asked to do: its inputs and parameters (never secrets, bytes or the webhook)."""

    inputs: list[InputRecord] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    digital_source_type: str = DIGITAL_SOURCE_TYPE


def job_facts(inputs: Mapping[str, StagedMedia | Sequence[StagedMedia] | None], **parameters: Any) -> JobFacts:
    """The facts of a job from its staged inputs (lists become ``field[i]``) and its parameters."""
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
    return JobFacts(inputs=records, parameters=_clean(parameters))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


_deployment_names: dict[str, str] = {}


async def run_facts() -> dict[str, Any]:
    """The flow run, its deployment and who ran it: the work pool and the run's creator when Prefect knows
    them, and always the OS user and host of the process that ran it. Inside a flow run this costs no API call
    (the run is in its context; deployment names are read once per process)."""
    run_by: dict[str, Any] = {"os_user": _os_user(), "host": socket.gethostname()}
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
    inputs: list[InputRecord] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
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
) -> ProvenanceRecord:
    """Hash the stored result as storage holds it and write its record next to it."""
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
        inputs=facts.inputs,
        parameters={**facts.parameters, **output_parameters(options)},
        output=OutputRecord(
            key=key,
            uri=strip_query(storage.uri(key)),
            sha256=sha256,
            bytes=size,
            media_type=media_type,
            labelled=label is not None,
            label=label.tags() if label else None,
            watermark=watermark,
        ),
        submitted_by=submitted_by,
        software=_software(),
        **await run_facts(),
    )
    target = record_key(key)
    await asyncio.to_thread(storage.write_bytes, target, record.model_dump_json(indent=2).encode())
    get_run_logger().info("provenance of %s: sha256 %s, record %s", key, sha256[:16], storage.uri(target))
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


# The audit: a stored output against its record


@dataclass(frozen=True)
class AuditResult:
    target: str
    record: dict[str, Any] | None
    sha256: str | None
    label: dict[str, str] | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _head_and_tail(handle: IO[bytes], size: int, span: int = 256 * 1024) -> bytes:
    """Where labels live: the start of an image, the end of an MP4 (its XMP box)."""
    handle.seek(0)
    head = handle.read(span)
    if size <= 2 * span:
        return head + handle.read()
    handle.seek(size - span)
    return head + handle.read()


def _open_target(
    target: str, storage: MediaStorage | None
) -> tuple[str, AbstractContextManager[IO[bytes]], bytes | None]:
    """The name, an opener and the record of an output given as a local path, or a key or URI of ``storage``."""
    local = Path(target).expanduser()
    if local.is_file():
        sidecar = Path(f"{local}{RECORD_SUFFIX}")
        return str(local), local.open("rb"), sidecar.read_bytes() if sidecar.is_file() else None
    if storage is None:
        raise FileNotFoundError(f"{target}: no such file (pass --storage-block to look it up as a storage key)")
    root = storage.uri("x")[:-1]  # the URI of the storage's root, ending with "/"
    key = target.removeprefix(root)
    if not storage.exists(key):
        raise FileNotFoundError(f"{target}: neither a local file nor a key of storage {storage.basepath}")
    sidecar_key = record_key(key)
    return key, storage.open(key), storage.read_bytes(sidecar_key) if storage.exists(sidecar_key) else None


def audit(target: str, storage: MediaStorage | None = None) -> AuditResult:
    """Read the record of a stored output (a local path, or a key or URI of ``storage``) and check the file's
    SHA-256 against it."""
    try:
        name, opened, raw = _open_target(target, storage)
    except FileNotFoundError as error:
        return AuditResult(target, None, None, None, str(error))
    with opened as handle:
        sha256, size, _ = hash_stream(handle)
        label = embedded_label(_head_and_tail(handle, size))
    if raw is None:
        return AuditResult(name, None, sha256, label, f"no provenance record ({name}{RECORD_SUFFIX})")
    try:
        record = json.loads(raw)
        expected = record["output"]["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        return AuditResult(name, None, sha256, label, f"the provenance record is unreadable: {error!r}")
    if sha256 != expected:
        problem = f"SHA-256 mismatch: the file is {sha256}, its record says {expected}: it changed after it was stored"
        return AuditResult(name, record, sha256, label, problem)
    return AuditResult(name, record, sha256, label, None)


def audit_report(target: str, storage_block: str | None) -> tuple[str, bool]:
    """What ``faceswap-flows audit`` prints, and whether the output passed. Local paths need no Prefect API;
    keys are looked up in the MediaStorage block ``storage_block``."""
    storage = None
    if storage_block and not Path(target).expanduser().is_file():
        try:
            storage = asyncio.run(MediaStorage.aload(storage_block))
        except Exception as error:
            return f"FAILED: cannot load the storage block {storage_block!r}: {error}", False
    result = audit(target, storage)
    lines = [json.dumps(result.record, indent=2)] if result.record else []
    if result.record and result.record.get("digital_source_type") in LEGACY_DIGITAL_SOURCE_TYPES:
        lines.append(
            f"record: written with the earlier IPTC term {result.record['digital_source_type']} (still a "
            f"synthetic-media label; new results say {DIGITAL_SOURCE_TYPE})"
        )
    if result.label:
        source = result.label.get("Iptc4xmpExt:DigitalSourceType", "?")
        lines.append(f"embedded label: {source} (task {result.label.get('fsf:TaskId', '?')})")
    elif result.sha256:
        lines.append("embedded label: none found in the file")
    if result.sha256:
        lines.append(f"sha256: {result.sha256}")
    verdict = f"FAILED: {result.problem}" if result.problem else f"OK: {result.target} matches its provenance record"
    lines.append(verdict)
    return "\n".join(lines), result.ok
