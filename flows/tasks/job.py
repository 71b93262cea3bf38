"""What a swap flow returns, and the steps every swap shares after its submission."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.results import get_result_store
from prefect.transactions import CommitMode, atransaction
from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import AIFaceSwapError
from faceswap_flows.aifaceswap.models import SubmitRequest, validate_model
from faceswap_flows.blocks import MediaStorage, WebhookReceiver
from faceswap_flows.flows.blocks_config import Services
from faceswap_flows.flows.ledger import Bill, job_bill, settle_by_callback
from faceswap_flows.flows.options import AT_MOST_ONCE, OnUnknownOutcome
from faceswap_flows.flows.provenance.records import (
    JobFacts,
    OutputOptions,
    is_stored,
    output_parameters,
    record_key,
)
from faceswap_flows.flows.tasks.api import (
    JobFailed,
    SubmissionOutcomeUnknown,
    SubmittedJob,
    attempted_before,
    plan_job,
    submission_record_key,
    submit,
    wait_for_callback,
)
from faceswap_flows.flows.tasks.artifacts import before_after_artifact, job_credits_artifact
from faceswap_flows.flows.tasks.store import fetch_and_record
from faceswap_flows.flows.tasks.waiting import CallbackTimeout
from faceswap_flows.receiver.tokens import JobToken


class SwapOutcome(BaseModel):
    """A swap's outcome: ``stored`` (result in storage) or ``submitted`` (wait=False: a trigger stores it)."""

    operation: str
    status: Literal["stored", "submitted"]
    task_id: str
    job_id: str
    credits: int
    possibly_charged: int = 0
    sends: int = 1
    result_key: str | None
    result_uri: str | None = None
    provenance_key: str | None = None

    @classmethod
    def of(cls, job: SubmittedJob, bill: Bill | None = None) -> SwapOutcome:
        """The outcome of a job just submitted, its credits from the ledger's ``bill`` of the job (every paid send
        for it, face detection included) when there is one."""
        return cls(
            operation=job.operation,
            status="submitted",
            task_id=job.task_id,
            job_id=job.job_id,
            credits=bill.charged if bill and bill.sends else job.points,
            possibly_charged=bill.possibly_charged if bill and bill.sends else job.possibly_charged,
            sends=bill.sends if bill and bill.sends else job.sends,
            result_key=job.result_key,
        )

    def billed(self, bill: Bill) -> SwapOutcome:
        """This outcome with the credits the ledger holds for its job (unchanged when it holds nothing)."""
        if not bill.sends:
            return self
        return self.model_copy(
            update={"credits": bill.charged, "possibly_charged": bill.possibly_charged, "sends": bill.sends}
        )

    def stored_in(self, storage: MediaStorage, key: str) -> SwapOutcome:
        """This outcome once the result is stored under ``key`` (its provenance record next to it)."""
        return self.model_copy(
            update={
                "status": "stored",
                "result_key": key,
                "result_uri": storage.uri(key),
                "provenance_key": record_key(key),
            }
        )


_submit_tasks: dict[int, tuple[MediaStorage, Task[..., Any]]] = {}


def _submit_task(storage: MediaStorage) -> Task[..., Any]:
    """``submit`` recording its results in ``storage``, made once per storage block object (``with_options``
    builds a whole new task: too slow for every item of a batch)."""
    known = _submit_tasks.get(id(storage))
    if known is None or known[0] is not storage:
        if len(_submit_tasks) > 32:
            _submit_tasks.clear()
        known = _submit_tasks[id(storage)] = (storage, submit.with_options(result_storage=storage))
    return known[1]


Steps = Literal["tasks", "collect-task", "inline"]


async def submit_once(
    services: Services, job: JobToken, request: SubmitRequest, facts: JobFacts | None
) -> tuple[SubmittedJob, bool]:
    """``submit`` as a step of the caller's task run, recorded exactly where the ``submit`` task's cache records
    it (same key, same store), by a Prefect transaction committed as soon as the service accepted the job: a
    retried or restarted run finds the record and does not pay again. Returns the job and whether it was found.
    A first attempt of both the flow run and the task run does not look (a job's id includes its flow run)."""
    store = await get_result_store().aupdate_for_task(_submit_task(services.storage))
    key = submission_record_key(job)
    first_attempt = not attempted_before()
    async with atransaction(key=key, store=store, commit_mode=CommitMode.EAGER, overwrite=first_attempt) as transaction:
        if transaction.is_committed():
            record = await transaction.read()
            if record is not None:
                return record.result, True
        policy = (facts.parameters if facts else {}).get("on_unknown_outcome", AT_MOST_ONCE)
        submitted = await submit.fn(
            services.credentials,
            services.receiver,
            job,
            request,
            facts,
            storage=services.storage,
            on_unknown_outcome=policy,
        )
        transaction.stage(submitted)
    return submitted, False


