"""Signed job tokens: each submission's callback URL carries one, so only the service's callbacks for jobs we
started are accepted, and the callback can say which flow run and which storage it belongs to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600


class TokenError(Exception):
    """A callback token that cannot be accepted; ``status`` is the HTTP answer the receiver gives."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class JobToken(BaseModel):
    """What a callback URL says about its job. Signed, so the receiver can trust it without a shared database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(min_length=8, max_length=64)
    operation: str
    flow_run_id: str | None = None
    storage_block: str | None = None
    result_key: str | None = None
    store_by: Literal["flow", "trigger", "sweep"] = "flow"
    credits: int | None = Field(default=None, description="The job's estimated price: what a second task may cost.")
    issued_at: int = Field(default_factory=lambda: int(time.time()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest())


def sign(token: JobToken, secret: str) -> str:
    """The token as ``<payload>.<signature>``, safe in a URL path."""
    if not secret:
        raise ValueError("the receiver's signing secret is empty: configure one (FACESWAP_RECEIVER_SECRET)")
    payload = _b64(json.dumps(token.model_dump(exclude_none=True), separators=(",", ":")).encode())
    return f"{payload}.{_signature(secret, payload)}"


MAX_TOKEN_CHARS = 4096
# The challenge's HMAC covers this prefix and the nonce: a job token's payload (base64url) never holds a space or a
# newline, so an answer can never serve as the signature of a forged token.
CHALLENGE_CONTEXT = b"faceswap-flows receiver challenge v1\n"
CHALLENGE_NONCE = re.compile(r"[0-9a-f]{32,128}")


def challenge_answer(secret: str, nonce: str) -> str:
    """What a receiver holding ``secret`` answers to ``nonce`` (hex HMAC-SHA256): proves it holds the secret
    without ever sending it. ValueError when ``nonce`` is not 32 to 128 lowercase hex digits."""
    if not CHALLENGE_NONCE.fullmatch(nonce):
        raise ValueError("the nonce must be 32 to 128 lowercase hex digits")
    return hmac.new(secret.encode(), CHALLENGE_CONTEXT + nonce.encode("ascii"), hashlib.sha256).hexdigest()


def verify(text: str, secret: str, *, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS) -> JobToken:
    """The job of a signed token; TokenError (404 unknown, 403 forged, 410 expired) otherwise, whatever ``text``
    holds (non-ASCII, NUL, lone surrogates, any length)."""
    if not isinstance(text, str) or len(text) > MAX_TOKEN_CHARS:
        raise TokenError(404, "unknown job: the callback URL carries no job token")
    payload, dot, signature = text.partition(".")
    if not dot or not payload or not signature:
        raise TokenError(404, "unknown job: the callback URL carries no job token")
    given = signature.encode("utf-8", "surrogatepass")
    expected = _signature(secret, payload).encode("ascii") if payload.isascii() else b""
    if not hmac.compare_digest(given, expected) or not expected:
        raise TokenError(403, "forged or foreign job token: its signature does not match this receiver's secret")
    try:
        token = JobToken.model_validate_json(_unb64(payload))
    except (ValueError, ValidationError):
        raise TokenError(404, "unknown job: the token's content is not a job") from None
    if time.time() - token.issued_at > max_age_seconds:
        raise TokenError(410, f"expired job token: issued more than {max_age_seconds:.0f}s ago")
    return token
