"""A job's submitted event is sent so that the answer proves it was recorded (POST /events, published before
the API answers), asked again on a 5xx or a broken connection with the same id, and never fails the paid job:
when the API will not take it, it goes to Prefect's buffered websocket instead."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.events import Event
from prefect.events.filters import EventFilter, EventIDFilter, EventOccurredFilter

import faceswap_flows.flows.tasks.recorded_events as recorded
from faceswap_flows.flows.tasks.recorded_events import emit_recorded

pytestmark = pytest.mark.usefixtures("prefect_api")


async def read_back(event: Event) -> list[Event]:
    """The events with this id the API has stored, waiting up to 20 s for the persister."""
    event_filter = EventFilter(id=EventIDFilter(id=[event.id]), occurred=EventOccurredFilter(since=event.occurred))
    async with get_client() as client:
        for _ in range(80):
            page = await client.read_events(filter=event_filter, limit=10)
            if page.events:
                return list(page.events)
            await asyncio.sleep(0.25)
    return []


def resource(name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"aifaceswap.task.{name}-{uuid.uuid4().hex[:8]}"}


@pytest.fixture
def no_websocket(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    handed: list[dict[str, Any]] = []
    monkeypatch.setattr(recorded, "emit_event", lambda **kwargs: handed.append(kwargs))
    monkeypatch.setattr(recorded, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    return handed


def failing_then_real(monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> list[uuid.UUID]:
    """post_events fails with ``failures`` in turn, then posts for real; returns the ids of every attempt."""
    attempts: list[uuid.UUID] = []
    real = recorded.post_events

    async def post(client: Any, events: list[Event]) -> None:
        attempts.append(events[0].id)
        if failures:
            raise failures.pop(0)
        await real(client, events)

    monkeypatch.setattr(recorded, "post_events", post)
    return attempts


def status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://api/events")
    return httpx.HTTPStatusError(f"{code}", request=request, response=httpx.Response(code, request=request))


async def test_the_event_is_recorded_over_http_with_the_runs_related_resources(no_websocket) -> None:
    @task
    async def submit_step() -> Event:
        return await emit_recorded("aifaceswap.task.submitted", resource("related"), {"task_id": "t-1"})

    @flow
    async def submitting() -> Event:
        return await submit_step()

    sent = await submitting()
    stored = await read_back(sent)
    assert len(stored) == 1 and stored[0].payload == {"task_id": "t-1"}
    roles = {related.role for related in stored[0].related}
    assert {"flow-run", "task-run", "flow"} <= roles
    assert no_websocket == [], "nothing went through the websocket"


async def test_a_5xx_or_a_reset_is_asked_again_with_the_same_id_and_recorded_once(
    no_websocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = failing_then_real(monkeypatch, [httpx.ReadError("reset"), status_error(502)])
    sent = await emit_recorded("aifaceswap.task.submitted", resource("retried"), {"n": 1})
    assert len(attempts) == 3 and set(attempts) == {sent.id}
    assert len(await read_back(sent)) == 1 and no_websocket == []


async def test_an_event_the_api_will_not_take_goes_to_the_websocket_and_never_raises(
    no_websocket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = failing_then_real(monkeypatch, [status_error(503)] * 4)
    with caplog.at_level(logging.WARNING):
        sent = await emit_recorded("aifaceswap.task.submitted", resource("handed"), {"n": 2})
    assert len(attempts) == 4, "asked again after each delay, then handed over"
    assert [handed["id"] for handed in no_websocket] == [sent.id]
    assert "handed to the events websocket" in caplog.text


async def test_a_refusal_is_not_asked_again(no_websocket, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = failing_then_real(monkeypatch, [status_error(422)])
    sent = await emit_recorded("aifaceswap.task.submitted", resource("refused"), {"n": 3})
    assert len(attempts) == 1 and [handed["id"] for handed in no_websocket] == [sent.id]
