"""An RFC 3161 time-stamp request for a test digest, and what the time-stamp authority's reply says, in the few
DER structures it takes (no ASN.1 library is a dependency)."""

from __future__ import annotations

import hashlib
import secrets

import httpx

QUERY_TYPE = "application/timestamp-query"
# AlgorithmIdentifier { id-sha256, NULL }
SHA256_ALGORITHM = bytes.fromhex("300d06096086480165030402010500")
STATUS_TEXT = {0: "granted", 1: "granted with modifications", 2: "rejection", 3: "waiting", 4: "revocation warning"}


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def _integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def timestamp_query(digest: bytes, nonce: int) -> bytes:
    """TimeStampReq { version 1, messageImprint { sha256, digest }, nonce, certReq TRUE }, DER."""
    imprint = _der(0x30, SHA256_ALGORITHM + _der(0x04, digest))
    return _der(0x30, _integer(1) + imprint + _integer(nonce) + _der(0x01, b"\xff"))


def _element(data: bytes, at: int) -> tuple[int, int, int]:
    """The tag of the DER element at ``at``, and where its body starts and ends."""
    tag, first = data[at], data[at + 1]
    if first < 0x80:
        return tag, at + 2, at + 2 + first
    count = first & 0x7F
    size = int.from_bytes(data[at + 2 : at + 2 + count], "big")
    return tag, at + 2 + count, at + 2 + count + size


def reply_status(reply: bytes) -> int | None:
    """The PKIStatus of a TimeStampResp { status PKIStatusInfo { status INTEGER, ... }, token }; None when the reply
    is no such thing."""
    try:
        _, body, _ = _element(reply, 0)
        _, info, _ = _element(reply, body)
        tag, start, end = _element(reply, info)
    except IndexError:
        return None
    return int.from_bytes(reply[start:end], "big") if tag == 0x02 else None


def ask_timestamp(url: str, timeout: float = 15.0) -> tuple[bool, str]:
    """Ask the TSA at ``url`` to time-stamp a test digest: whether it granted a token for it, and what it said."""
    digest = hashlib.sha256(b"faceswap-flows doctor " + secrets.token_bytes(16)).digest()
    nonce = secrets.randbits(63)
    try:
        response = httpx.post(
            url, content=timestamp_query(digest, nonce), headers={"Content-Type": QUERY_TYPE}, timeout=timeout
        )
    except httpx.HTTPError as error:
        return False, f"{url} cannot be reached: {type(error).__name__}: {error}"
    if response.status_code != 200:
        return False, f"{url} answered HTTP {response.status_code}: {response.text[:200]}"
    status = reply_status(response.content)
    if status is None:
        return False, f"{url} answered something else than a DER time-stamp response"
    if status not in (0, 1):
        return False, f"{url} refused the request: status {status} ({STATUS_TEXT.get(status, 'unknown')})"
    if digest not in response.content or _integer(nonce) not in response.content:
        return False, f"{url} granted a token for another digest or nonce than the one sent"
    return True, f"{url} time-stamped a test digest ({STATUS_TEXT[status]})"
