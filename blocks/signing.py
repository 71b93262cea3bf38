"""The block that holds the Content Credentials (C2PA) signing key and its certificate chain."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from faceswap_flows.blocks.documentation import DOCUMENTATION_URL

SigningAlgorithm = Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"]


class ContentSigningKey(Block):
    """The private key (a secret) and the PEM certificate chain (signing certificate first, then its issuers)
    that sign the C2PA manifest of every stored result.

    For development, ``faceswap-flows signing dev-cert`` makes a local CA and a signing certificate and saves
    this block. In production, use a certificate from a CA on the C2PA trust list (or your organisation's CA,
    handed to verifiers as a trust anchor), and a ``timestamp_url``: without one, the signatures stop validating
    when the certificate expires. Example:
        ```python
        from faceswap_flows.blocks import ContentSigningKey

        ContentSigningKey(
            private_key=open("signing-key.pem").read(), certificate_chain=open("chain.pem").read()
        ).save("faceswap-signing", overwrite=True)
        ```
    """

    _block_type_name = "Content Signing Key"
    _block_type_slug = "content-signing-key"
    _description = "Private key and certificate chain that sign the C2PA manifests (Content Credentials) of results."
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
        ```python
        from faceswap_flows.blocks import ContentSigningKey

        signing_key = ContentSigningKey.load("BLOCK_NAME")
        ```
    """

    private_key: SecretStr = Field(description="The signing certificate's private key, PEM (PKCS#8).")
    certificate_chain: str = Field(description="PEM certificates: the signing certificate first, then its CA(s).")
    algorithm: SigningAlgorithm = Field(default="es256", description="C2PA signing algorithm of the key.")
    timestamp_url: str | None = Field(
        default=None,
        description="URL of an RFC 3161 time-stamp authority (TSA) that countersigns every manifest, so its "
        "signature keeps validating after the signing certificate expires. Empty: no timestamp, and every "
        "signature stops validating (certificate expired) the day the certificate does.",
    )
    trust_anchors: str | None = Field(
        default=None,
        description="PEM root certificate(s) verifiers should trust for this chain (e.g. the development CA), and "
        "the TSA's root when it is on no C2PA trust list; used by `faceswap-flows audit` when no "
        "--trust-anchors file is given.",
    )
