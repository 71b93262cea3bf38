"""RFC 3161 timestamps: a result signed through a ContentSigningKey with a ``timestamp_url`` (here the local
time-stamp authority of devstack/timestamp_authority.py) still validates with c2pa-python's Reader after its
signing certificate expired; the same result signed without one does not. The certificates are made here, the
signing one valid for seconds."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import c2pa
import httpx
import pytest
from cryptography import x509
from typer.testing import CliRunner

from faceswap_flows.blocks import ContentSigningKey
from faceswap_flows.cli.main import app
from faceswap_flows.devstack.signing_certs import DevCertificates, make_dev_certificates
from faceswap_flows.devstack.timestamp_authority import QUERY_TYPE, REPLY_TYPE, TimestampAuthority
from faceswap_flows.flows.provenance.content_credentials import read_credentials, sign_file
from faceswap_flows.flows.provenance.records import RECORD_SUFFIX
from tests.test_content_credentials import PLAN, photo

SHORT_LIFE = timedelta(seconds=6)


def reader_settings(anchors: str) -> dict[str, Any]:
    """What the Reader is told to check: the signer's chain and the timestamp's chain against ``anchors`` (PEM),
    nothing fetched from the network."""
    return {
        "verify": {
            "verify_trust": True,
            "verify_timestamp_trust": True,
            "ocsp_fetch": False,
            "remote_manifest_fetch": False,
        },
        "trust": {"trust_anchors": anchors},
    }


def c2pa_check(path: Path, anchors: str) -> tuple[str, dict[str, list[str]], str | None]:
    """c2pa-python's reading of a signed file: its validation state, the codes by kind, the signature's time."""
    with (
        path.open("rb") as stream,
        c2pa.Reader("image/png", stream, context=c2pa.Context.from_dict(reader_settings(anchors))) as reader,
    ):
        results = reader.get_validation_results()["activeManifest"]
        codes = {kind: [entry["code"] for entry in results[kind]] for kind in ("success", "informational", "failure")}
        return reader.get_validation_state(), codes, reader.get_active_manifest()["signature_info"].get("time")


def sign_png(key: ContentSigningKey, folder: Path, name: str) -> Path:
    source, target = folder / f"{name}-source.png", folder / f"{name}.png"
    source.write_bytes(photo("PNG"))
    sign_file(PLAN.model_copy(update={"key": key}), source, target, "image/png")
    return target


def expiry(certificates: DevCertificates) -> datetime:
    return x509.load_pem_x509_certificates(certificates.chain_pem.encode())[0].not_valid_after_utc


@dataclass
class ExpiredPair:
    """One photo signed with a seconds-long certificate, with and without a timestamp, read before it expired."""

    certificates: DevCertificates
    tsa_root: str
    signed_at: datetime
    stamped: Path
    bare: Path
    before: dict[str, tuple[str, dict[str, list[str]], str | None]]

    @property
    def both_roots(self) -> str:
        return self.certificates.ca_pem + self.tsa_root


@pytest.fixture(scope="module")
def expired_pair(tmp_path_factory: pytest.TempPathFactory) -> ExpiredPair:
    folder = tmp_path_factory.mktemp("expired")
    certificates = make_dev_certificates("short-lived", valid_for=SHORT_LIFE)
    key = ContentSigningKey(private_key=certificates.private_key_pem, certificate_chain=certificates.chain_pem)
    signed_at = datetime.now(UTC).replace(microsecond=0)
    with TimestampAuthority() as tsa:
        stamped = sign_png(key.model_copy(update={"timestamp_url": tsa.url}), folder, "stamped")
    bare = sign_png(key, folder, "bare")
    pair = ExpiredPair(certificates, tsa.root_pem, signed_at, stamped, bare, {})
    pair.before = {path.name: c2pa_check(path, pair.both_roots) for path in (stamped, bare)}
    left = expiry(certificates) - datetime.now(UTC)
    assert timedelta(0) < left <= SHORT_LIFE, f"read {left} before the certificate's expiry, not within {SHORT_LIFE}"
    time.sleep(left.total_seconds() + 1.5)
    return pair


def test_both_signatures_validate_while_the_certificate_is_valid(expired_pair: ExpiredPair) -> None:
    state, codes, stamp_time = expired_pair.before["stamped.png"]
    assert state == "Trusted" and codes["failure"] == [], codes
    assert {"timeStamp.validated", "timeStamp.trusted"} <= set(codes["success"]), codes
    assert expired_pair.signed_at <= datetime.fromisoformat(stamp_time) <= expiry(expired_pair.certificates)
    state, codes, no_time = expired_pair.before["bare.png"]
    assert state == "Trusted" and no_time is None and not any(c.startswith("timeStamp") for c in codes["success"])


def test_a_timestamped_signature_outlives_its_certificate(expired_pair: ExpiredPair) -> None:
    state, codes, _ = c2pa_check(expired_pair.stamped, expired_pair.both_roots)
    assert state == "Trusted" and codes["failure"] == [], codes
    assert {"timeStamp.validated", "timeStamp.trusted", "signingCredential.trusted"} <= set(codes["success"])
    with expired_pair.stamped.open("rb") as stream:
        assert read_credentials(stream, "image/png", expired_pair.both_roots).state == "trusted"


def test_without_a_timestamp_the_signature_expires_with_its_certificate(expired_pair: ExpiredPair) -> None:
    state, codes, _ = c2pa_check(expired_pair.bare, expired_pair.both_roots)
    assert state == "Invalid" and "signingCredential.expired" in codes["failure"], codes
    with expired_pair.bare.open("rb") as stream:
        check = read_credentials(stream, "image/png", expired_pair.both_roots)
    assert check.state == "expired" and not check.tampered, check
    assert any(failure.startswith("signingCredential.expired") for failure in check.failures)


def test_a_timestamp_counts_only_when_its_tsa_chains_to_an_anchor(expired_pair: ExpiredPair) -> None:
    state, codes, _ = c2pa_check(expired_pair.stamped, expired_pair.certificates.ca_pem)
    assert "timeStamp.untrusted" in codes["informational"] and "signingCredential.expired" in codes["failure"]
    assert state == "Invalid"


def test_a_changed_byte_is_tampering_even_once_expired(expired_pair: ExpiredPair) -> None:
    changed = bytearray(expired_pair.bare.read_bytes())
    changed[len(changed) // 2] ^= 0x01
    check = read_credentials(io.BytesIO(bytes(changed)), "image/png", expired_pair.both_roots)
    assert check.state == "invalid" and check.tampered, check


def test_the_audit_names_an_expired_signature_and_passes_a_timestamped_one(
    expired_pair: ExpiredPair, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(expired_pair.both_roots)
    for path in (expired_pair.stamped, expired_pair.bare):
        record = {"task_id": "task-7", "output": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}
        record["output"]["content_credentials"] = {"signed": True}
        Path(f"{path}{RECORD_SUFFIX}").write_text(json.dumps(record))
    audit = ["audit", "--trust-anchors", str(anchors), "--signing-block", ""]
    outcome = CliRunner().invoke(app, [*audit, str(expired_pair.stamped)])
    assert outcome.exit_code == 0 and "C2PA manifest: TRUSTED" in outcome.output, outcome.output
    outcome = CliRunner().invoke(app, [*audit, str(expired_pair.bare)])
    assert outcome.exit_code == 1 and "C2PA manifest: EXPIRED" in outcome.output, outcome.output
    assert outcome.output.startswith("EXPIRED: ") and "timestamp_url" in outcome.output, outcome.output


def test_an_empty_timestamp_url_signs_without_a_timestamp(tmp_path: Path) -> None:
    certificates = make_dev_certificates()
    key = ContentSigningKey(
        private_key=certificates.private_key_pem, certificate_chain=certificates.chain_pem, timestamp_url=""
    )
    state, codes, stamp_time = c2pa_check(sign_png(key, tmp_path, "empty"), certificates.ca_pem)
    assert state == "Trusted" and stamp_time is None, codes
    assert not any(code.startswith("timeStamp") for kind in codes.values() for code in kind)


def test_an_unreachable_tsa_stops_the_signing_and_is_named(tmp_path: Path) -> None:
    """No silent fallback to an unstamped signature: the error names the TSA's URL."""
    with TimestampAuthority() as stopped:
        url = stopped.url
    certificates = make_dev_certificates()
    key = ContentSigningKey(
        private_key=certificates.private_key_pem, certificate_chain=certificates.chain_pem, timestamp_url=url
    )
    with pytest.raises(c2pa.C2paError, match=re.escape(url)):
        sign_png(key, tmp_path, "unreachable")


