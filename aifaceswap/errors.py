"""Errors raised by the aifaceswap client, one class per way a call can fail.

Every error says whether retrying the same call is safe (``retryable``) and whether the service may
already have accepted it (``outcome_unknown``): a paid job whose answer was lost must be looked for,
not submitted again.
"""

from __future__ import annotations

import html
import re
from typing import Any

UPSTREAM_EXCERPT_CHARS = 160
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_INVISIBLE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def shorten(text: str, limit: int = UPSTREAM_EXCERPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with a note of how many were left out."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit].rstrip()}... ({len(flat) - limit} more characters)"


def upstream_excerpt(body: str, limit: int = UPSTREAM_EXCERPT_CHARS) -> str:
    """What an error message quotes of a body that is not the API's answer (a gateway's HTML page, a long JSON):
    an HTML page by its title (else its text), anything else on one line, never more than ``limit`` characters,
    so the advice around it is never pushed out of a report."""
    if not body.strip():
        return "an empty body"
    if body.lstrip().startswith("<"):
        title = _TITLE.search(body)
        text = title.group(1) if title and title.group(1).strip() else _TAG.sub(" ", _INVISIBLE.sub(" ", body))
        return f"an HTML page ({len(body)} characters): {shorten(html.unescape(text), limit)!r}"
    return repr(shorten(body, limit))


class AIFaceSwapError(Exception):
    """Base of every error this package raises about a call to the API."""

    retryable: bool = False
    outcome_unknown: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputValidationError(AIFaceSwapError, ValueError):
    """The request was refused locally, before anything was sent or charged."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class APIError(AIFaceSwapError):
    """The service answered with an error: an HTTP error status or a body whose ``code`` is not 200."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: int | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status_code}, code {self.code})"


class AuthenticationError(APIError):
    """The API key is missing, wrong or revoked. Fix the key; retrying will not help."""


class InsufficientCreditsError(APIError):
    """The account's balance cannot cover the call. Nothing was charged."""


class InvalidRequestError(APIError):
    """The service refused the request's content (a field, an input it could not fetch or read)."""


class RateLimitedError(APIError):
    """Too many calls: the request was refused before any work. Safe to retry after ``retry_after``."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """The service (or a gateway in front of it) answered 5xx. That proves nothing: the job may have been accepted
    and charged before the failure. Never retried blindly: the caller looks for the job's callback first."""

    outcome_unknown = True


class UnreadableAnswerError(APIError):
    """A 2xx whose body is not the API's JSON envelope with the expected data (HTML, empty, truncated). It does not
    prove the job was refused: the outcome is unknown."""

    outcome_unknown = True


class TransportError(AIFaceSwapError):
    """The call did not complete at the HTTP level."""


class ConnectionFailedError(TransportError):
    """No connection could be made: the request never reached the service. Safe to retry."""

    retryable = True


class ResponseLostError(TransportError):
    """The request was sent but no answer came back (read timeout, connection reset or closed).

    The service may have accepted and charged it: look for the job before submitting again.
    """

    outcome_unknown = True


def error_for_status(status_code: int, code: int | None, message: str, body: Any) -> APIError:
    """The error class that fits an HTTP status and the body's ``code``."""
    effective = code if code is not None and code != 200 else status_code
    lowered = message.lower()
    kwargs: dict[str, Any] = {"status_code": status_code, "code": code, "body": body}
    if effective in (401, 403):
        return AuthenticationError(message, **kwargs)
    if effective == 402 or "insufficient" in lowered or "not enough credits" in lowered:
        return InsufficientCreditsError(message, **kwargs)
    if effective == 429:
        return RateLimitedError(message, **kwargs)
    if effective >= 500:
        return ServerError(message, **kwargs)
    if 400 <= effective < 500:
        return InvalidRequestError(message, **kwargs)
    return APIError(message, **kwargs)
