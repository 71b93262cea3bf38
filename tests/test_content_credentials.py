"""Content Credentials: every stored result carries a C2PA manifest signed by the development CA's certificate,
read back by c2pa-python's own Reader (trusted with the CA as anchor, "untrusted" without), for PNG, JPEG,
WebP and MP4, after an S3 round trip too; one changed byte is detected; signing off is logged and recorded."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import c2pa
import numpy as np
import pytest
from cryptography import x509
from PIL import Image
from typer.testing import CliRunner

from faceswap_flows.blocks import ContentSigningKey
from faceswap_flows.cli.main import app
from faceswap_flows.devstack.signing_certs import DOCUMENT_SIGNING, make_dev_certificates
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.options import BlockNames, OutputOptions
from faceswap_flows.flows.provenance.content_credentials import (
    JOB_ASSERTION,
    ManifestFacts,
    SigningPlan,
    read_credentials,
    sign_bytes,
    sign_file,
)
from faceswap_flows.flows.provenance.labels import DIGITAL_SOURCE_TYPE, SyntheticLabel, label_image, label_video
from faceswap_flows.flows.provenance.records import RECORD_SUFFIX
from tests.vision import photos

CERTS = make_dev_certificates()
KEY = ContentSigningKey(
    private_key=CERTS.private_key_pem, certificate_chain=CERTS.chain_pem, trust_anchors=CERTS.ca_pem
)
INPUTS = [
    {"field": "source_image", "key": "inputs/ab/astronaut.png", "sha256": "a" * 64},
    {"field": "face_image", "key": "inputs/cd/grace_hopper.png", "sha256": "c" * 64},
]
FACTS = ManifestFacts(
    operation="faceswap",
    task_id="task-7",
    job_id="job-7",
    credits=2,
    inputs=INPUTS,
    flow_run={"id": "run-1", "name": "brave-otter"},
    deployment={"id": "dep-1", "name": "faceswap"},
)
PLAN = SigningPlan(block="test-signing", key=KEY, facts=FACTS)
LABEL = SyntheticLabel(task_id="task-7", operation="faceswap")


def photo(fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photos.astronaut()).save(buffer, format=fmt, **options)
    return buffer.getvalue()


IMAGES = {
    "image/png": lambda: photo("PNG"),
    "image/jpeg": lambda: photo("JPEG", quality=90),
    "image/webp": lambda: photo("WEBP", quality=80),
}


def signed_video(folder: Path) -> bytes:
    source = photos.write_video(folder / "in.mp4", lambda i: photos.face_video_frame(i)[0], 12)
    label_video(source, folder / "labelled.mp4", LABEL)
    sign_file(PLAN, folder / "labelled.mp4", folder / "signed.mp4", "video/mp4")
    return (folder / "signed.mp4").read_bytes()


def signed(media_type: str, folder: Path) -> bytes:
    if media_type == "video/mp4":
        return signed_video(folder)
    labelled, mime = label_image(IMAGES[media_type](), LABEL)
    assert mime == media_type
    return sign_bytes(PLAN, labelled, media_type, "result")


def c2pa_read(data: bytes, media_type: str, anchors: str | None) -> tuple[str, dict[str, Any], list[str]]:
    """c2pa-python's own reading: validation state, active manifest, failure codes."""
    settings = {"trust": {"trust_anchors": anchors}} if anchors else {}
    with c2pa.Reader(media_type, io.BytesIO(data), context=c2pa.Context.from_dict(settings)) as reader:
        results = reader.get_validation_results() or {}
        failures = [f["code"] for f in results.get("activeManifest", {}).get("failure", [])]
        return reader.get_validation_state(), reader.get_active_manifest(), failures