def test_the_local_tsa_answers_rfc3161_requests(tmp_path: Path) -> None:
    """Checked with openssl alone: the reply verifies against the TSA's root, its certificate may only time-stamp
    (extended key usage timeStamping, critical), and its folder is gone once it stops."""
    data = tmp_path / "data.bin"
    data.write_bytes(b"what was signed")
    query = subprocess.run(
        ["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert"], capture_output=True, check=True
    ).stdout
    with TimestampAuthority() as tsa:
        reply = httpx.post(tsa.url, content=query, headers={"content-type": QUERY_TYPE})
        refused = httpx.post(tsa.url, content=query, headers={"content-type": "application/octet-stream"})
        folder = tsa._folder.path
        assert folder.is_dir()
    assert not folder.exists(), "the TSA's key and certificates are removed when it stops"
    assert reply.status_code == 200 and reply.headers["content-type"] == REPLY_TYPE
    assert refused.status_code == 415 and QUERY_TYPE in refused.text

    (tmp_path / "reply.tsr").write_bytes(reply.content)
    (tmp_path / "root.pem").write_text(tsa.root_pem)
    verify = ["openssl", "ts", "-verify", "-data", str(data), "-in", str(tmp_path / "reply.tsr")]
    done = subprocess.run([*verify, "-CAfile", str(tmp_path / "root.pem")], capture_output=True, text=True)
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stdout + done.stderr
    other = make_dev_certificates("someone else").ca_pem
    (tmp_path / "other.pem").write_text(other)
    done = subprocess.run([*verify, "-CAfile", str(tmp_path / "other.pem")], capture_output=True, text=True)
    assert done.returncode != 0

    tsa_certificate = x509.load_pem_x509_certificates(tsa.certificates.chain_pem.encode())[0]
    usage = tsa_certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert usage.critical and list(usage.value) == [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]
