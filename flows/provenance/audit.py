"""The audit: a stored output against its provenance record (its SHA-256) and its own signed C2PA manifest (the
signature, the hash of the content it covers, and the signer's chain against the trust anchors the user gives).

A file changed after it was stored fails both checks (the record's hash, and the manifest's data hash or
signature). A signature that is intact but whose signer chains to none of the given anchors is reported as
*untrusted*, never as valid, and fails unless the user accepts untrusted signers. One whose signing certificate
has expired, with no trusted RFC 3161 timestamp from when it was valid, is *expired* and fails.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from faceswap_flows.blocks import ContentSigningKey, MediaStorage
from faceswap_flows.flows.provenance.content_credentials import CredentialsCheck, read_credentials
from faceswap_flows.flows.provenance.labels import DIGITAL_SOURCE_TYPE, LEGACY_DIGITAL_SOURCE_TYPES, embedded_label
from faceswap_flows.flows.provenance.records import (
    RECORD_SUFFIX,
    _media_type,
    hash_stream,
    old_field_names,
    record_key,
)


@dataclass(frozen=True)
class AuditResult:
    target: str
    record: dict[str, Any] | None
    sha256: str | None
    label: dict[str, str] | None
    problem: str | None
    credentials: CredentialsCheck | None = None

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
        raise FileNotFoundError(f"{target}: no such file (pass --storage to look it up as a key of that storage block)")
    root = storage.uri("x")[:-1]  # the URI of the storage's root, ending with "/"
    key = target.removeprefix(root)
    if not storage.exists(key):
        raise FileNotFoundError(f"{target}: neither a local file nor a key of storage {storage.basepath}")
    sidecar_key = record_key(key)
    return key, storage.open(key), storage.read_bytes(sidecar_key) if storage.exists(sidecar_key) else None


def _credentials_problem(check: CredentialsCheck, record: dict[str, Any], allow_untrusted: bool) -> str | None:
    signed = (record.get("output", {}).get("content_credentials") or {}).get("signed")
    if check.state == "absent":
        return "no C2PA manifest in the file, though its record says it was signed" if signed else None
    if check.state == "invalid" and check.manifest is None and not signed:
        return None  # no manifest was written (signing off, or an older result) and the reader found none
    if check.state == "invalid":
        detail = "; ".join(check.failures) or check.error or "unreadable manifest"
        return f"TAMPERED: the C2PA manifest does not match the file ({detail})"
    job = check.job or {}
    if job.get("task_id") != record.get("task_id"):
        return f"the manifest names task {job.get('task_id')}, the record task {record.get('task_id')}"
    if check.state == "expired":
        return (
            f"EXPIRED: the signature and content hash check, but the signer's certificate ({check.signer}) has "
            "expired and no trusted timestamp shows it signed while valid (set the signing block's timestamp_url; "
            "give the TSA's root with --trust-anchors)"
        )
    if check.state == "untrusted" and not allow_untrusted:
        return (
            f"UNTRUSTED: the signature and content hash check, but the signer ({check.signer}) chains to none of "
            "the trust anchors given: pass --trust-anchors with your CA's PEM (or --allow-untrusted)"
        )
    return None


def audit(
    target: str,
    storage: MediaStorage | None = None,
    trust_anchors: str | None = None,
    allow_untrusted: bool = False,
) -> AuditResult:
    """Check a stored output (a local path, or a key or URI of ``storage``): its SHA-256 against its record, and
    its embedded C2PA manifest against its content and ``trust_anchors`` (PEM)."""
    try:
        name, opened, raw = _open_target(target, storage)
    except FileNotFoundError as error:
        return AuditResult(target, None, None, None, str(error))
    with opened as handle:
        sha256, size, head = hash_stream(handle)
        label = embedded_label(_head_and_tail(handle, size))
        check = read_credentials(handle, _media_type(head), trust_anchors)
    if raw is None:
        return AuditResult(name, None, sha256, label, f"no provenance record ({name}{RECORD_SUFFIX})", check)
    try:
        record = json.loads(raw)
        expected = record["output"]["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        return AuditResult(name, None, sha256, label, f"the provenance record is unreadable: {error!r}", check)
    problem = None
    if sha256 != expected:
        problem = f"SHA-256 mismatch: the file is {sha256}, its record says {expected}: it changed after it was stored"
    credentials_problem = _credentials_problem(check, record, allow_untrusted)
    if credentials_problem:
        problem = f"{problem}; {credentials_problem}" if problem else credentials_problem
    return AuditResult(name, record, sha256, label, problem, check)


def _manifest_lines(check: CredentialsCheck | None, record: dict[str, Any] | None) -> list[str]:
    if check is None:
        return []
    if check.state == "absent":
        signing = (record or {}).get("output", {}).get("content_credentials") or {}
        reason = f" (signing was off: {signing.get('reason')})" if signing.get("signed") is False else ""
        return [f"C2PA manifest: none{reason}"]
    job = check.job or {}
    lines = [f"C2PA manifest: {check.state.upper()} (signer: {check.signer}, task {job.get('task_id', '?')})"]
    if check.manifest:
        ingredients = [f"{i.get('title')} {i.get('instance_id', '')}" for i in check.manifest.get("ingredients", [])]
        lines.append(f"  ingredients: {', '.join(ingredients) or 'none'}")
    if job.get("consent"):
        lines.append(f"  consent: {', '.join(c.get('consented_by', '?') for c in job['consent'])}")
    lines.extend(f"  failure: {failure}" for failure in check.failures)
    return lines


def _trust_anchors(path: Path | None, signing_block: str | None) -> str | None:
    if path is not None:
        return path.read_text()
    if not signing_block:
        return None
    try:
        return asyncio.run(ContentSigningKey.aload(signing_block)).trust_anchors
    except Exception:  # no API or no block: the audit goes on without anchors (and says "untrusted")
        return None


def verdict(result: AuditResult) -> str:
    """One line, the verdict first (TRUSTED, VALID, TAMPERED, EXPIRED, UNTRUSTED, NO RECORD, NOT FOUND, FAILED)
    and its reason."""
    check, problem = result.credentials, result.problem
    if problem is None:
        if check is not None and check.state == "trusted":
            return f"TRUSTED: {result.target} matches its record; its C2PA manifest is signed by {check.signer}"
        if check is not None and check.state == "untrusted":
            return f"VALID: {result.target} matches its record; signer {check.signer} untrusted (--allow-untrusted)"
        return f"VALID: {result.target} matches its provenance record (no C2PA manifest to check)"
    manifest_broken = check is not None and check.tampered and bool(check.manifest or check.failures)
    if "SHA-256 mismatch" in problem or manifest_broken:
        if result.record is None and check is not None:
            detail = "; ".join(check.failures) or check.error or "unreadable manifest"
            problem = f"the C2PA manifest does not match the file ({detail}); {problem}"
        return f"TAMPERED: {problem.replace('TAMPERED: ', '')}"
    if problem.startswith(("EXPIRED: ", "UNTRUSTED: ")):
        return problem
    if result.sha256 is None and result.record is None and "provenance record" not in problem:
        return f"NOT FOUND: {problem}"
    if result.record is None and problem.startswith("no provenance record"):
        return f"NO RECORD: {problem}"
    return f"FAILED: {problem}"


def _summary_lines(result: AuditResult) -> list[str]:
    record = result.record or {}
    lines = []
    if record:
        output = record.get("output") or {}
        lines.append(
            f"record: {record.get('operation', '?')} task {record.get('task_id', '?')}, "
            f"{record.get('credits', '?')} credits, stored at {output.get('uri', '?')}"
        )
    if record.get("digital_source_type") in LEGACY_DIGITAL_SOURCE_TYPES:
        lines.append(
            f"record: written with the earlier IPTC term {record['digital_source_type']} (still a "
            f"synthetic-media label; new results say {DIGITAL_SOURCE_TYPE})"
        )
    if old_names := old_field_names(record):
        lines.append(f"record: written with the old field names ({', '.join(old_names)}): it reads the same")
    if result.label:
        source = result.label.get("Iptc4xmpExt:DigitalSourceType", "?")
        lines.append(f"embedded label: {source} (task {result.label.get('fsf:TaskId', '?')})")
    elif result.sha256:
        lines.append("embedded label: none found in the file")
    lines.extend(_manifest_lines(result.credentials, result.record))
    if result.sha256:
        lines.append(f"sha256: {result.sha256}")
    return lines


def audit_report(
    target: str,
    storage_block: str | None,
    trust_anchors: Path | None = None,
    signing_block: str | None = None,
    allow_untrusted: bool = False,
    full_record: bool = False,
) -> tuple[str, bool]:
    """What ``faceswap-flows audit`` prints (the verdict on the first line, then a short summary, then the whole
    provenance record as JSON when ``full_record``), and whether the output passed. Local paths need no Prefect
    API; keys are looked up in the MediaStorage block ``storage_block``; without ``trust_anchors`` (a PEM file),
    the anchors saved in the signing block ``signing_block`` are used, if it loads."""
    storage = None
    if storage_block and not Path(target).expanduser().is_file():
        try:
            storage = asyncio.run(MediaStorage.aload(storage_block))
        except Exception as error:
            return f"FAILED: cannot load the storage block {storage_block!r}: {error}", False
    result = audit(target, storage, _trust_anchors(trust_anchors, signing_block), allow_untrusted)
    lines = [verdict(result), *_summary_lines(result)]
    if full_record and result.record:
        lines.append(json.dumps(result.record, indent=2))
    return "\n".join(lines), result.ok
