"""One paid submission, sent at most once unless the user chose otherwise: the write-ahead entry in the ledger of
credits, the send, and the unknown-outcome path (wait for the job's callback by job id, re-attach, or apply
``on_unknown_outcome``)."""

from __future__ import annotations

import asyncio
import time

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import rate_limit
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import AIFaceSwapError
from faceswap_flows.aifaceswap.models import ApiRequest
from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.flows.exceptions import SubmissionOutcomeUnknown
from faceswap_flows.flows.ledger import POSSIBLY_CHARGED, PaidSend, job_sends, new_send, settle_by_callback
from faceswap_flows.flows.media.reachability import Reach
from faceswap_flows.flows.options import AT_MOST_ONCE, OnUnknownOutcome
from faceswap_flows.flows.tasks.paid_calls import (
    MAX_RESUBMISSIONS,
    LedgerScope,
    collect_hint,
    record_send,
)
from faceswap_flows.flows.tasks.waiting import CallbackTimeout, arrived_callback, wait_for_task_callback
from faceswap_flows.receiver.tokens import JobToken


class SubmittedJob(BaseModel):
    """A job the service accepted: its task_id, what it cost, and where its result will be stored. ``sends``: how
    many times it was sent (more than one only with ``on_unknown_outcome="resubmit"``); ``possibly_charged``: the
    credits the sends other than the accepted one may have cost."""

    job_id: str
    task_id: str
    operation: str
    points: int
    storage_block: str | None
    result_key: str | None
    flow_run_id: str | None
    points_estimated: bool = False
    sent_at: float | None = None
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE
    sends: int = 1
    unknown_outcomes: int = 0
    possibly_charged: int = 0

    @classmethod
    def of(
        cls, job: JobToken, task_id: str, points: int, *, estimated: bool = False, sent_at: float | None = None
    ) -> SubmittedJob:
        """The record of ``job`` accepted as ``task_id`` for ``points`` credits (``estimated``: from the prices),
        sent at ``sent_at`` (epoch seconds)."""
        return cls(
            sent_at=sent_at,
            job_id=job.job_id,
            task_id=task_id,
            operation=job.operation,
            points=points,
            storage_block=job.storage_block,
            result_key=job.result_key,
            flow_run_id=job.flow_run_id,
            points_estimated=estimated,
        )


LIMIT_RECHECK_SECONDS = 60.0
_limit_exists: dict[str, tuple[bool, float]] = {}


async def _rate_limit_exists(name: str) -> bool:
    """Whether the global limit exists (asked again after a minute), so a missing one costs no call or warning."""
    known = _limit_exists.get(name)
    if known is None or time.monotonic() - known[1] > LIMIT_RECHECK_SECONDS:
        async with get_client() as client:
            try:
                await client.read_global_concurrency_limit_by_name(name)
                exists = True
            except ObjectNotFound:
                exists = False
        known = _limit_exists[name] = (exists, time.monotonic())
    return known[0]


async def take_api_slot(credentials: AIFaceSwapCredentials) -> None:
    """Wait for a slot of the global rate limit guarding the API (no such limit: no wait)."""
    if credentials.rate_limit and await _rate_limit_exists(credentials.rate_limit):
        await rate_limit(credentials.rate_limit, strict=False)


def attempted_before() -> bool:
    """Whether this submission may have been attempted already: a retry of the task, or a flow run that runs
    again (a job's id includes its flow run, so a first attempt of both cannot have an earlier submission)."""
    flow_context, task_context = FlowRunContext.get(), TaskRunContext.get()
    if flow_context is None or flow_context.flow_run is None or task_context is None:
        return True
    return flow_context.flow_run.run_count > 1 or task_context.task_run.run_count > 1


MIN_RECHECK_SECONDS = 5.0