def check_manifest(manifest: dict[str, Any], task_id: str) -> dict[str, Any]:
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]
    assert actions[1]["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    job = next(a for a in manifest["assertions"] if a["label"] == JOB_ASSERTION)["data"]
    assert job["task_id"] == task_id and job["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert manifest["signature_info"]["common_name"].endswith("content signing")
    return job


def test_the_dev_certificate_is_what_c2pa_requires() -> None:
    signing, ca = x509.load_pem_x509_certificates(CERTS.chain_pem.encode())
    assert signing.issuer == ca.subject != signing.subject, "issued by the CA, not self-signed"
    assert not signing.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert signing.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    usages = signing.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert DOCUMENT_SIGNING in usages and x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in usages
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_self_signed_signer_is_only_ever_untrusted() -> None:
    """The README's known limit: c2pa-python signs with a self-signed certificate (C2PA's rule that a signer be
    CA-issued is not enforced when signing), and a reader reports it untrusted unless it is the anchor."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from faceswap_flows.devstack.signing_certs import _certificate, _name

    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("self-signed", "nobody")
    certificate = _certificate(name, name, key.public_key(), key, valid_for=timedelta(days=30), is_ca=False)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    self_signed = ContentSigningKey(private_key=key_pem.decode(), certificate_chain=pem.decode())
    data = sign_bytes(PLAN.model_copy(update={"key": self_signed}), photo("PNG"), "image/png", "r.png")
    assert read_credentials(io.BytesIO(data), "image/png", None).state == "untrusted"
    assert read_credentials(io.BytesIO(data), "image/png", CERTS.ca_pem).state == "untrusted"


@pytest.mark.parametrize("media_type", ["image/png", "image/jpeg", "image/webp", "video/mp4"])
def test_every_media_type_carries_a_valid_manifest(media_type: str, tmp_path: Path) -> None:
    data = signed(media_type, tmp_path)
    state, manifest, failures = c2pa_read(data, media_type, CERTS.ca_pem)
    assert state == "Trusted" and failures == [], failures
    job = check_manifest(manifest, "task-7")
    assert job["credits"] == 2 and job["flow_run"]["id"] == "run-1" and job["deployment"]["name"] == "faceswap"
    assert "thumbnail" not in manifest and all("thumbnail" not in i for i in manifest["ingredients"])
    ingredients = {i["title"]: i for i in manifest["ingredients"]}
    assert ingredients["astronaut.png"]["instance_id"] == "sha256:" + "a" * 64
    assert ingredients["astronaut.png"]["relationship"] == "parentOf"
    assert ingredients["grace_hopper.png"]["instance_id"] == "sha256:" + "c" * 64
    assert "DigitalSourceType" in data.decode("latin-1") and DIGITAL_SOURCE_TYPE.encode() in data, "label kept"

    state, _, failures = c2pa_read(data, media_type, None)
    assert state == "Valid" and failures == ["signingCredential.untrusted"]
    assert read_credentials(io.BytesIO(data), media_type, None).state == "untrusted"
    assert read_credentials(io.BytesIO(data), media_type, CERTS.ca_pem).state == "trusted"
    other_ca = make_dev_certificates("someone else").ca_pem
    assert read_credentials(io.BytesIO(data), media_type, other_ca).state == "untrusted"

    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01  # one bit of the content
    check = read_credentials(io.BytesIO(bytes(tampered)), media_type, CERTS.ca_pem)
    assert check.state == "invalid" and check.tampered, check


@pytest.mark.parametrize("media_type", ["image/png", "image/jpeg", "image/webp", "video/mp4"])
def test_manifests_survive_an_s3_round_trip(media_type: str, s3_storage, tmp_path: Path) -> None:
    data = signed(media_type, tmp_path)
    key = f"results/roundtrip/result.{media_type.split('/')[1]}"
    s3_storage.write_bytes(key, data)
    assert s3_storage.uri(key).startswith("s3://")
    state, manifest, failures = c2pa_read(s3_storage.read_bytes(key), media_type, CERTS.ca_pem)
    assert state == "Trusted" and failures == [] and check_manifest(manifest, "task-7")
    with s3_storage.open(key) as handle:  # read in place, as the audit does
        assert read_credentials(handle, media_type, CERTS.ca_pem).state == "trusted"


def audit_cli(*args: str) -> tuple[int, str]:
    outcome = CliRunner().invoke(app, ["audit", *args])
    return outcome.exit_code, outcome.output


async def test_a_flow_result_is_signed_and_audited(stack, s3_storage, tmp_path: Path) -> None:
    await s3_storage.asave("credentials-s3", overwrite=True)
    outcome = await faceswap(
        str(stack.files["astronaut"]), str(stack.files["grace"]), blocks=BlockNames(storage="credentials-s3")
    )
    result = s3_storage.read_bytes(outcome.result_key)
    record = json.loads(s3_storage.read_bytes(outcome.result_key + RECORD_SUFFIX))
    state, manifest, failures = c2pa_read(result, "image/png", (stack.signing_dir / "ca.pem").read_text())
    assert state == "Trusted" and failures == [], failures
    job = check_manifest(manifest, outcome.task_id)
    assert job["credits"] == record["credits"] == 2 and job["flow_run"]["id"] == record["flow_run"]["id"]
    hashes = {i["instance_id"] for i in manifest["ingredients"]}
    assert hashes == {f"sha256:{item['sha256']}" for item in record["inputs"]}
    assert record["output"]["content_credentials"]["signed"] is True

    anchors = str(stack.signing_dir / "ca.pem")
    code, output = await asyncio.to_thread(
        audit_cli, outcome.result_uri, "--storage-block", "credentials-s3", "--trust-anchors", anchors
    )
    assert code == 0 and "C2PA manifest: TRUSTED" in output and output.startswith("TRUSTED: "), output

    local = tmp_path / "result.png"  # a local copy with its record: no API needed, no anchors given
    local.write_bytes(result)
    Path(f"{local}{RECORD_SUFFIX}").write_bytes(s3_storage.read_bytes(outcome.result_key + RECORD_SUFFIX))
    code, output = await asyncio.to_thread(audit_cli, str(local), "--signing-block", "")
    assert code == 1 and "C2PA manifest: UNTRUSTED" in output and output.startswith("UNTRUSTED: "), output
    code, output = await asyncio.to_thread(audit_cli, str(local), "--signing-block", "", "--allow-untrusted")
    assert code == 0 and "C2PA manifest: UNTRUSTED" in output and output.startswith("VALID: "), output

    tampered = bytearray(result)
    tampered[len(tampered) // 2] ^= 0x01
    local.write_bytes(bytes(tampered))
    code, output = await asyncio.to_thread(audit_cli, str(local), "--trust-anchors", anchors)
    assert code == 1 and output.startswith("TAMPERED: SHA-256 mismatch"), output
    Path(f"{local}{RECORD_SUFFIX}").unlink()  # the tampered copy alone, outside storage: its manifest tells
    code, output = await asyncio.to_thread(audit_cli, str(local), "--trust-anchors", anchors)
    assert code == 1 and output.startswith("TAMPERED: the C2PA manifest does not match"), output


async def test_signing_off_is_logged_and_recorded(stack, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        outcome = await faceswap(
            str(stack.files["grace"]), str(stack.files["astronaut"]), output=OutputOptions(sign=False)
        )
    result = stack.storage.read_bytes(outcome.result_key)
    assert c2pa.Reader.try_create("image/png", io.BytesIO(result)) is None, "no manifest"
    record = json.loads(stack.storage.read_bytes(outcome.provenance_key))
    assert record["output"]["content_credentials"] == {"signed": False, "reason": "output.sign=False"}
    assert record["parameters"]["output"]["sign"] is False
    assert "WITHOUT a signed C2PA manifest" in caplog.text
    code, output = await asyncio.to_thread(audit_cli, outcome.result_key)
    assert code == 0 and "C2PA manifest: none (signing was off: output.sign=False)" in output, output


async def test_a_missing_signing_block_is_refused_before_any_credit(stack) -> None:
    from faceswap_flows.aifaceswap.errors import InputValidationError

    spent = stack.spent()
    with pytest.raises(InputValidationError, match="faceswap-flows signing dev-cert"):
        await faceswap(
            str(stack.files["grace"]),
            str(stack.files["astronaut"]),
            output=OutputOptions(signing_block="no-such-signing"),
        )
    assert stack.spent() == spent


def test_the_dev_cert_command_saves_a_block_that_signs(prefect_api: str, tmp_path: Path) -> None:
    outcome = CliRunner().invoke(
        app, ["signing", "dev-cert", "--folder", str(tmp_path), "--block", "test-dev-cert", "--days", "30"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "signing-key.pem").stat().st_mode & 0o077 == 0, "the key is readable by its owner only"
    key = ContentSigningKey.load("test-dev-cert")
    assert key.private_key.get_secret_value() == (tmp_path / "signing-key.pem").read_text()
    data = sign_bytes(PLAN.model_copy(update={"key": key}), photo("PNG"), "image/png", "r.png")
    state, _, _ = c2pa_read(data, "image/png", (tmp_path / "ca.pem").read_text())
    assert state == "Trusted"
    assert np.asarray(Image.open(io.BytesIO(data))).shape == photos.astronaut().shape
