"""The store-results sweep: one run stores every finished store_by=sweep job (labelled, with its provenance
record), skips what is stored already, leaves other jobs alone, reports failures without stopping; and the
store-results trigger of prefect.yaml starts such a run."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from PIL import Image
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.events import Event
from prefect.variables import Variable

import faceswap_flows.flows.sweep.chunks as sweep_chunks
import faceswap_flows.flows.sweep.flow as sweep_module
import faceswap_flows.flows.sweep.jobs as sweep_jobs_module
from faceswap_flows.aifaceswap.models import FaceSwapRequest, TaskCallback, validate_model
from faceswap_flows.flows.blocks_config import DEFAULT_RECEIVER, load_services
from faceswap_flows.flows.collect import store_result
from faceswap_flows.flows.provenance.records import RECORD_SUFFIX, OutputOptions, job_facts, output_parameters
from faceswap_flows.flows.sweep.flow import JobSource, ResultsNotStored, StoreResultsReport, jobs_in, store_results
from faceswap_flows.flows.sweep.live import LiveCallbacks
from faceswap_flows.flows.sweep.mark import SweptMark, SweptSpan
from faceswap_flows.flows.tasks.api import SubmittedJob, plan_job, submit
from faceswap_flows.flows.tasks.media import upload
from faceswap_flows.flows.tasks.waiting import stored_event
from faceswap_flows.receiver.events import SUCCEEDED, post_events, task_resource_id
from faceswap_flows.receiver.tokens import JobToken
from tests.support import served_deployments, sweep_now
from tests.test_triggers import wait_for_deployment

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = [OutputOptions(), OutputOptions(watermark="AI-GENERATED"), OutputOptions(label=False), OutputOptions()]


@flow(name="submit-for-sweep")
async def submit_jobs(
    source_image: str, face_image: str, outputs: list[OutputOptions], store_by: Literal["trigger", "sweep"]
) -> list[Any]:
    """Submit one faceswap job per output choice, each stored later by ``store_by`` (no waiting here)."""
    services = await load_services()
    source, face = await asyncio.gather(
        upload(services.storage, source_image, "source_image"), upload(services.storage, face_image, "face_image")
    )
    submitted = []
    for position, output in enumerate(outputs):
        job = plan_job(
            "faceswap",
            {"source_image": source.key, "face_image": face.key},
            storage_block=services.storage_block,
            result_suffix=".png",
            position=position,
            wait=False,
            store_by=store_by,
        )
        request = validate_model(
            FaceSwapRequest,
            {"source_image": source.url, "face_image": face.url, "webhook": services.receiver.callback_url(job)},
        )
        facts = job_facts({"source_image": source, "face_image": face}, wait=False, **output_parameters(output))
        task = submit.with_options(result_storage=services.storage)
        submitted.append(await task(services.credentials, services.receiver, job, request, facts))
    return submitted


async def submit_and_settle(
    stack, outputs: list[OutputOptions], store_by: Literal["trigger", "sweep"]
) -> tuple[list[SubmittedJob], str]:
    """Submit, then wait until every job's success event can be read back from the API."""
    state = await submit_jobs(
        str(stack.files["astronaut"]), str(stack.files["grace"]), outputs, store_by, return_state=True
    )
    jobs: list[SubmittedJob] = await state.result()
    await asyncio.to_thread(stack.sandbox.wait_idle)
    for _ in range(60):
        found = [await stored_event(job.task_id) for job in jobs]
        if all(found):
            break
        await asyncio.sleep(0.5)
    assert all(found), "the callback events did not reach the API"
    return jobs, str(state.state_details.flow_run_id)


@pytest.fixture(scope="module")
async def submitted(stack) -> dict[str, Any]:
    started = datetime.now(UTC) - timedelta(seconds=2)
    sweep, flow_run_id = await submit_and_settle(stack, OUTPUTS, "sweep")
    by_trigger, _ = await submit_and_settle(stack, [OutputOptions()], "trigger")
    return {"since": started, "sweep": sweep, "flow_run_id": flow_run_id, "trigger": by_trigger[0]}