class Submission:
    """Sends one job under the rules of :mod:`flows.tasks.paid_calls`; :meth:`run` returns the accepted job."""

    def __init__(
        self,
        credentials: AIFaceSwapCredentials,
        receiver: WebhookReceiver,
        job: JobToken,
        request: ApiRequest,
        storage: MediaStorage | None,
        policy: OnUnknownOutcome,
    ) -> None:
        self.credentials, self.receiver, self.job, self.request = credentials, receiver, job, request
        self.storage, self.policy = storage, policy
        self.ledger = LedgerScope(storage, job.job_id) if storage is not None else None
        self.grace = receiver.lost_answer_grace_seconds
        self.sends = self.unknown = 0
        self.logger = get_run_logger()

    async def run(self) -> SubmittedJob:
        if attempted_before():
            earlier = await self._earlier()
            if earlier is not None:
                return earlier
        while True:
            self.sends += 1
            send = new_send(self.job.job_id, self.job.operation, self.request.estimated_credits(), number=self.sends)
            try:
                return await self._send(send)
            except AIFaceSwapError as error:
                if not error.outcome_unknown:
                    await record_send(self.ledger, send.answered("refused", note=str(error)))
                    raise
                await record_send(self.ledger, send.answered("unknown", note=str(error)))
                self.unknown += 1
                self.logger.warning(
                    "%s; the outcome is unknown: waiting up to %.0fs for a callback of job %s",
                    error,
                    self.grace,
                    self.job.job_id,
                )
                found = await self._await_job(self.grace)
                if found is not None:
                    return found
                self._after_grace(str(error))

    async def _send(self, send: PaidSend) -> SubmittedJob:
        Reach.for_credentials(self.credentials).check_request(self.request)  # the last guard before paying
        await take_api_slot(self.credentials)
        await record_send(self.ledger, send)  # write-ahead: a re-run finding it knows it was sent
        async with self.credentials.get_client(pooled=True) as client:
            data = await client.send(self.request)
        accepted = send.answered("accepted", task_id=data.task_id, credits=data.points, estimated=False)
        await record_send(self.ledger, accepted)
        return self._submitted(data.task_id, data.points, estimated=False, sent_at=send.sent_at)

    async def _earlier(self) -> SubmittedJob | None:
        """What an earlier attempt left: a callback of the job, an accepted send in the ledger, or a send without
        an answer (outcome unknown: wait for the callback for what remains of the grace, then apply the policy)."""
        secret = self.receiver.signing_secret.get_secret_value()
        arrived = await arrived_callback(self.receiver.public_url, secret, self.job.job_id, by_job=True)
        if arrived is not None:
            self.logger.info("job %s already ran as task %s: not sending it again", self.job.job_id, arrived["task_id"])
            return await self._found(arrived["task_id"], bool(arrived.get("success", True)))
        earlier = await self._earlier_sends()
        if not earlier:
            return None
        self.sends = len(earlier)
        accepted = next((send for send in earlier if send.outcome == "accepted" and send.task_id), None)
        if accepted is not None:
            assert accepted.task_id is not None
            self.logger.info("job %s was accepted as task %s by an earlier attempt", self.job.job_id, accepted.task_id)
            estimated = accepted.estimated
            return self._submitted(accepted.task_id, accepted.credits, estimated=estimated, sent_at=accepted.sent_at)
        last = earlier[-1]
        if last.outcome not in POSSIBLY_CHARGED:
            return None
        self.unknown += 1
        remaining = max(self.grace - (time.time() - last.sent_at), min(self.grace, MIN_RECHECK_SECONDS))
        self.logger.warning(
            "job %s was sent by an earlier attempt that recorded no answer (its worker may have died): the outcome "
            "is unknown; waiting up to %.0fs for its callback",
            self.job.job_id,
            remaining,
        )
        found = await self._await_job(remaining)
        if found is None:
            self._after_grace("an earlier attempt sent it and recorded no answer")
        return found

    async def _earlier_sends(self) -> list[PaidSend]:
        """The job's own submissions the ledger holds (not the paid calls that were a means to it)."""
        if self.storage is None:
            return []
        sends = await asyncio.to_thread(job_sends, self.storage, self.job.job_id)
        return [send for send in sends if send.operation == self.job.operation]

    async def _await_job(self, timeout: float) -> SubmittedJob | None:
        try:
            callback = await wait_for_task_callback(
                self.job.job_id,
                timeout,
                receiver_url=self.receiver.public_url,
                secret=self.receiver.signing_secret.get_secret_value(),
                by_job=True,
            )
        except CallbackTimeout:
            return None
        self.logger.info(
            "job %s was accepted after all: task %s (found by its callback)", self.job.job_id, callback.task_id
        )
        return await self._found(callback.task_id, callback.succeeded)

    async def _found(self, task_id: str, success: bool) -> SubmittedJob:
        """The job as its callback shows it: the send it answers is settled in the ledger."""
        points = self.request.estimated_credits()
        if self.storage is not None:
            bill = await asyncio.to_thread(settle_by_callback, self.storage, self.job.job_id, task_id, success)
            self.sends = max(self.sends, bill.sends)
        return self._submitted(task_id, points, estimated=True)

    def _after_grace(self, why: str) -> None:
        """Resubmit (returns) when the user chose so and sends remain; else SubmissionOutcomeUnknown."""
        job, price = self.job, self.request.estimated_credits()
        if self.policy == "resubmit" and self.sends <= MAX_RESUBMISSIONS:
            self.logger.warning(
                "job %s: no callback %.0fs after an unknown outcome; on_unknown_outcome=resubmit: sending it AGAIN "
                "(send %d; %d credits may be charged twice)",
                job.job_id,
                self.grace,
                self.sends + 1,
                price,
            )
            return
        sent = "once" if self.sends == 1 else f"{self.sends} times"
        stop = (
            "it was NOT sent again"
            if self.policy == AT_MOST_ONCE
            else f"no more sends (at most {MAX_RESUBMISSIONS + 1} with resubmit)"
        )
        raise SubmissionOutcomeUnknown(
            f"job {job.job_id}: up to {self.sends * price} credits possibly charged; collect its result with "
            f"{collect_hint(job.job_id)}. The {job.operation} job was sent {sent} and the outcome stayed unknown "
            f"({why}); no callback came in {self.grace:.0f}s; on_unknown_outcome={self.policy}: {stop}. If the "
            "service accepted it, its callback will reach the receiver.",
            job.job_id,
        )

    def _submitted(self, task_id: str, points: int, *, estimated: bool, sent_at: float | None = None) -> SubmittedJob:
        submitted = SubmittedJob.of(self.job, task_id, points, estimated=estimated, sent_at=sent_at)
        extra_sends = max(self.sends - 1, 0)
        return submitted.model_copy(
            update={
                "on_unknown_outcome": self.policy,
                "sends": max(self.sends, 1),
                "unknown_outcomes": self.unknown,
                "possibly_charged": extra_sends * self.request.estimated_credits(),
            }
        )
