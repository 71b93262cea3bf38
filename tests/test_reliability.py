"""No double charges, no lost results: lost answers, flow retries after a submission, timeouts collected later,
transient errors retried visibly. The sandbox's ledger is the judge."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from faceswap_flows.blocks import AIFaceSwapCredentials, WebhookReceiver
from faceswap_flows.flows.collect import store_result
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.ledger import PaidSend, write_send
from faceswap_flows.flows.options import BlockNames, SwapOptions
from faceswap_flows.flows.tasks.api import SubmissionOutcomeUnknown
from faceswap_flows.flows.tasks.waiting import CallbackTimeout
from faceswap_flows.receiver.tokens import JobToken
from tests.media import read_image
from tests.support import SANDBOX_KEY, impatient_blocks, recorded_task_runs


def submissions(stack) -> int:
    return sum(1 for job in stack.sandbox.sandbox.runner.jobs.values() if job.key == SANDBOX_KEY)


@pytest.fixture(scope="module")
def impatient(stack) -> tuple[str, str]:
    return impatient_blocks(stack, "impatient", grace_seconds=3)


async def test_a_lost_answer_is_found_by_its_callback_not_resubmitted(stack, faults, impatient) -> None:
    faults(lose_response_rate=1.0, lose_response_seconds=4)
    spent, jobs = stack.spent(), submissions(stack)
    outcome = await faceswap(
        str(stack.files["astronaut"]),
        str(stack.files["grace"]),
        blocks=BlockNames(credentials=impatient[0], receiver=impatient[1]),
    )
    assert outcome.status == "stored" and read_image(stack.storage.read_bytes(outcome.result_key)) is not None
    assert submissions(stack) == jobs + 1 and stack.spent() == spent + 2


async def test_a_lost_answer_without_callback_fails_without_resubmitting(stack, faults, impatient) -> None:
    faults(lose_response_rate=1.0, lose_response_seconds=4, drop_webhook_rate=1.0)
    jobs = submissions(stack)
    with pytest.raises(SubmissionOutcomeUnknown, match=r"sent once and the outcome stayed unknown.*NOT sent again"):
        await faceswap(
            str(stack.files["astronaut"]),
            str(stack.files["grace"]),
            blocks=BlockNames(credentials=impatient[0], receiver=impatient[1]),
        )
    assert submissions(stack) == jobs + 1


async def test_a_flow_retry_after_the_submission_reattaches(stack, faults) -> None:
    """The first attempt times out waiting (the callback is late); the retry of the same flow run finds the
    recorded task_id instead of paying again, and stores the result."""
    faults(delay_webhook_rate=1.0, delay_webhook_seconds=2.5)
    spent, jobs = stack.spent(), submissions(stack)
    retrying = faceswap.with_options(retries=2, retry_delay_seconds=1)
    state = await retrying(
        str(stack.files["grace"]),
        str(stack.files["astronaut"]),
        options=SwapOptions(timeout_seconds=1.5),
        return_state=True,
    )
    outcome = await state.result()
    assert outcome.status == "stored"
    assert submissions(stack) == jobs + 1 and stack.spent() == spent + 2
    async with get_client() as client:
        run = (
            await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            )
        )[0]
    assert run.run_count >= 2, "the flow run was retried"


async def test_a_timed_out_wait_is_collected_later_by_task_id(stack, faults) -> None:
    faults(delay_webhook_rate=1.0, delay_webhook_seconds=2.0)
    with pytest.raises(CallbackTimeout) as timed_out:
        await faceswap(
            str(stack.files["astronaut"]), str(stack.files["grace"]), options=SwapOptions(timeout_seconds=0.5)
        )
    task_id = timed_out.value.task_id
    assert task_id in str(timed_out.value)
    stack.sandbox.wait_idle()
    collected = None
    for _ in range(20):  # the event is stored by the API a few seconds after the callback
        try:
            collected = await store_result(task_id)
            break
        except Exception as error:
            assert "no callback event" in str(error)
            import asyncio

            await asyncio.sleep(1)
    assert collected is not None and collected.status == "stored"
    assert read_image(stack.storage.read_bytes(collected.result_key)).shape == (512, 512, 3)


async def recorded_submit_run(flow_run_id):
    """The submit task run as the API records it, once its final state is recorded."""
    runs = await recorded_task_runs(flow_run_id, timeout=20.0, named=("submit",))
    found = [run for run in runs if run.name.startswith("submit")]
    assert found, "no submit task run recorded"
    return found[0]


async def test_refusals_are_retried_as_visible_task_retries(stack, faults) -> None:
    faults(rate_limit_burst=1, retry_after_seconds=0.1)
    spent = stack.spent()
    state = await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), return_state=True)
    outcome = await state.result()
    assert outcome.status == "stored" and stack.spent() == spent + 2
    submit_run = await recorded_submit_run(state.state_details.flow_run_id)
    assert submit_run.run_count == 2, "the 429 was retried once, as a Prefect retry"


async def test_a_5xx_is_an_unknown_outcome_never_resent_by_default(stack, faults, impatient) -> None:
    """A 500 proves nothing (here the sandbox refused before accepting): at most once, the flow waits for the job's
    callback for the grace, then fails naming the job id and how to collect it, and nothing is sent again."""
    faults(server_error_burst=1)
    spent, jobs = stack.spent(), submissions(stack)
    with pytest.raises(SubmissionOutcomeUnknown, match="collect --job") as unknown:
        await faceswap(
            str(stack.files["astronaut"]),
            str(stack.files["grace"]),
            blocks=BlockNames(credentials=impatient[0], receiver=impatient[1]),
        )
    assert unknown.value.job_id in str(unknown.value) and "at-most-once" in str(unknown.value)
    assert submissions(stack) == jobs and stack.spent() == spent


async def test_resubmit_policy_sends_again_after_the_grace_and_records_it(stack, faults, impatient) -> None:
    faults(server_error_burst=1)
    spent, jobs = stack.spent(), submissions(stack)
    outcome = await faceswap(
        str(stack.files["grace"]),
        str(stack.files["astronaut"]),
        options=SwapOptions(on_unknown_outcome="resubmit"),
        blocks=BlockNames(credentials=impatient[0], receiver=impatient[1]),
    )
    assert outcome.status == "stored" and read_image(stack.storage.read_bytes(outcome.result_key)) is not None
    assert submissions(stack) == jobs + 1 and stack.spent() == spent + 2
    record = json.loads(stack.storage.read_bytes(outcome.provenance_key))
    assert record["parameters"]["on_unknown_outcome"] == "resubmit"
    assert record["bill"]["sends"] == 2 and record["bill"]["possibly_charged"] == 2 and record["credits"] == 2
    assert [send["outcome"] for send in record["bill"]["paid_sends"]] == ["unknown", "accepted"]
    assert outcome.credits == 2 and outcome.possibly_charged == 2 and outcome.sends == 2


async def test_permanent_errors_fail_at_once(stack) -> None:
    from faceswap_flows.aifaceswap.errors import AuthenticationError

    await AIFaceSwapCredentials(api_key="wrong-" + uuid.uuid4().hex[:6], base_url=stack.sandbox.url).asave(
        "wrong-key", overwrite=True
    )
    state = await faceswap(
        str(stack.files["astronaut"]),
        str(stack.files["grace"]),
        blocks=BlockNames(credentials="wrong-key"),
        return_state=True,
    )
    with pytest.raises(AuthenticationError, match="invalid API key"):
        await state.result()
    assert (await recorded_submit_run(state.state_details.flow_run_id)).run_count == 1


async def test_the_global_rate_limit_spaces_api_calls(stack, prefect_api) -> None:
    """The documented command creates the limit; then calls from concurrent flows are spaced by it."""
    import os
    import subprocess
    import sys

    from faceswap_flows.flows.image import extract_faces

    name = f"aifaceswap-api-{uuid.uuid4().hex[:6]}"
    created = subprocess.run(
        [sys.executable, "-m", "prefect", "gcl", "create", name, "--limit", "1", "--slot-decay-per-second", "0.25"],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    await AIFaceSwapCredentials(api_key=SANDBOX_KEY, base_url=stack.sandbox.url, max_retries=0, rate_limit=name).asave(
        "rate-limited", overwrite=True
    )
    import asyncio

    started = len(stack.sandbox.ledger(SANDBOX_KEY)["entries"])
    await asyncio.gather(
        *(extract_faces(str(stack.files["astronaut"]), blocks=BlockNames(credentials="rate-limited")) for _ in range(3))
    )
    calls = sorted(e["at"] for e in stack.sandbox.ledger(SANDBOX_KEY)["entries"][started:])
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert len(calls) == 3
    # One call per 4 s: each gap near 4 s. Unlimited, two of the three concurrent calls come closer (1.2 s on 2 busy
    # cores; the spread as a whole does not tell, flows starting slowly under load spread their calls too).
    assert min(gaps) >= 3.0, f"calls at one per 4 s came {[round(gap, 2) for gap in gaps]} s apart"


async def test_a_synchronous_paid_call_retries_unknown_outcomes_a_bounded_number_of_times(stack, faults) -> None:
    """extract_face has no callback: on an unknown outcome it is sent again, at most twice more, and every attempt
    that may have been charged is logged and shown in the run's credits artifact."""
    import logging

    from faceswap_flows.aifaceswap.errors import ServerError
    from faceswap_flows.flows.image import extract_faces

    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Lines()
    logging.getLogger("prefect").addHandler(handler)
    faults(error_after_accept_rate=1.0)
    spent = stack.spent()
    try:
        state = await extract_faces(str(stack.files["astronaut"]), return_state=True)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    with pytest.raises(ServerError):
        await state.result()
    assert stack.spent() == spent + 6, "three attempts, each accepted and charged by the sandbox"
    possibly = [line for line in lines if "POSSIBLY CHARGED" in line]
    assert len(possibly) == 3 and "6 possibly charged so far" in possibly[-1] and "giving up" in possibly[-1]
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    (table,) = [a for a in artifacts if a.key and a.key.startswith("credits-extract-face")]
    assert "possibly charged" in str(table.data) and "6" in str(table.data)