def xmp(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        found = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp") or ""
    return found.decode() if isinstance(found, bytes) else found


async def test_the_sweep_reads_every_page_of_sweep_events(submitted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_jobs_module, "PAGE_SIZE", 2)
    source = JobSource(submitted["since"], datetime.now(UTC) + timedelta(minutes=1))
    jobs, unusable = jobs_in(await source.from_stored_events())
    task_ids = [job.task_id for job in jobs]
    assert {job.task_id for job in submitted["sweep"]} <= set(task_ids) and not unusable
    assert submitted["trigger"].task_id not in task_ids, "only store-by=sweep events are swept"
    assert len(task_ids) == len(set(task_ids))


async def test_one_run_stores_every_sweep_job_but_skips_stored_ones(stack, submitted) -> None:
    storage = stack.storage
    first, *others = submitted["sweep"]
    stored_first = await store_result(first.task_id)  # already stored when the sweep comes
    first_record = storage.read_bytes(stored_first.provenance_key)

    report: StoreResultsReport = await sweep_now(submitted["since"])

    assert {job.result_key for job in others} <= set(report.stored_keys)
    assert first.result_key not in report.stored_keys and report.already_stored >= 1 and report.failed == 0
    assert storage.read_bytes(stored_first.provenance_key) == first_record, "a stored job is left alone"
    for job, output in zip(submitted["sweep"], OUTPUTS, strict=True):
        result = storage.read_bytes(job.result_key)
        record = json.loads(storage.read_bytes(job.result_key + RECORD_SUFFIX))
        assert record["task_id"] == job.task_id and record["job_id"] == job.job_id
        assert record["operation"] == "faceswap" and record["credits"] == 2
        assert record["output"]["sha256"] == hashlib.sha256(result).hexdigest()
        assert record["submitted_by"]["flow_run"]["id"] == submitted["flow_run_id"]
        assert {item["field"] for item in record["inputs"]} == {"source_image", "face_image"}
        assert record["output"]["labelled"] is output.label
        assert (f'fsf:TaskId="{job.task_id}"' in xmp(result)) is output.label
        recorded = record["parameters"]["output"]  # named as the options, from the submitted event's facts
        assert recorded["watermark"] == output.watermark and recorded["label"] is output.label
        assert (record["output"]["watermark"] or {}).get("text") == output.watermark
    assert not storage.exists(submitted["trigger"].result_key), "a store-by=trigger job is not the sweep's"


async def test_a_second_run_stores_nothing_new(stack, submitted) -> None:
    records = {job.task_id: stack.storage.read_bytes(job.result_key + RECORD_SUFFIX) for job in submitted["sweep"]}
    report: StoreResultsReport = await sweep_now(submitted["since"])
    assert report.stored_keys == [] and report.already_stored >= len(records) and report.failed == 0
    for job in submitted["sweep"]:
        assert stack.storage.read_bytes(job.result_key + RECORD_SUFFIX) == records[job.task_id]
    assert not stack.storage.exists(submitted["trigger"].result_key)


def sweep_event(task_id: str, result_image: str, result_key: str, occurred: datetime) -> Event:
    return Event(
        occurred=occurred,
        event=SUCCEEDED,
        resource={
            "prefect.resource.id": task_resource_id(task_id),
            "aifaceswap.operation": "faceswap",
            "aifaceswap.job-id": f"job-{task_id}",
            "aifaceswap.store-by": "sweep",
        },
        payload={
            "task_id": task_id,
            "success": 1,
            "result_image": result_image,
            "job_id": f"job-{task_id}",
            "operation": "faceswap",
            "storage_block": None,
            "result_key": result_key,
        },
    )


async def posted(events: list[Event]) -> None:
    """Post the sweep events, then wait until the API gives them all back to a sweep's read."""
    since = min(event.occurred for event in events) - timedelta(seconds=1)
    until = max(event.occurred for event in events) + timedelta(seconds=1)
    async with get_client() as client:
        await post_events(client, events)
    for _ in range(60):
        if len(jobs_in(await JobSource(since, until).from_stored_events())[0]) >= len(events):
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the posted sweep events were not readable in 30 s")


async def test_one_failure_is_reported_and_the_others_are_stored(stack, submitted) -> None:
    """Two jobs finished long ago: one result URL is gone (404), the other is fine."""
    occurred = datetime.now(UTC) - timedelta(hours=2)
    good, bad = f"sweep-ok-{uuid.uuid4().hex[:8]}", f"sweep-gone-{uuid.uuid4().hex[:8]}"
    real_result = (await stored_event(submitted["sweep"][0].task_id))["result_image"]
    gone = real_result.rsplit("/", 1)[0] + "/no-such-result.png"
    events = [
        sweep_event(bad, gone, f"results/test/{bad}.png", occurred),
        sweep_event(good, real_result, f"results/test/{good}.png", occurred + timedelta(seconds=1)),
    ]
    await posted(events)
    with pytest.raises(ResultsNotStored) as raised:
        await store_results(
            since=occurred - timedelta(seconds=1), lookback_seconds=0, window_seconds=0, settle_seconds=0, attempts=1
        )
    report = raised.value.report
    assert report.failed_task_ids == [bad] and bad in str(raised.value)
    assert f"results/test/{good}.png" in report.stored_keys and stack.storage.exists(f"results/test/{good}.png")
    record = json.loads(stack.storage.read_bytes(f"results/test/{good}.png{RECORD_SUFFIX}"))
    assert record["task_id"] == good and record["submitted_by"] is None, "no submitted event: what is known"
    assert not stack.storage.exists(f"results/test/{bad}.png")


async def test_a_run_ends_only_once_every_chunk_it_started_is_stored(stack, submitted) -> None:
    """Chunks are stored while the sweeps go on; a run whose window has passed at once (no pause between sweeps)
    still waits for them all before it reports and ends."""
    occurred = datetime.now(UTC) - timedelta(hours=3)
    real_result = (await stored_event(submitted["sweep"][0].task_id))["result_image"]
    names = [f"sweep-chunked-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    keys = [f"results/test/{name}.png" for name in names]
    events = [
        sweep_event(name, real_result, key, occurred + timedelta(seconds=i))
        for i, (name, key) in enumerate(zip(names, keys, strict=True))
    ]
    await posted(events)

    try:
        report = await store_results(
            since=occurred - timedelta(seconds=1),
            lookback_seconds=0,
            window_seconds=0,
            settle_seconds=0,
            poll_seconds=0,
            chunk_size=2,
            attempts=1,
        )
    except ResultsNotStored as raised:  # the window runs to now: the earlier tests' jobs are in it, one is gone
        report = raised.report

    assert set(keys) <= set(report.stored_keys) and report.stored == len(report.stored_keys)
    assert not set(names) & set(report.failed_task_ids) and report.done == report.found
    for name, key in zip(names, keys, strict=True):
        assert json.loads(stack.storage.read_bytes(key + RECORD_SUFFIX))["task_id"] == name


async def test_a_chunk_that_fails_as_a_whole_reports_each_of_its_jobs(
    stack, submitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks run beside the sweeps: one that raises (its submitted events unreadable) is not lost, its jobs are
    reported as not stored and the run fails naming them."""
    occurred = datetime.now(UTC) - timedelta(hours=4)
    real_result = (await stored_event(submitted["sweep"][0].task_id))["result_image"]
    names = [f"sweep-unread-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    events = [
        sweep_event(name, real_result, f"results/test/{name}.png", occurred + timedelta(seconds=i))
        for i, name in enumerate(names)
    ]
    await posted(events)

    async def unreadable(task_ids: list[str]) -> dict[str, Any]:
        raise RuntimeError("the events API is down")

    monkeypatch.setattr(sweep_chunks, "bulk_submitted_facts", unreadable)
    with pytest.raises(ResultsNotStored) as raised:
        await store_results(
            since=occurred - timedelta(seconds=1),
            lookback_seconds=0,
            window_seconds=0,
            settle_seconds=0,
            poll_seconds=0,
            receiver_block=None,
        )
    report = raised.value.report
    assert set(names) <= set(report.failed_task_ids) and report.done == report.found
    assert all(not stack.storage.exists(f"results/test/{name}.png") for name in names)


@pytest.fixture
def served_store_results(stack, prefect_api: str, tmp_path: Path):
    log = tmp_path / "serve.log"
    try:
        with served_deployments(["store-results"], prefect_api, log) as process:
            yield process, log
    finally:

        async def forget_automation() -> None:  # it outlives `serve`: no more runs nobody serves
            async with get_client() as client:
                for automation in await client.read_automations_by_name("store-results__automation_1"):
                    await client.delete_automation(automation.id)

        asyncio.run(forget_automation())


async def wait_until_stored(stack, jobs: list[SubmittedJob], deployment_id: str, served: tuple[Any, Path]) -> None:
    process, log = served
    deadline = time.monotonic() + 45
    while not all(stack.storage.exists(job.result_key + RECORD_SUFFIX) for job in jobs):
        assert process.poll() is None, log.read_text()[-3000:]
        if time.monotonic() > deadline:
            runs = await deployment_runs(deployment_id)
            states = [(run.name, run.state_name, run.state and run.state.message, run.parameters) for run in runs]
            raise AssertionError(f"the trigger did not store the results: runs {states}\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.5)


async def deployment_runs(deployment_id: str) -> list[Any]:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id={"any_": [deployment_id]}))


@pytest.mark.slow
async def test_the_trigger_starts_one_sweep_for_a_window_of_jobs(stack, submitted, served_store_results) -> None:
    """Jobs finishing within the trigger's 30 s (ignored by the trigger after the first) share one run."""
    deployment_id = await wait_for_deployment("store-results")
    first, _ = await submit_and_settle(stack, [OutputOptions(), OutputOptions()], "sweep")
    await wait_until_stored(stack, first, deployment_id, served_store_results)
    later, _ = await submit_and_settle(stack, [OutputOptions(), OutputOptions()], "sweep")
    await wait_until_stored(stack, later, deployment_id, served_store_results)
    runs = await deployment_runs(deployment_id)
    assert len(runs) == 1, "the events of one window start one run"
    assert runs[0].parameters["since"] and runs[0].parameters["window_seconds"] == 30
    for job in first + later:
        record = json.loads(stack.storage.read_bytes(job.result_key + RECORD_SUFFIX))
        assert record["flow_run"]["id"] == str(runs[0].id) and record["deployment"]["name"] == "store-results"
    deadline = time.monotonic() + 45
    while not (run := (await deployment_runs(deployment_id))[0]).state.is_final():
        assert time.monotonic() < deadline, f"the sweep did not end: {run.state}"
        await asyncio.sleep(1)
    assert run.state.is_completed(), run.state


async def test_a_job_only_the_receivers_inbox_knows_is_stored(stack, submitted) -> None:
    """Under load the API stores events late (or drops them): the sweep also reads the receiver's inbox."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    task_id = f"sweep-inbox-{uuid.uuid4().hex[:8]}"
    job = JobToken(
        job_id=f"job-{task_id}", operation="faceswap", result_key=f"results/test/{task_id}.png", store_by="sweep"
    )
    real_result = (await stored_event(submitted["sweep"][0].task_id))["result_image"]
    callback = TaskCallback(success=1, type=1, task_id=task_id, result_image=real_result)
    stack.receiver.inbox.record(job, callback)
    stack.receiver.inbox.mark_emitted([task_id])  # so no event is ever emitted for it
    report: StoreResultsReport = await sweep_now(since)
    assert report.stored_keys == [f"results/test/{task_id}.png"] and report.failed == 0
    assert await stored_event(task_id) is None
    record = json.loads(stack.storage.read_bytes(f"results/test/{task_id}.png{RECORD_SUFFIX}"))
    assert record["task_id"] == task_id and record["output"]["labelled"] is True


async def sweep_while_posting(
    stack, result_image: str, wait_seconds: float = 3, **sweep_options: Any
) -> tuple[float, StoreResultsReport, str]:
    """A sweep run started now; ``wait_seconds`` in, a new sweep job's event is posted. Returns the seconds from the
    post to the job's provenance record written (or to the run's end), the run's report and the job's result key."""
    task_id = f"sweep-posted-{uuid.uuid4().hex[:8]}"
    key = f"results/test/{task_id}.png"
    run = asyncio.create_task(sweep_now(datetime.now(UTC) - timedelta(seconds=1), **sweep_options))
    await asyncio.sleep(wait_seconds)
    async with get_client() as client:
        await post_events(client, [sweep_event(task_id, result_image, key, datetime.now(UTC))])
    return await seconds_until_stored(stack, key, run), await run, key


async def seconds_until_stored(stack, key: str, run: asyncio.Task[Any], timeout: float = 90) -> float:
    """Seconds from now until ``key``'s provenance record is written, or ``run`` ends first."""
    start = time.monotonic()
    for _ in range(int(timeout * 10)):
        if stack.storage.exists(key + RECORD_SUFFIX) or run.done():
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_a_job_another_receiver_took_is_stored_while_the_run_goes_on_without_the_event_stream(
    stack, submitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several receivers, this one's inbox lacks the jobs the others took, and the live event stream may be cut
    (an API server restarting): the sweep then reads the stored events on from the newest it saw while it runs, and
    stores those jobs then, not once its window has ended."""

    async def never_connected(live: LiveCallbacks) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(LiveCallbacks, "_listen", never_connected)
    real_result = (await stored_event(submitted["sweep"][0].task_id))["result_image"]
    stored_after, report, key = await sweep_while_posting(stack, real_result, settle_seconds=25)
    assert key in report.stored_keys and report.failed == 0
    assert stored_after < 12, f"stored {stored_after:.1f} s after its event: at the run's end, not while it ran"


async def test_each_sweep_reads_the_inbox_on_from_the_last_and_the_stored_events_before_ending(
    stack, submitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read whole at every sweep, the stored events (50 a page) cost the Prefect server most while a flood of
    callbacks arrives: sweeps read the inbox from where they left off; the stored events are read once, at the end."""
    inbox_reads: list[tuple[float, list[dict[str, Any]]]] = []
    read_inbox = sweep_jobs_module.received_callbacks

    async def spied_inbox(url: str, secret: str, since: float, **options: Any) -> list[dict[str, Any]]:
        found = await read_inbox(url, secret, since, **options)
        inbox_reads.append((since, found))
        return found

    event_reads = 0
    read_events = JobSource.from_stored_events

    async def counted_events(self: JobSource) -> list[dict[str, Any]]:
        nonlocal event_reads
        event_reads += 1
        return await read_events(self)

    monkeypatch.setattr(sweep_jobs_module, "received_callbacks", spied_inbox)
    monkeypatch.setattr(JobSource, "from_stored_events", counted_events)
    task_id = f"sweep-late-{uuid.uuid4().hex[:8]}"
    real_result = (await stored_event(submitted["sweep"][0].task_id))["result_image"]

    async def arrives_during_the_run() -> None:
        await asyncio.sleep(1.0)
        job = JobToken(
            job_id=f"job-{task_id}", operation="faceswap", result_key=f"results/test/{task_id}.png", store_by="sweep"
        )
        stack.receiver.inbox.record(job, TaskCallback(success=1, type=1, task_id=task_id, result_image=real_result))
        stack.receiver.inbox.mark_emitted([task_id])

    arrival = asyncio.create_task(arrives_during_the_run())
    report: StoreResultsReport = await sweep_now(submitted["since"], settle_seconds=3)
    await arrival

    assert f"results/test/{task_id}.png" in report.stored_keys and report.failed == 0
    assert event_reads == 1, "the stored events are read once, before the run ends"
    assert len(inbox_reads) >= 3 and inbox_reads[0][0] == submitted["since"].timestamp()
    for (since, found), (next_since, _) in itertools.pairwise(inbox_reads):
        assert next_since == max([entry["received_at"] for entry in found], default=since)
    later = [found for _, found in inbox_reads[1:]]
    assert any(entry["task_id"] == task_id for found in later for entry in found)
    assert all(len(found) <= 2 for found in later), "a later read: the entry it starts at, then what is new"


class CountedReads:
    """Counts the sweep's reads of the inbox and of the stored events, and where each inbox read starts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inbox_since: list[float] = []
        self.event_reads = 0
        read_inbox, read_events = sweep_jobs_module.received_callbacks, JobSource.from_stored_events

        async def inbox(url: str, secret: str, since: float, **options: Any) -> list[dict[str, Any]]:
            self.inbox_since.append(since)
            return await read_inbox(url, secret, since, **options)

        async def events(source: JobSource) -> list[dict[str, Any]]:
            self.event_reads += 1
            return await read_events(source)

        monkeypatch.setattr(sweep_jobs_module, "received_callbacks", inbox)
        monkeypatch.setattr(JobSource, "from_stored_events", events)


async def test_a_triggered_run_whose_window_earlier_runs_swept_ends_without_reading(
    stack, submitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trigger fires many runs for one burst of late events: those whose window is swept end at once."""
    monkeypatch.setattr(sweep_module, "MARK_MARGIN_SECONDS", 0)
    complete: StoreResultsReport = await sweep_now(submitted["since"])
    assert complete.failed == 0 and complete.already_swept is None
    swept = await SweptMark(DEFAULT_RECEIVER).read()
    assert (
        swept is not None
        and swept.start <= submitted["since"]
        and swept.end >= datetime.now(UTC) - timedelta(seconds=30)
    )
    reads = CountedReads(monkeypatch)
    inside = submitted["since"] + timedelta(seconds=1)
    skipped: StoreResultsReport = await sweep_now(inside, incremental=True)
    assert skipped.already_swept == swept and skipped.found == 0 and skipped.sweeps == 0
    assert reads.inbox_since == [] and reads.event_reads == 0, "nothing is read for a swept window"

    catch_up: StoreResultsReport = await sweep_now(inside)  # not incremental: a catch-up run reads everything
    assert catch_up.found >= len(submitted["sweep"]) - 1 and catch_up.already_swept is None
    assert reads.inbox_since[0] == inside.timestamp() and reads.event_reads == 1


async def test_a_triggered_run_reads_on_from_where_the_swept_span_ends(
    stack, submitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep_module, "MARK_MARGIN_SECONDS", 0)
    mark = SweptMark(DEFAULT_RECEIVER)
    end = submitted["since"] + timedelta(seconds=1)
    await Variable.aset(
        mark.variable,
        SweptSpan(start=submitted["since"] - timedelta(hours=1), end=end).model_dump(mode="json"),
        overwrite=True,
    )
    reads = CountedReads(monkeypatch)
    report: StoreResultsReport = await sweep_now(
        submitted["since"], window_seconds=5, settle_seconds=0, incremental=True
    )
    assert report.already_swept is None and reads.inbox_since[0] == end.timestamp()
    joined = await mark.read()
    assert joined is not None and joined.start == submitted["since"] - timedelta(hours=1) and joined.end > end


async def test_a_run_that_did_not_store_everything_leaves_the_mark_alone(stack, submitted) -> None:
    mark = SweptMark(DEFAULT_RECEIVER)
    before = await mark.read()
    occurred = datetime.now(UTC) - timedelta(hours=3)
    real_result = (await stored_event(submitted["sweep"][0].task_id))["result_image"]
    gone = real_result.rsplit("/", 1)[0] + "/no-such-result.png"
    task_id = f"sweep-gone-{uuid.uuid4().hex[:8]}"
    async with get_client() as client:
        await post_events(client, [sweep_event(task_id, gone, f"results/test/{task_id}.png", occurred)])
    for _ in range(60):
        jobs, _ = jobs_in(await JobSource(occurred, occurred + timedelta(seconds=1)).from_stored_events())
        if jobs:
            break
        await asyncio.sleep(0.5)
    with pytest.raises(ResultsNotStored):
        await sweep_now(occurred - timedelta(seconds=1), attempts=1)
    assert await mark.read() == before


async def test_the_swept_span_ends_a_margin_before_the_last_sweep(stack, submitted) -> None:
    """Another receiver's job whose event the API stores late is still read by the next incremental run."""
    mark = SweptMark(DEFAULT_RECEIVER)
    await Variable.aunset(mark.variable)
    started = datetime.now(UTC)
    await sweep_now(started - timedelta(seconds=120))
    swept = await mark.read()
    margin = timedelta(seconds=sweep_module.MARK_MARGIN_SECONDS)
    assert swept is not None and swept.start == started - timedelta(seconds=120)
    assert started - margin - timedelta(seconds=1) <= swept.end <= datetime.now(UTC) - margin
