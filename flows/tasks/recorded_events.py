"""Events the flows must not lose (a job's ``aifaceswap.task.submitted``, its audit trail), sent so that the
answer proves they were recorded.

Prefect's ``emit_event`` streams events over a websocket and counts them as delivered once the API server has
read them; an API server killed at that moment loses what it had read but not yet handed to its broker (1 of
10,006 in a benchmark with one of two API servers SIGKILLed). ``POST /events`` answers only after the events are
published to the broker, so a 2xx proves it. The event keeps its id when asked again, and the server drops
duplicates by id.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.events import Event, emit_event
from prefect.events.related import related_resources_from_run_context
from prefect.settings import get_current_settings

from faceswap_flows.flows.api_retries import again_if_api_failed
from faceswap_flows.receiver.events import post_events

RETRY_DELAYS = (1.0, 4.0, 15.0)
logger = logging.getLogger(__name__)


async def emit_recorded(
    event: str, resource: dict[str, str], payload: dict[str, Any], related: list[dict[str, str]] | None = None
) -> Event:
    """Send the event over HTTP and return it once the API has published it; with the run's related resources
    (flow run, task run, flow, deployment, tags) as ``emit_event`` attaches them.

    A 5xx or a broken connection is asked again after each of RETRY_DELAYS. If the API still cannot take it, the
    event goes to ``emit_event`` (buffered, sent when the API is back) and a warning says so: the job it records
    has already been paid for, and is never failed for its event.

    Example:
        ```python
        await emit_recorded("aifaceswap.task.submitted", {"prefect.resource.id": "aifaceswap.task.abc"}, {})
        ```
    """
    async with get_client() as client:
        built = Event(event=event, resource=resource, related=related or [], payload=payload)
        from_run = await related_resources_from_run_context(client, exclude={r.id for r in built.involved_resources})
        room = max(get_current_settings().server.events.maximum_related_resources - len(built.related), 0)
        built.related += from_run[:room]  # an event with more is refused
        try:
            post = functools.partial(post_events, client, [built])
            await again_if_api_failed(post, RETRY_DELAYS, f"sending event {event} ({built.id})")
            return built
        except (httpx.HTTPStatusError, httpx.TransportError):
            pass
    logger.warning("event %s (%s): the API did not take it over HTTP; handed to the events websocket", event, built.id)
    emit_event(event=event, resource=resource, related=related, payload=payload, id=built.id, occurred=built.occurred)
    return built