def plan_swap(
    services: Services,
    operation: str,
    identity: dict[str, Any],
    *,
    kind: Literal["image", "video"] = "image",
    position: int = 0,
    wait: bool = True,
    store_by: Literal["flow", "trigger", "sweep"] | None = None,
    result_key: str | None = None,
) -> JobToken:
    """The job a swap will be: planned before its first paid call (face detection included), so every send for it
    is written in the ledger under its id. Arguments as :func:`submit_and_finish`."""
    job = plan_job(
        operation,
        identity,
        storage_block=services.storage_block,
        result_suffix=".mp4" if kind == "video" else ".png",
        position=position,
        wait=wait,
        store_by=store_by,
    )
    return job.model_copy(update={"result_key": result_key}) if result_key else job


async def bill_of(storage: MediaStorage, job_id: str) -> Bill:
    return await asyncio.to_thread(job_bill, storage, job_id)


async def submit_and_finish(
    services: Services,
    request_model: type[SubmitRequest],
    fields: dict[str, Any],
    *,
    identity: dict[str, Any],
    wait: bool,
    timeout_seconds: float,
    before_url: str,
    kind: Literal["image", "video"] = "image",
    position: int = 0,
    task_run_name: str | None = None,
    facts: JobFacts | None = None,
    output: OutputOptions | None = None,
    artifacts: bool = True,
    store_by: Literal["flow", "trigger", "sweep"] | None = None,
    steps: Steps = "tasks",
    on_unknown_outcome: OnUnknownOutcome = AT_MOST_ONCE,
    result_key: str | None = None,
    job: JobToken | None = None,
) -> SwapOutcome:
    """Plan the job (or take ``job``, planned by :func:`plan_swap` before a paid call made for it), build its
    request (``fields`` plus the job's callback URL), submit it once (the record
    lives in the shared storage block), then wait and store, or hand over to the trigger.

    ``identity`` (stable names of the inputs: storage keys, not presigned URLs) and ``position`` make the job's
    id; ``facts`` go into the submitted event and the provenance record; ``output`` says whether the result is
    labelled as synthetic (default) and watermarked; ``artifacts=False`` (batch items) leaves the per-job
    credits and before/after artifacts to the caller's own summary; ``store_by`` is passed to :func:`plan_job`.
    ``steps``: a task run each for submit, wait, fetch and record (``tasks``); submit, then wait + fetch + record
    as one ``collect-result`` task run (``collect-task``); or everything as steps of the caller's task run
    (``inline``: no task run of its own; a re-attempt finds the submission and a result already stored).
    ``on_unknown_outcome``: what the submission does when its outcome stays unknown (:mod:`flows.tasks.paid_calls`);
    it is recorded in the job's parameters, hence in its submitted event and provenance record. ``result_key``:
    where the result is stored (default: named by the job)."""
    if job is None:
        planned = {"kind": kind, "position": position, "wait": wait, "store_by": store_by, "result_key": result_key}
        job = plan_swap(services, request_model.operation, identity, **planned)  # type: ignore[arg-type]
    request = validate_model(request_model, {**fields, "webhook": services.receiver.callback_url(job)})
    job = job.model_copy(update={"credits": request.estimated_credits()})  # the token tells what a 2nd task costs
    request = request.model_copy(update={"webhook": services.receiver.callback_url(job)})
    output = output or OutputOptions()
    facts = recorded_facts(job, facts or JobFacts(), wait, output, on_unknown_outcome)
    if steps == "inline":
        submitted, found = await submit_once(services, job, request, facts)
        if found and wait and job.result_key and is_stored(services.storage, job.result_key):
            bill = await bill_of(services.storage, job.job_id)
            return SwapOutcome.of(submitted, bill).stored_in(services.storage, job.result_key)
    else:
        submitted = await _submit_task(services.storage)(
            services.credentials,
            services.receiver,
            job,
            request,
            facts,
            title=task_run_name,
            storage=services.storage,
            on_unknown_outcome=on_unknown_outcome,
        )
    if artifacts:
        await job_credits_artifact(services.storage, submitted.job_id, submitted.operation, submitted.task_id)
    return await finish(
        submitted,
        services.storage,
        services.receiver,
        wait=wait,
        timeout_seconds=timeout_seconds,
        before_url=before_url,
        kind=kind,
        facts=facts,
        output=output,
        artifacts=artifacts,
        steps=steps,
    )


