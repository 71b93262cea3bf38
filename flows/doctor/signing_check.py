"""The Content Credentials signing block: the key loads and belongs to the certificate, the chain leads to the CA
the block trusts, how long the certificate stays valid, and whether a time-stamp authority keeps signatures valid
after that (asked for a timestamp of a test digest)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from faceswap_flows.blocks import ContentSigningKey
from faceswap_flows.flows.doctor.report import Check, failed, ok, warn
from faceswap_flows.flows.doctor.timestamp_query import ask_timestamp

WARN_BEFORE = timedelta(days=30)
RENEW = "renew the signing certificate (development: faceswap-flows signing dev-cert --block {name}) and save the block"
NO_TSA = "signatures stop validating when the certificate expires"


def _public(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_key(key: ContentSigningKey, chain: list[x509.Certificate]) -> Check:
    try:
        private = serialization.load_pem_private_key(key.private_key.get_secret_value().encode(), password=None)
    except (ValueError, TypeError) as error:
        fix = "save the private key as unencrypted PEM (PKCS#8)"
        return failed("signing key", f"the private key does not load: {error}", fix)
    if _public(private.public_key()) != _public(chain[0].public_key()):
        return failed(
            "signing key", "the private key is not the signing certificate's", "save the key of the first certificate"
        )
    return ok("signing key", f"{key.algorithm} key of {chain[0].subject.rfc4514_string()}")


def chain_problem(chain: list[x509.Certificate], anchors: list[x509.Certificate]) -> str | None:
    """Why the chain does not lead from the signing certificate to one of ``anchors``; None when it does."""
    for child, issuer in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(issuer)
        except Exception:  # a wrong issuer name, signature or key type
            return f"{child.subject.rfc4514_string()} is not signed by {issuer.subject.rfc4514_string()}"
    last = chain[-1]
    for anchor in anchors:
        if anchor == last:
            return None
        try:
            last.verify_directly_issued_by(anchor)
            return None
        except Exception:
            continue
    return f"{last.subject.rfc4514_string()} is not signed by a CA of the block's trust_anchors"


def check_chain(key: ContentSigningKey, chain: list[x509.Certificate], name: str, now: datetime) -> Check:
    check = "signing certificate"
    try:
        anchors = x509.load_pem_x509_certificates(key.trust_anchors.encode()) if key.trust_anchors else chain[-1:]
    except ValueError as error:
        return failed(check, f"trust_anchors is not PEM certificates: {error}", "save the CA's PEM in trust_anchors")
    problem = chain_problem(chain, anchors)
    if problem:
        return failed(check, problem, "save the chain issued by the CA in trust_anchors (signing certificate first)")
    ends = min(certificate.not_valid_after_utc for certificate in chain)
    starts = chain[0].not_valid_before_utc
    if starts > now:
        return failed(check, f"not valid before {starts:%Y-%m-%d %H:%M} UTC", "check this machine's clock")
    if ends <= now:
        return failed(check, f"expired {ends:%Y-%m-%d %H:%M:%S} UTC", RENEW.format(name=name))
    left = ends - now
    result = f"{chain[0].subject.rfc4514_string()}, valid until {ends:%Y-%m-%d} ({left.days} days)"
    if left < WARN_BEFORE:
        return warn(check, f"{result}: expires in under {WARN_BEFORE.days} days", RENEW.format(name=name))
    if not key.trust_anchors:
        anchorless = f"{result}; the block names no trust_anchors, the chain was checked up to its last certificate"
        return warn(check, anchorless, "set trust_anchors to the PEM of the CA verifiers trust")
    return ok(check, f"{result}, chained to the block's trust anchor")


def check_timestamps(key: ContentSigningKey) -> Check:
    check = "timestamp authority"
    if not key.timestamp_url:
        return warn(check, f"timestamp_url is not set: {NO_TSA}", "set timestamp_url to an RFC 3161 TSA's URL")
    granted, said = ask_timestamp(key.timestamp_url)
    if not granted:
        return failed(check, f"{said}: {NO_TSA}", "check timestamp_url (an RFC 3161 TSA that answers over HTTP)")
    return ok(check, said)


def check_signing(key: ContentSigningKey, name: str) -> list[Check]:
    try:
        chain = x509.load_pem_x509_certificates(key.certificate_chain.encode())
    except ValueError as error:
        return [failed("signing certificate", f"the chain is not PEM certificates: {error}", "save the PEM chain")]
    now = datetime.now(UTC)
    return [check_key(key, chain), check_chain(key, chain, name, now), check_timestamps(key)]
