"""The rules every paid call follows: a write-ahead intent before sending, the policy for an unknown outcome, and
bounded retries of the synchronous paid calls that count every attempt that may have been charged.

An answer proves one of three things. Refused (no connection, 429, a 4xx): nothing happened, retrying is safe.
Accepted (the API's JSON envelope with its data): record it. Anything else (a 5xx, a body that is not the
envelope, a reset or timeout after sending, or an intent found without a recorded answer): the outcome is
unknown, and the job may have been charged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import AIFaceSwapError
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.receiver.tokens import JobToken

OnUnknownOutcome = Literal["at-most-once", "resubmit"]
"""What a submission does when its outcome stays unknown after the grace: ``at-most-once`` (default) fails with
SubmissionOutcomeUnknown and sends nothing more (the job may have to be collected by hand); ``resubmit`` sends it
again (a result is more likely, and the job may be charged twice)."""

AT_MOST_ONCE: OnUnknownOutcome = "at-most-once"
MAX_RESUBMISSIONS = 2
"""With ``resubmit``: at most this many sends after the first, each after a full grace without a callback."""
SYNC_UNKNOWN_RETRIES = 2
"""A synchronous paid call (extract_face, extract_base64_face) whose outcome is unknown is sent again at most this
many times: its answer is its only result, and each attempt may have been charged."""

T = TypeVar("T")


class SubmissionIntent(BaseModel):
    """Written before a paid submission is sent, and again with its ``task_id`` once accepted. A retry or re-run
    that finds one with neither a ``task_id`` nor ``refused`` knows the earlier send's outcome is unknown."""

    job_id: str
    operation: str
    flow_run_id: str | None = None
    sent_at: float
    sends: int = 1
    task_id: str | None = None
    points: int | None = None
    refused: bool = False
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE


def intent_key(job: JobToken) -> str:
    """Next to the job's submission record (``submissions/job-<id>``, the Prefect transaction's key)."""
    return f"submissions/job-{job.job_id}.intent.json"


async def write_intent(storage: MediaStorage | None, job: JobToken, intent: SubmissionIntent) -> None:
    if storage is not None:
        await asyncio.to_thread(storage.write_bytes, intent_key(job), intent.model_dump_json().encode())


async def read_intent(storage: MediaStorage | None, job: JobToken) -> SubmissionIntent | None:
    if storage is None:
        return None
    key = intent_key(job)

    def read() -> SubmissionIntent | None:
        return SubmissionIntent.model_validate_json(storage.read_bytes(key)) if storage.exists(key) else None

    return await asyncio.to_thread(read)


def new_intent(job: JobToken, policy: OnUnknownOutcome, sends: int) -> SubmissionIntent:
    return SubmissionIntent(
        job_id=job.job_id,
        operation=job.operation,
        flow_run_id=job.flow_run_id,
        sent_at=time.time(),
        sends=sends,
        on_unknown_outcome=policy,
    )


def collect_hint(job_id: str) -> str:
    return f"`faceswap-flows collect --job {job_id}` (or the store-result flow with job_id={job_id})"


class PaidAttempts(BaseModel):
    """What a synchronous paid call cost: ``charged`` credits proven by the answer, and ``possibly_charged`` by the
    attempts whose outcome stayed unknown (never hidden: logged and shown in the credits artifact)."""

    operation: str
    charged: int = 0
    possibly_charged: int = 0
    unknown_attempts: int = 0


async def call_paid_sync(
    price: int,
    call: Callable[[], Awaitable[T]],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    cost: PaidAttempts,
    retries: int = SYNC_UNKNOWN_RETRIES,
) -> T:
    """``call`` with at most ``retries`` more attempts on an unknown outcome; ``cost`` counts what was charged and
    what may have been (each attempt whose outcome stayed unknown). Refusals and other errors propagate at once
    (their retry is the task's business)."""
    unknown = 0
    while True:
        try:
            result = await call()
        except AIFaceSwapError as error:
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
        cost.charged += price
        return result
