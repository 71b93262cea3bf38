"""The callback events of ``store-by: sweep`` jobs as Prefect's event stream delivers them: every receiver's jobs,
a fraction of a second after the callback, with no wait for the events to be stored and read back.

The stream is the fast source, not the complete one: a subscription replays only the last minute when it
(re)connects, so the sweep's reads of the stored events stay the check before a run ends (:class:`JobSource`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

from faceswap_flows.flows.sweep.jobs import STORE_BY_LABEL, SWEEP
from faceswap_flows.receiver.events import FAILED, SUCCEEDED, task_resource_id

logger = logging.getLogger("faceswap.flows")
RESUBSCRIBE_SECONDS = 1.0
# After the first event wakes a sweep, it waits this long for those arriving with it: one chunk for a burst.
GATHER_SECONDS = 0.2


class LiveCallbacks:
    """Collects the sweep jobs' callback events of [since, until] while a run goes on: :meth:`take` hands over
    what arrived since the previous call, :meth:`wait` returns as soon as something arrives.

    Example:
        async with LiveCallbacks(since, until) as live:
            await live.wait(2.0)
            payloads = live.take()
    """

    def __init__(self, since: datetime, until: datetime) -> None:
        self.since, self.until = since, until
        self._payloads: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveCallbacks:
        self._task = asyncio.create_task(self._listen(), name="store-results-live-callbacks")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def listening(self) -> bool:
        """Subscribed now: the jobs every receiver takes arrive here."""
        return self._listening

    def take(self) -> list[dict[str, Any]]:
        taken, self._payloads = self._payloads, []
        self._arrived.clear()
        return taken

    async def wait(self, seconds: float) -> None:
        """Until an event arrives (and ``GATHER_SECONDS`` more, for those arriving with it) or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout=seconds)
            await asyncio.sleep(min(GATHER_SECONDS, seconds))

    def _filter(self) -> EventFilter:
        return EventFilter(
            occurred=EventOccurredFilter(since=self.since, until=self.until),
            event=EventNameFilter(name=[SUCCEEDED, FAILED]),
            resource=EventResourceFilter(id_prefix=[task_resource_id("")]),
        )

    def _arrive(self, event: Event) -> None:
        if event.resource.get(STORE_BY_LABEL) == SWEEP and self.since <= event.occurred <= self.until:
            self._payloads.append(dict(event.payload))
            self._arrived.set()

    async def _listen(self) -> None:
        while True:
            started = time.monotonic()
            try:
                async with get_events_subscriber(filter=self._filter()) as events:
                    self._listening = True
                    async for event in events:
                        self._arrive(event)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # an API server going away: the stored-events reads cover the gap
                logger.debug("the live callback events stopped (%r): subscribing again", error)
            finally:
                self._listening = False
            await asyncio.sleep(max(0.0, RESUBSCRIBE_SECONDS - (time.monotonic() - started)))
