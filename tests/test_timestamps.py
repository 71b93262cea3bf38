"""RFC 3161 timestamps: a result signed through a ContentSigningKey with a ``timestamp_url`` (here the local
time-stamp authority of devstack/timestamp_authority.py) still validates with c2pa-python's Reader after its
signing certificate expired; the same result signed without one does not. The certificates are made here, the
signing one valid for seconds."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import c2pa
import httpx
import pytest
from cryptography import x509

from faceswap_flows.blocks import ContentSigningKey
from faceswap_flows.devstack.signing_certs import DevCertificates, make_dev_certificates
from faceswap_flows.devstack.timestamp_authority import QUERY_TYPE, REPLY_TYPE, TimestampAuthority
from faceswap_flows.flows.provenance.content_credentials import read_credentials, sign_file
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


@pytest.fixture
def tsa() -> TimestampAuthority:
    with TimestampAuthority() as authority:
        yield authority


def test_a_timestamped_signature_outlives_its_certificate(tsa: TimestampAuthority, tmp_path: Path) -> None:
    certificates = make_dev_certificates("short-lived", valid_for=SHORT_LIFE)
    key = ContentSigningKey(private_key=certificates.private_key_pem, certificate_chain=certificates.chain_pem)
    signed_at = datetime.now(UTC).replace(microsecond=0)
    stamped = sign_png(key.model_copy(update={"timestamp_url": tsa.url}), tmp_path, "stamped")
    bare = sign_png(key, tmp_path, "bare")
    both_roots = certificates.ca_pem + tsa.root_pem

    state, codes, stamp_time = c2pa_check(stamped, both_roots)
    assert datetime.now(UTC) < expiry(certificates), "signed and read before the certificate expired"
    assert state == "Trusted" and codes["failure"] == [], codes
    assert {"timeStamp.validated", "timeStamp.trusted"} <= set(codes["success"]), codes
    assert signed_at <= datetime.fromisoformat(stamp_time) <= expiry(certificates)
    state, codes, no_time = c2pa_check(bare, both_roots)
    assert state == "Trusted" and no_time is None and not any(c.startswith("timeStamp") for c in codes["success"])

    left = expiry(certificates) - datetime.now(UTC)
    assert left <= SHORT_LIFE, f"the signing certificate expires in {left}, not within {SHORT_LIFE}"
    time.sleep(max(0.0, left.total_seconds()) + 1.5)

    state, codes, _ = c2pa_check(stamped, both_roots)
    assert state == "Trusted" and codes["failure"] == [], codes
    assert {"timeStamp.validated", "timeStamp.trusted", "signingCredential.trusted"} <= set(codes["success"])
    with stamped.open("rb") as stream:
        assert read_credentials(stream, "image/png", both_roots).state == "trusted"

    state, codes, _ = c2pa_check(bare, both_roots)
    assert state == "Invalid" and "signingCredential.expired" in codes["failure"], codes
    with bare.open("rb") as stream:
        check = read_credentials(stream, "image/png", both_roots)
    assert check.state == "invalid" and any(f.startswith("signingCredential.expired") for f in check.failures)

    # the timestamp counts only when its TSA chains to an anchor: with the signing CA alone it is untrusted
    state, codes, _ = c2pa_check(stamped, certificates.ca_pem)
    assert "timeStamp.untrusted" in codes["informational"] and "signingCredential.expired" in codes["failure"]
    assert state == "Invalid"


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
