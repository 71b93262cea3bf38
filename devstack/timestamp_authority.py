"""A local RFC 3161 time-stamp authority (TSA), for development and the tests: ``openssl ts -reply`` behind a
loopback HTTP server. Set a ContentSigningKey's ``timestamp_url`` to its ``url`` and give verifiers its
``root_pem`` as a trust anchor.

Its key and certificates are made when it starts (``make_timestamp_certificates``) and live in a temporary
folder removed when it stops; it is a context manager, and its thread ends with the process.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from faceswap_flows.aifaceswap.http_server import BackgroundServer
from faceswap_flows.devstack.signing_certs import DevCertificates, make_timestamp_certificates

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
TSA_POLICY = "2.25.32068228914881362795035194908431665868"  # a UUID-based OID (ITU-T X.667): ours, unregistered
REPLY_COMMAND = ("openssl", "ts", "-reply", "-config", "openssl.cnf", "-inkey", "tsa-key.pem", "-signer", "tsa.pem")
CHAIN = ("-chain", "root.pem")

OPENSSL_CONFIG = f"""\
[ tsa ]
default_tsa = local_tsa

[ local_tsa ]
dir = .
serial = $dir/serial
crypto_device = builtin
signer_digest = sha256
default_policy = {TSA_POLICY}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class TimestampFolder:
    """The files ``openssl ts -reply`` reads: key, TSA certificate, its root, the config and the serial."""

    def __init__(self, certificates: DevCertificates) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="faceswap-tsa-"))
        tsa_certificate, _ = certificates.chain_pem.split("-----END CERTIFICATE-----\n", 1)
        (self.path / "tsa-key.pem").write_text(certificates.private_key_pem)
        (self.path / "tsa.pem").write_text(tsa_certificate + "-----END CERTIFICATE-----\n")
        (self.path / "root.pem").write_text(certificates.ca_pem)
        (self.path / "openssl.cnf").write_text(OPENSSL_CONFIG)
        (self.path / "serial").write_text("01\n")

    def reply(self, query: bytes) -> bytes:
        """The DER time-stamp response to a DER time-stamp request (an error status when it is malformed)."""
        with tempfile.NamedTemporaryFile(dir=self.path, suffix=".tsq") as request:
            request.write(query)
            request.flush()
            done = subprocess.run(
                [*REPLY_COMMAND, *CHAIN, "-queryfile", request.name],
                cwd=self.path,
                capture_output=True,
                timeout=30,
                check=True,
            )
        return done.stdout

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def timestamp_app(folder: TimestampFolder) -> Starlette:
    """POST a DER ``TimeStampReq`` (``application/timestamp-query``) to ``/``: the ``TimeStampResp`` comes back."""
    one_at_a_time = asyncio.Lock()  # openssl reads and rewrites the serial file

    async def stamp(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != QUERY_TYPE:
            return PlainTextResponse(f"send a DER time-stamp request as {QUERY_TYPE}", status_code=415)
        query = await request.body()
        async with one_at_a_time:
            try:
                reply = await asyncio.to_thread(folder.reply, query)
            except subprocess.CalledProcessError as error:
                return PlainTextResponse(error.stderr.decode(errors="replace"), status_code=400)
        return Response(reply, media_type=REPLY_TYPE)

    return Starlette(routes=[Route("/", stamp, methods=["POST"])])


class TimestampAuthority(BackgroundServer):
    """A loopback RFC 3161 time-stamp authority with a new root and TSA certificate (or the ones given)."""

    def __init__(self, certificates: DevCertificates | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if shutil.which("openssl") is None:
            raise RuntimeError("the local time-stamp authority needs the openssl command (apt install openssl)")
        self.certificates = certificates or make_timestamp_certificates()
        self._folder = TimestampFolder(self.certificates)
        super().__init__(timestamp_app(self._folder), host=host, port=port)

    @property
    def root_pem(self) -> str:
        """The trust anchor of the time stamps: the root that issued the TSA certificate."""
        return self.certificates.ca_pem

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._folder.remove()
