"""Where the store-results sweep finds succeeded ``store-by: sweep`` jobs: the receiver's inbox (exact at once)
and Prefect's stored events (every receiver's jobs, lagging under load), as :class:`FinishedJob` records."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.events import Event
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventResourceFilter,
)
from prefect.logging import get_run_logger
from pydantic import ValidationError

from faceswap_flows.blocks import WebhookReceiver
from faceswap_flows.flows.api_retries import again_if_api_failed
from faceswap_flows.flows.collect import FinishedJob
from faceswap_flows.flows.tasks.waiting import received_callbacks
from faceswap_flows.receiver.events import FAILED, SUCCEEDED, task_resource_id

STORE_BY_LABEL = "aifaceswap.store-by"
SWEEP = "sweep"
PAGE_SIZE = 50  # the most /events/filter returns per page
PAGE_RETRY_DELAYS = (1.0, 4.0, 15.0)
# While a run goes on, the stored events are read on from the newest one seen, less this margin (an event stored
# late, out of order, is read again: jobs are deduplicated), at most once per ``EVENTS_EVERY_SECONDS``.
EVENTS_LAG_SECONDS = 2.0
EVENTS_EVERY_SECONDS = 2.0


def sweep_filter(since: datetime, until: datetime) -> EventFilter:
    """Callback events (succeeded, and failed: a batch notes those) that occurred in [since, until], oldest first.
    The store-by=sweep label is checked here (:func:`swept_events`), not by the API: PostgreSQL answers a label
    filter with a scan of every event resource of the window for each page (4.5 s a page under load in the scale
    drill, minutes for one read of 2,000 events), the name and time filters from the events' own indexes."""
    return EventFilter(
        occurred=EventOccurredFilter(since=since, until=until),
        event=EventNameFilter(name=[SUCCEEDED, FAILED]),
        resource=EventResourceFilter(id_prefix=[task_resource_id("")]),
        order=EventOrder.ASC,
    )


def swept_events(events: list[Event]) -> list[Event]:
    """The events of jobs submitted with store_by="sweep"."""
    return [event for event in events if event.resource.get(STORE_BY_LABEL) == SWEEP]


async def read_all_events(event_filter: EventFilter, client: Any = None) -> list[Event]:
    """Every event the filter matches, following the pages' next_page links. A page the API fails to give (a 5xx,
    e.g. the database timing out under load, or a dropped connection) is asked again: reading is safe to repeat."""
    if client is None:
        async with get_client() as opened:
            return await read_all_events(event_filter, opened)
    page = await again_if_api_failed(
        functools.partial(client.read_events, filter=event_filter, limit=PAGE_SIZE), PAGE_RETRY_DELAYS, "reading events"
    )
    found: list[Event] = list(page.events)
    while page.next_page and page.events:
        page = await again_if_api_failed(
            functools.partial(client.read_events_page, str(page.next_page)), PAGE_RETRY_DELAYS, "reading events"
        )
        found += page.events
    return found


def finished_job(payload: dict[str, Any]) -> FinishedJob | None:
    payload = dict(payload)
    payload.setdefault("result_key", None)
    payload["result_key"] = payload["result_key"] or f"results/collected/{payload.get('task_id')}"
    try:
        return FinishedJob.model_validate(payload)
    except ValidationError:
        return None


def jobs_in(payloads: list[dict[str, Any]]) -> tuple[list[FinishedJob], list[str]]:
    """The succeeded jobs the payloads name (one per task_id), and the task_ids of those that name no result."""
    jobs: dict[str, FinishedJob] = {}
    unusable = []
    for payload in payloads:
        if payload.get("success") == 0:
            continue
        job = finished_job(payload)
        if job is None:
            unusable.append(str(payload.get("task_id")))
        else:
            jobs.setdefault(job.task_id, job)
    return list(jobs.values()), unusable


class JobSource:
    """Where a sweep finds the succeeded sweep jobs of [since, until]: the receiver's inbox, exact at once and
    read on from where the previous read ended; and the stored events, which hold every receiver's jobs but lag
    under load: read on from the newest seen while the run goes on (the jobs other receivers took), and whole when
    there is no inbox to read and before a run ends."""

    def __init__(self, since: datetime, until: datetime, receiver: WebhookReceiver | None = None) -> None:
        self.since, self.until = since, until
        self.receiver = receiver if receiver is not None and receiver.public_url else None
        self._inbox_from = since.timestamp()
        self._events_from = since
        self._events_read_at = -EVENTS_EVERY_SECONDS

    async def from_inbox(self) -> list[dict[str, Any]] | None:
        """The callbacks (succeeded and failed) received since the previous read; None when there is no inbox or
        it cannot be read."""
        if self.receiver is None:
            return None
        try:
            received = await received_callbacks(
                self.receiver.public_url,
                self.receiver.signing_secret.get_secret_value(),
                self._inbox_from,
                store_by=SWEEP,
            )
        except httpx.HTTPError as error:
            get_run_logger().warning("the receiver's inbox could not be read (%r): stored events only", error)
            return None
        if received:
            self._inbox_from = max(entry["received_at"] for entry in received)
        last = self.until.timestamp()
        return [entry for entry in received if entry["received_at"] <= last]

    async def from_stored_events(self) -> list[dict[str, Any]]:
        return [dict(event.payload) for event in await self._read_events(self.since)]

    async def recent_stored_events(self) -> list[dict[str, Any]]:
        """The stored events from the newest one the previous read saw (less the lag margin) on; [] when the
        previous read was less than ``EVENTS_EVERY_SECONDS`` ago."""
        if time.monotonic() - self._events_read_at < EVENTS_EVERY_SECONDS:
            return []
        return [dict(event.payload) for event in await self._read_events(self._events_from)]

    def read_events_on_from(self, moment: datetime) -> None:
        """What is known up to ``moment`` (less the lag margin) by other means: the next reads of the stored events
        start there."""
        self._events_from = max(self._events_from, moment - timedelta(seconds=EVENTS_LAG_SECONDS))

    async def _read_events(self, since: datetime) -> list[Event]:
        self._events_read_at = time.monotonic()
        events = await read_all_events(sweep_filter(since, self.until))
        if events:
            newest = max(event.occurred for event in events) - timedelta(seconds=EVENTS_LAG_SECONDS)
            self._events_from = max(self._events_from, newest)
        return swept_events(events)
