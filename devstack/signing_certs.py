"""A local certificate authority and a Content Credentials signing certificate, for development.

C2PA refuses a self-signed signing certificate: the signer must be an end-entity certificate (not a CA) issued
by a CA, with the ``digitalSignature`` key usage and an extended key usage C2PA accepts (here
``emailProtection`` and ``documentSigning``), and with subject/authority key identifiers. The keys are ECDSA
P-256 (C2PA's ``es256``). In production the signing certificate comes from a CA on the C2PA trust list (or the
organisation's own CA, given to verifiers as a trust anchor); only the files differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
CONTENT_SIGNING_USAGES = (ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING)


@dataclass(frozen=True)
class DevCertificates:
    """PEM texts: the signing key, the chain (signing certificate first, then the CA) and the CA alone (the trust
    anchor verifiers are given)."""

    private_key_pem: str
    chain_pem: str
    ca_pem: str


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    valid_for: timedelta,
    is_ca: bool,
    usages: Sequence[x509.ObjectIdentifier] = CONTENT_SIGNING_USAGES,
) -> x509.Certificate:
    """A CA or an end-entity certificate valid from five minutes ago until ``valid_for`` from now. The extended
    key usage of an end entity is critical when it is time stamping alone, as RFC 3161 requires of a TSA."""
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not is_ca:
        time_stamping_only = list(usages) == [ExtendedKeyUsageOID.TIME_STAMPING]
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=time_stamping_only)
    return builder.sign(issuer_key, hashes.SHA256())


def _issued_pair(
    organisation: str, role: str, usages: Sequence[x509.ObjectIdentifier], valid_for: timedelta
) -> DevCertificates:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{organisation} local CA", organisation)
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, valid_for=valid_for * 2, is_ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"{organisation} {role}", organisation)
    issued = _certificate(subject, ca_name, key.public_key(), ca_key, valid_for=valid_for, is_ca=False, usages=usages)
    pem = serialization.Encoding.PEM
    return DevCertificates(
        private_key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        chain_pem=(issued.public_bytes(pem) + ca.public_bytes(pem)).decode(),
        ca_pem=ca.public_bytes(pem).decode(),
    )


def make_dev_certificates(
    organisation: str = "faceswap-flows development", days: int = 365, *, valid_for: timedelta | None = None
) -> DevCertificates:
    """A new CA and a signing certificate it issued, valid for ``days`` (or ``valid_for``: the tests make one
    that expires within seconds)."""
    return _issued_pair(organisation, "content signing", CONTENT_SIGNING_USAGES, valid_for or timedelta(days=days))


def make_timestamp_certificates(
    organisation: str = "faceswap-flows development TSA", days: int = 365
) -> DevCertificates:
    """A new root and the time-stamp authority's certificate it issued (extended key usage ``timeStamping``
    alone, critical): the key and chain ``TimestampAuthority`` signs with, the root verifiers are given."""
    return _issued_pair(organisation, "time stamping", [ExtendedKeyUsageOID.TIME_STAMPING], timedelta(days=days))


def write_dev_certificates(folder: Path, certificates: DevCertificates) -> dict[str, Path]:
    """The three PEM files in ``folder`` (the key readable by its owner only)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"key": folder / "signing-key.pem", "chain": folder / "signing-chain.pem", "ca": folder / "ca.pem"}
    paths["key"].touch(mode=0o600, exist_ok=True)
    paths["key"].chmod(0o600)
    paths["key"].write_text(certificates.private_key_pem)
    paths["chain"].write_text(certificates.chain_pem)
    paths["ca"].write_text(certificates.ca_pem)
    return paths


def dev_signing_key(folder: Path, organisation: str = "faceswap-flows development", days: int = 365) -> Any:
    """The ContentSigningKey of the development CA in ``folder``: made (and written) the first time, read back
    afterwards, so results signed earlier keep verifying against the same CA."""
    from faceswap_flows.blocks import ContentSigningKey

    paths = {"key": folder / "signing-key.pem", "chain": folder / "signing-chain.pem", "ca": folder / "ca.pem"}
    if all(path.is_file() for path in paths.values()):
        certificates = DevCertificates(*(paths[name].read_text() for name in ("key", "chain", "ca")))
    else:
        certificates = make_dev_certificates(organisation, days)
        write_dev_certificates(folder, certificates)
    return ContentSigningKey(
        private_key=certificates.private_key_pem,
        certificate_chain=certificates.chain_pem,
        trust_anchors=certificates.ca_pem,
    )


def save_dev_signing(folder: Path, block: str, *, organisation: str, days: int) -> dict[str, Path]:
    """Make a new development CA and signing certificate in ``folder`` and save them as the block ``block``."""
    from faceswap_flows.blocks import ContentSigningKey

    certificates = make_dev_certificates(organisation, days)
    paths = write_dev_certificates(folder, certificates)
    ContentSigningKey(
        private_key=certificates.private_key_pem,
        certificate_chain=certificates.chain_pem,
        trust_anchors=certificates.ca_pem,
    ).save(block, overwrite=True)
    return paths
