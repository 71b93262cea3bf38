"""The consent register: which face photos may be swapped, on whose consent, for what and until when.

A record per face photo, keyed by the photo's SHA-256, in the storage block (``consent/<sha256>.json``), so
every worker that can read the inputs can read the register. Flows run with ``require_consent=True`` refuse an
unregistered, expired or revoked face photo before any credit is spent; the records of the photos used go
into the job's provenance record and its signed C2PA manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.exceptions import ConsentRefused
from faceswap_flows.flows.provenance.labels import utc_now

if TYPE_CHECKING:
    from faceswap_flows.flows.media.staged import StagedMedia
    from faceswap_flows.flows.options import OutputOptions

PREFIX = "consent/"


class ConsentRecord(BaseModel):
    """One person's consent to the use of one face photo."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    person: str | None = None
    consented_by: str = Field(min_length=1, description="Who gave consent (the person, or their guardian).")
    consented_at: date
    scope: str = Field(min_length=1, description="What the photo may be used for.")
    expires: date | None = None
    photo: str | None = Field(default=None, description="The photo's file name when it was registered.")
    registered_at: str = Field(default_factory=utc_now)
    revoked_at: str | None = None

    def problem(self, today: date) -> str | None:
        """Why this consent does not allow a swap today, e.g. ``expired on 2027-12-31`` (None: it does)."""
        if self.revoked_at:
            return f"revoked at {self.revoked_at}"
        if self.expires is not None and self.expires < today:
            return f"expired on {self.expires.isoformat()}"
        if self.consented_at > today:
            return f"starts on {self.consented_at.isoformat()}"
        return None


def record_key(sha256: str) -> str:
    return f"{PREFIX}{sha256}.json"


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_consent(storage: MediaStorage, record: ConsentRecord) -> str:
    return storage.write_bytes(record_key(record.sha256), record.model_dump_json(indent=2).encode())


def find_consent(storage: MediaStorage, sha256: str) -> ConsentRecord | None:
    key = record_key(sha256)
    if not storage.exists(key):
        return None
    return ConsentRecord.model_validate_json(storage.read_bytes(key))


def list_consents(storage: MediaStorage) -> list[ConsentRecord]:
    keys = storage.list(PREFIX, suffixes=[".json"])
    return [ConsentRecord.model_validate_json(storage.read_bytes(key)) for key in sorted(keys)]


def revoke_consent(storage: MediaStorage, sha256: str) -> ConsentRecord:
    record = find_consent(storage, sha256)
    if record is None:
        raise KeyError(f"no consent record for sha256 {sha256}")
    record.revoked_at = utc_now()
    save_consent(storage, record)
    return record


def _refusal(media: StagedMedia, field: str, record: ConsentRecord | None, problem: str | None) -> ConsentRefused:
    photo = f"the face photo {media.name}"
    if media.sha256 is None:
        why = f"{photo} could not be hashed (its URL cannot be read from here), so its consent cannot be checked"
    elif record is None:
        why = f"{photo} (sha256 {media.sha256}) has no consent record"
    else:
        why = f"the consent for {photo} (sha256 {media.sha256}) is not valid: {problem}"
    return ConsentRefused(
        f"{field}: {why}, and `require_consent=True` swaps only face photos with valid consent. Register its "
        f'consent with: faceswap-flows consent add {media.name} --by "WHO CONSENTED" --scope "WHAT FOR" '
        f'--until YYYY-MM-DD [--person "NAME"]',
        field=field,
    )


def check_consent(
    storage: MediaStorage, faces: Sequence[tuple[str, StagedMedia]], required: bool, today: date | None = None
) -> list[dict[str, Any]]:
    """The valid consent records of the face photos ``(field, staged)``; with ``required``, a photo without one
    is refused (ConsentRefused, naming the photo and the command that registers it)."""
    today = today or datetime.now(UTC).date()
    found = []
    for field, media in faces:
        record = find_consent(storage, media.sha256) if media.sha256 else None
        problem = record.problem(today) if record is not None else None
        if record is not None and problem is None:
            found.append({"field": field, **json.loads(record.model_dump_json())})
        elif required:
            raise _refusal(media, field, record, problem)
    return found


async def preflight(
    storage: MediaStorage,
    output: OutputOptions,
    require_consent: bool,
    faces: Sequence[tuple[str, StagedMedia]],
) -> list[dict[str, Any]]:
    """What a flow checks after staging its inputs and before any paid call: the signing key loads (when
    signing is on) and the face photos have consent (when required). Returns the consent records found."""
    if output.sign:
        from faceswap_flows.flows.provenance.content_credentials import load_signing_key

        await load_signing_key(output.signing_block)
    return await asyncio.to_thread(check_consent, storage, faces, require_consent)
