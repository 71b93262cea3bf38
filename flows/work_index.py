"""The index that makes a batch incremental: a piece of work's fingerprint -> its result key and the job sent for
it (written before the paid submission), and the failure the service reported for that job. Below the batch and the
collectors (store-result, the sweep), which all note what became of a batch's jobs in it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.provenance.records import is_stored

INDEX_PREFIX = "batch-index"


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
