"""The sweep's reading of stored events when the API fails a page under load (the failure a saturated PostgreSQL
gave a store-results run in the scale drill: a 500 on an events page): the page is asked again, the run goes on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prefect.client.schemas.events import EventPage
from prefect.events.schemas.events import ReceivedEvent

from faceswap_flows.flows.sweep import jobs as sweep_jobs
from faceswap_flows.flows.sweep.jobs import read_all_events, sweep_filter


def event(i: int) -> ReceivedEvent:
    return ReceivedEvent(
        id=uuid4(),
        occurred=datetime.now(UTC),
        received=datetime.now(UTC),
        event="aifaceswap.task.succeeded",
        resource={"prefect.resource.id": f"aifaceswap.task.{i}"},
        payload={"task_id": str(i)},
    )


def failure(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/api/events/filter/next")
    return httpx.HTTPStatusError(f"{status}", request=request, response=httpx.Response(status, request=request))


class FlakyEventsApi:
    """Three pages of events; the reads listed in ``failures`` (by call number) fail with the given error first."""

    def __init__(self, failures: dict[int, Exception]) -> None:
        self.pages = [[event(i) for i in range(start, start + 2)] for start in (0, 2, 4)]
        self.failures, self.calls = failures, 0

    def _page(self, index: int) -> EventPage:
        self.calls += 1
        if self.calls in self.failures:
            raise self.failures[self.calls]
        following = f"http://127.0.0.1/api/events/filter/next?page={index + 1}" if index + 1 < len(self.pages) else None
        return EventPage(events=self.pages[index], total=6, next_page=following)

    async def read_events(self, filter: Any, limit: int) -> EventPage:
        return self._page(0)

    async def read_events_page(self, url: str) -> EventPage:
        return self._page(int(url.rsplit("=", 1)[1]))


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_jobs, "PAGE_RETRY_DELAYS", (0.0, 0.0, 0.0))


async def test_a_page_the_api_fails_to_give_is_asked_again(no_wait: None) -> None:
    api = FlakyEventsApi({2: failure(500), 3: httpx.ReadTimeout("timed out"), 5: failure(503)})
    found = await read_all_events(sweep_filter(datetime.now(UTC), datetime.now(UTC)), api)
    assert [e.payload["task_id"] for e in found] == [str(i) for i in range(6)], "every event, each once"
    assert api.calls == 6


async def test_a_refusal_is_not_asked_again_and_a_lasting_failure_is_raised(no_wait: None) -> None:
    api = FlakyEventsApi({2: failure(422)})
    with pytest.raises(httpx.HTTPStatusError, match="422"):
        await read_all_events(sweep_filter(datetime.now(UTC), datetime.now(UTC)), api)
    assert api.calls == 2
    lasting = FlakyEventsApi({n: failure(500) for n in range(1, 10)})
    with pytest.raises(httpx.HTTPStatusError, match="500"):
        await read_all_events(sweep_filter(datetime.now(UTC), datetime.now(UTC)), lasting)
    assert lasting.calls == 4, "one read and three more"