async def test_a_ledger_entry_without_an_answer_is_an_unknown_outcome(stack, impatient) -> None:
    """Write-ahead ledger entry: a re-run that finds the entry of a send that recorded no answer (its worker died)
    does not send again; one that finds an accepted send re-attaches to its task_id."""
    import time

    from prefect import flow

    from faceswap_flows.aifaceswap.models import FaceSwapRequest, validate_model
    from faceswap_flows.flows.tasks.api import submit

    receiver = await WebhookReceiver.aload(impatient[1])
    credentials = await AIFaceSwapCredentials.aload(impatient[0])

    @flow(name="rerun-a-submission")
    async def rerun(job: JobToken, earlier: PaidSend):
        write_send(stack.storage, earlier)
        fields = {"source_image": "http://127.0.0.1:9/a.png", "face_image": "http://127.0.0.1:9/b.png"}
        request = validate_model(FaceSwapRequest, {**fields, "webhook": receiver.callback_url(job)})
        return await submit.fn(credentials, receiver, job, request, storage=stack.storage)

    jobs = submissions(stack)
    lost = JobToken(job_id=uuid.uuid4().hex, operation="faceswap")
    with pytest.raises(SubmissionOutcomeUnknown, match=lost.job_id):
        await rerun(
            lost,
            PaidSend(
                job_id=lost.job_id, send_id="faceswap-send1", operation="faceswap", credits=2, sent_at=time.time()
            ),
        )
    accepted = JobToken(job_id=uuid.uuid4().hex, operation="faceswap")
    answered = {"task_id": "t-1", "credits": 2, "outcome": "accepted", "send_id": "faceswap-send1"}
    found = await rerun(
        accepted, PaidSend(job_id=accepted.job_id, operation="faceswap", sent_at=time.time(), **answered)
    )
    assert found.task_id == "t-1" and found.points == 2
    assert submissions(stack) == jobs, "nothing was sent"