def recorded_facts(
    job: JobToken, facts: JobFacts, wait: bool, output: OutputOptions, on_unknown_outcome: OnUnknownOutcome
) -> JobFacts:
    """The job's facts with the parameters its submitted event and provenance record keep; a resubmit policy is
    logged as the explicit choice it is."""
    if on_unknown_outcome != AT_MOST_ONCE:
        get_run_logger().warning(
            "on_unknown_outcome=%s: if the outcome of job %s stays unknown after the grace, it is sent again "
            "and may be charged twice (an explicit choice, kept in its provenance record)",
            on_unknown_outcome,
            job.job_id,
        )
    parameters = {
        **facts.parameters,
        "wait": wait,
        **output_parameters(output),
        "on_unknown_outcome": on_unknown_outcome,
    }
    return facts.model_copy(update={"parameters": parameters})


async def finish(
    job: SubmittedJob,
    storage: MediaStorage,
    receiver: WebhookReceiver,
    *,
    wait: bool,
    timeout_seconds: float,
    before_url: str,
    kind: Literal["image", "video"] = "image",
    facts: JobFacts | None = None,
    output: OutputOptions | None = None,
    artifacts: bool = True,
    steps: Steps = "tasks",
) -> SwapOutcome:
    """Wait for the callback and store the result (labelled, with its provenance record next to it), or hand over
    to the store-result trigger (wait=False), which does the same from the submitted event's facts."""
    output = output or OutputOptions()
    if not output.label:
        get_run_logger().warning(
            "output.label=False: the result of %s task %s will NOT be labelled as synthetic media "
            "(an explicit choice, kept in its provenance record)",
            job.operation,
            job.task_id,
        )
    outcome = SwapOutcome.of(job, await bill_of(storage, job.job_id))
    if not wait:
        return outcome
    collect_steps = (job, storage, receiver, timeout_seconds, kind, facts, output)
    if steps == "collect-task":
        key = await collect_result(*collect_steps)
    else:
        key = await _collect(*collect_steps, as_tasks=steps == "tasks")
    outcome = outcome.billed(await bill_of(storage, job.job_id))
    if artifacts:
        await before_after_artifact(
            storage, before_url, key, task_id=job.task_id, credits=outcome.credits, operation=job.operation
        )
    return outcome.stored_in(storage, key)


async def _collect(
    job: SubmittedJob,
    storage: MediaStorage,
    receiver: WebhookReceiver,
    timeout_seconds: float,
    kind: Literal["image", "video"],
    facts: JobFacts | None,
    output: OutputOptions,
    *,
    as_tasks: bool,
) -> str:
    """Wait for the job's callback, fetch its result into storage (labelled) and write its provenance record:
    three task runs (``as_tasks``), or three steps of the caller's task run."""
    wait = wait_for_callback if as_tasks else wait_for_callback.fn
    assert job.result_key is not None
    try:
        callback = await wait(job.task_id, receiver, timeout_seconds, job.sent_at, job.job_id)
    except JobFailed as failed:
        await asyncio.to_thread(settle_by_callback, storage, job.job_id, failed.task_id or job.task_id, False)
        raise
    assert callback.result_image is not None
    return await fetch_and_record(
        storage,
        task_id=callback.task_id,
        operation=job.operation,
        job_id=job.job_id,
        result_image=callback.result_image,
        result_key=job.result_key,
        kind=kind,
        output=output,
        credits=job.points,
        credits_estimated=job.points_estimated,
        facts=facts,
        as_tasks=as_tasks,
    )


def worth_another_attempt(error: BaseException) -> bool:
    """Whether running a job's steps again may succeed where this attempt failed: not when the service reported
    the job failed, its callback never came, the submission's fate is unknown, or the request itself is wrong."""
    if isinstance(error, AIFaceSwapError):
        return error.retryable
    return not isinstance(error, JobFailed | CallbackTimeout | SubmissionOutcomeUnknown)


def _worth_retrying(task: object, task_run: object, state: Any) -> bool:
    return worth_another_attempt(state.data)


@task(
    name="collect-result",
    task_run_name="collect result of {job.task_id}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_worth_retrying,
)
async def collect_result(
    job: SubmittedJob,
    storage: MediaStorage,
    receiver: WebhookReceiver,
    timeout_seconds: float,
    kind: Literal["image", "video"],
    facts: JobFacts | None,
    output: OutputOptions,
) -> str:
    """Wait, fetch and record in one task run (batch items: one task run where a single swap shows three).

    Args:
        job: The submitted job.
        storage: The MediaStorage block the media is read from and written to.
        receiver: The WebhookReceiver block the service calls back.
        timeout_seconds: How long to wait for the callback.
        kind: `image` or `video`.
        facts: The job's provenance facts, if any.
        output: Labelling, watermark and signing choices.

    Returns:
        The storage key of the stored result.

    Raises:
        CallbackTimeout: No callback within `timeout_seconds`.
        JobFailed: The service reported that the job failed.
    """
    return await _collect(job, storage, receiver, timeout_seconds, kind, facts, output, as_tasks=False)
