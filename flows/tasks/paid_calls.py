"""The rules every paid call follows: a write-ahead entry in the ledger of credits before sending (flows/ledger.py),
the policy for an unknown outcome, and bounded retries of the synchronous paid calls, each attempt in the ledger.

An answer proves one of three things. Refused (no connection, 429, a 4xx): nothing happened, retrying is safe.
Accepted (the API's JSON envelope with its data): record it. Anything else (a 5xx, a body that is not the
envelope, a reset or timeout after sending, or a ledger entry found without a recorded answer): the outcome is
unknown, and the job may have been charged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import AIFaceSwapError
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.ledger import PaidSend, new_send, write_send

MAX_RESUBMISSIONS = 2
"""With ``resubmit``: at most this many sends after the first, each after a full grace without a callback."""
SYNC_UNKNOWN_RETRIES = 2
"""A synchronous paid call (extract_face, extract_base64_face) whose outcome is unknown is sent again at most this
many times: its answer is its only result, and each attempt may have been charged."""

T = TypeVar("T")


def collect_hint(job_id: str) -> str:
    return f"`faceswap-flows collect --job {job_id}` (or the store-result flow with job_id={job_id})"


class PaidAttempts(BaseModel):
    """What a synchronous paid call cost: ``charged`` credits proven by the answer, and ``possibly_charged`` by the
    attempts whose outcome stayed unknown (never hidden: logged, in the ledger and in the credits artifact)."""

    operation: str
    charged: int = 0
    possibly_charged: int = 0
    unknown_attempts: int = 0


@dataclass(frozen=True)
class LedgerScope:
    """Where a paid call is written in the ledger: the storage block, the job it serves, and why it was made."""

    storage: MediaStorage
    job_id: str
    purpose: str = "swap"


async def record_send(scope: LedgerScope | None, send: PaidSend) -> PaidSend:
    if scope is not None:
        await asyncio.to_thread(write_send, scope.storage, send)
    return send


async def call_paid_sync(
    price: int,
    call: Callable[[], Awaitable[T]],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    cost: PaidAttempts,
    retries: int = SYNC_UNKNOWN_RETRIES,
    ledger: LedgerScope | None = None,
) -> T:
    """``call`` with at most ``retries`` more attempts on an unknown outcome; each attempt is written in the
    ``ledger`` before it is sent and again with its outcome, and ``cost`` counts what was charged and what may
    have been. Refusals and other errors propagate at once (their retry is the task's business)."""
    unknown = 0
    while True:
        job_id, purpose = (ledger.job_id, ledger.purpose) if ledger else ("", "")
        send = new_send(job_id, cost.operation, price, purpose=purpose)
        await record_send(ledger, send)
        try:
            result = await call()
        except AIFaceSwapError as error:
            await record_send(ledger, send.answered("unknown" if error.outcome_unknown else "refused", note=str(error)))
            if not error.outcome_unknown:
                raise
            unknown += 1
            cost.unknown_attempts += 1
            cost.possibly_charged += price
            logger.warning(
                "%s: outcome unknown (%s): POSSIBLY CHARGED %d credits (%d possibly charged so far)%s",
                cost.operation,
                error,
                price,
                cost.possibly_charged,
                "; trying again" if unknown <= retries else "; giving up",
            )
            if unknown > retries:
                raise
            continue
        except BaseException as error:  # not an answer of the API (cancelled, a bug): what it cost is unknown
            await record_send(ledger, send.answered("unknown", note=f"{type(error).__name__}: {error}"))
            raise
        points = getattr(result, "points", None)
        told = isinstance(points, int) and points > 0  # an answer without points: the price list says
        charged = points if told else price
        await record_send(ledger, send.answered("accepted", credits=charged, estimated=not told))
        cost.charged += charged
        return result