async def test_an_accepted_job_whose_outcome_stayed_unknown_is_collected_by_its_job_id(stack, faults, impatient):
    """At most once costs a job to collect by hand: its callback comes after the grace, and the job id the error
    names is enough to store the result."""
    faults(error_after_accept_rate=1.0, delay_webhook_rate=1.0, delay_webhook_seconds=5.0)
    spent, jobs = stack.spent(), submissions(stack)
    with pytest.raises(SubmissionOutcomeUnknown) as unknown:
        await faceswap(
            str(stack.files["astronaut"]),
            str(stack.files["grace"]),
            blocks=BlockNames(credentials=impatient[0], receiver=impatient[1]),
        )
    assert f"collect --job {unknown.value.job_id}" in str(unknown.value)
    assert submissions(stack) == jobs + 1 and stack.spent() == spent + 2, "accepted once, never sent again"
    stack.sandbox.wait_idle()
    collected = None
    for _ in range(20):  # the event is stored by the API a few seconds after the callback
        try:
            collected = await store_result("", job_id=unknown.value.job_id)
            break
        except Exception as error:
            assert "no callback event" in str(error)
            await asyncio.sleep(1)
    assert collected is not None and collected.status == "stored" and collected.job_id == unknown.value.job_id
    assert read_image(stack.storage.read_bytes(collected.result_key)).shape == (512, 512, 3)
