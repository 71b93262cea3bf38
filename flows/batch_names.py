"""Where a batch stores each result: an output-name template rendered into a storage key that cannot leave the
storage's basepath, and the index that makes a batch incremental: an item's fingerprint -> its result key and the
job sent for it (written before the paid submission), and the failure the service reported for that job."""

from __future__ import annotations

import hashlib
import json
import re
import string
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.provenance.records import is_stored

DEFAULT_OUTPUT_TEMPLATE = "results/batch/{operation}/{source_stem}__{face_stem}-{fingerprint}.{ext}"
TEMPLATE_FIELDS = ("date", "operation", "source_stem", "face_stem", "ext", "id", "fingerprint", "line")
INDEX_PREFIX = "batch-index"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_part(value: object) -> str:
    """A value as one safe path segment: letters, digits, ``._-`` (others become ``_``), no leading dot."""
    return _UNSAFE.sub("_", str(value)).strip("._")[:80] or "item"


def check_key(key: str, template: str) -> str:
    """The rendered key, when it stays inside the storage's basepath (relative, no ``..``, no empty part)."""
    parts = key.split("/")
    if key.startswith(("/", "~")) or "\\" in key or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        raise InputValidationError(
            f"output_template: {template!r} gives {key!r}, which is absolute or leaves the storage's basepath: "
            "use a relative template like 'results/{date}/{source_stem}__{face_stem}.{ext}'"
        )
    return key


def check_template(template: str) -> None:
    """Refuse a template naming an unknown field, or whose keys could leave the storage's basepath."""
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise InputValidationError(f"output_template: {template!r} is not a valid template ({error})") from None
    unknown = [name for name in names if name not in TEMPLATE_FIELDS]
    if unknown or not names:
        raise InputValidationError(
            f"output_template: {template!r} uses unknown field(s) {unknown or '(none at all)'}: "
            f"use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        )
    render_key(template, dict.fromkeys(TEMPLATE_FIELDS, "x"))


def render_key(template: str, values: dict[str, Any]) -> str:
    """The template with each value made a safe path segment, checked to stay inside the basepath."""
    return check_key(template.format_map({k: safe_part(v) for k, v in values.items()}), template)


def fingerprint(operation: str, inputs: dict[str, Any], options: dict[str, Any]) -> str:
    """What makes two items the same work: the operation, the SHA-256 of every input, and every option."""
    identity = json.dumps({"operation": operation, "inputs": inputs, "options": options}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()


def index_key(item_fingerprint: str) -> str:
    return f"{INDEX_PREFIX}/{item_fingerprint[:2]}/{item_fingerprint}.json"


FINGERPRINT_FACT = "batch_fingerprint"
"""The parameter of a batch job's facts (its submitted event, its provenance record) naming its work's fingerprint:
whoever sees the job's callback finds the work's index entry by it."""
NO_REASON = "the service reported success 0 (its callback gives no reason)"
LIKELY_CAUSE = "the service found no face in an input (the usual cause of success 0)"


class JobFailure(BaseModel):
    """A job of this work that the service reported failed: when, which task, what is known of why, who saw it."""

    failed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    job_id: str | None = None
    task_id: str | None = None
    reason: str = NO_REASON
    likely_cause: str = LIKELY_CAUSE
    seen_by: str


class IndexEntry(BaseModel):
    """What storage knows of a piece of work: where its result goes, the job last sent for it, the image inputs
    (to check them for faces), and the failure of that job, if the service reported one."""

    fingerprint: str
    result_key: str
    job_id: str | None = None
    task_id: str | None = None
    operation: str | None = None
    images: list[str] = Field(default_factory=list)
    failure: JobFailure | None = None
    earlier_failures: list[JobFailure] = Field(default_factory=list)

    def check_faces_hint(self) -> str:
        """The command that shows whether the service finds a face in each image input."""
        commands = [f"`faceswap-flows run extract-faces --source {image}`" for image in self.images]
        return f"check with {' and '.join(commands)} (2 credits each)" if commands else "check the inputs"


def read_entry(storage: MediaStorage, item_fingerprint: str) -> IndexEntry | None:
    """The index entry of this work, or None (none written, or unreadable)."""
    key = index_key(item_fingerprint)
    if not storage.exists(key):
        return None
    try:
        return IndexEntry.model_validate_json(storage.read_bytes(key))
    except ValidationError:
        return None


def write_ahead(storage: MediaStorage, entry: IndexEntry) -> None:
    """Note the job about to be sent for this work and where its result goes, before it is sent: whoever stores
    that result later (the batch, ``collect``, the store-result trigger, the sweep) makes the work done. Failures
    of earlier jobs of the same work are kept."""
    earlier = read_entry(storage, entry.fingerprint)
    if earlier is not None:
        kept = earlier.earlier_failures + ([earlier.failure] if earlier.failure else [])
        entry = entry.model_copy(update={"earlier_failures": kept[-10:]})
    storage.write_bytes(index_key(entry.fingerprint), entry.model_dump_json().encode())


def remember_failure(storage: MediaStorage, item_fingerprint: str, failure: JobFailure) -> bool:
    """Record that the service failed this work's job (whoever saw it); False when the index has no entry for the
    work, or names another job (a later one was sent since)."""
    entry = read_entry(storage, item_fingerprint)
    if entry is None or (entry.job_id and failure.job_id and entry.job_id != failure.job_id):
        return False
    if entry.failure is not None and entry.failure.task_id == failure.task_id:
        return True
    failure = failure.model_copy(update={"job_id": failure.job_id or entry.job_id})
    entry = entry.model_copy(update={"failure": failure, "task_id": failure.task_id or entry.task_id})
    storage.write_bytes(index_key(item_fingerprint), entry.model_dump_json().encode())
    return True


def remember_job_failure(
    storage: MediaStorage, submitted: dict[str, Any], callback: dict[str, Any], seen_by: str
) -> bool:
    """Record a failed callback (success 0) of a batch job in its work's index entry, found by the fingerprint in
    the job's submitted facts; False when the job is no batch item's (or its entry names a later job)."""
    item_fingerprint = (submitted.get("parameters") or {}).get(FINGERPRINT_FACT)
    if not item_fingerprint:
        return False
    job_id = callback.get("job_id") or submitted.get("job_id")
    failure = JobFailure(job_id=job_id, task_id=callback.get("task_id"), seen_by=seen_by)
    return remember_failure(storage, item_fingerprint, failure)


def stored_result(storage: MediaStorage, item_fingerprint: str) -> str | None:
    """The key of this work's result when it is stored whole with its provenance record, else None."""
    entry = read_entry(storage, item_fingerprint)
    return entry.result_key if entry is not None and is_stored(storage, entry.result_key) else None
