"""Waiting for a job's callback event without races.

The callback may arrive before the submit call returns, between submit and the wait, or during the wait.
The waiter subscribes first, then looks at what already happened: the receiver's inbox (exact and
immediate) and the events the API has stored; then it takes the live stream, re-reading the stored
events now and then, which also catches an event that was neither stored nor streamed at subscribe time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from faceswap_flows.aifaceswap.client import shared_http_client
from faceswap_flows.aifaceswap.models import TaskCallback
from faceswap_flows.flows.exceptions import CallbackTimeout
from faceswap_flows.receiver.events import FAILED, SUCCEEDED, task_resource_id

logger = logging.getLogger("faceswap.flows")


class ArrivedCallback(TaskCallback):
    """A callback as it arrived, with the facts of the job its token named."""

    job_id: str | None = None
    operation: str | None = None
    flow_run_id: str | None = None
    storage_block: str | None = None
    result_key: str | None = None


def task_event_filter(task_id: str) -> EventFilter:
    return EventFilter(
        event=EventNameFilter(name=[SUCCEEDED, FAILED]),
        resource=EventResourceFilter(id=[task_resource_id(task_id)]),
    )


def job_event_filter(job_id: str) -> EventFilter:
    """The callback events of a job, whatever task_id the service gave it (for a submission whose answer was lost)."""
    return EventFilter(
        event=EventNameFilter(name=[SUCCEEDED, FAILED]),
        resource=EventResourceFilter(id_prefix=[f"{task_resource_id('')}"], labels={"aifaceswap.job-id": [job_id]}),
    )


def callback_from_event(event: Event) -> dict[str, Any]:
    """The callback fields and the job facts an event carries."""
    return dict(event.payload)


async def stored_event(task_id: str, *, by_job: bool = False) -> dict[str, Any] | None:
    """The callback of a task (or, ``by_job``, of a job id) among the events the Prefect API has stored."""
    event_filter = job_event_filter(task_id) if by_job else task_event_filter(task_id)
    async with get_client() as client:
        page = await client.read_events(filter=event_filter, limit=10 if by_job else 1)
    found = [callback_from_event(event) for event in page.events]
    succeeded = [callback for callback in found if callback.get("success") == 1]
    return (succeeded or found or [None])[-1] if by_job else (found or [None])[0]


async def job_callbacks(job_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """Every callback of a job among the events the Prefect API has stored (a job sent more than once may have
    several tasks), oldest first."""
    async with get_client() as client:
        page = await client.read_events(filter=job_event_filter(job_id), limit=limit)
    return [callback_from_event(event) for event in reversed(page.events)]


async def arrived_callback(
    receiver_url: str | None, secret: str | None, task_id: str, *, by_job: bool = False
) -> dict[str, Any] | None:
    """The callback if it already arrived: the receiver's inbox when it has it (every callback is in it before
    Prefect has its event), else the events Prefect stored: behind a load balancer ``receiver_url`` reaches one
    receiver's inbox, and another receiver may have taken the callback."""
    found = await _ask_inbox(receiver_url, secret, task_id, by_job=by_job)
    return found if found is not None else await stored_event(task_id, by_job=by_job)


async def _ask_inbox(
    receiver_url: str | None, secret: str | None, task_id: str, *, by_job: bool
) -> dict[str, Any] | None:
    """The entry for the task (or job) of the inbox ``receiver_url`` reaches; None when it has none or does not
    answer."""
    if not receiver_url or not secret:
        return None
    path = f"jobs/{task_id}" if by_job else f"tasks/{task_id}"
    try:
        response = await shared_http_client().get(
            f"{receiver_url.rstrip('/')}/{path}", headers={"Authorization": f"Bearer {secret}"}, timeout=5
        )
    except httpx.HTTPError as error:
        logger.debug("receiver inbox not reachable: %r", error)
        return None
    return _entry_facts(response.json()) if response.status_code == 200 else None


def _entry_facts(found: dict[str, Any]) -> dict[str, Any]:
    """A receiver inbox entry as one dict: the callback's fields and its job's facts."""
    return {**found["callback"], **{k: v for k, v in found["job"].items() if k != "issued_at"}}


async def received_callbacks(
    receiver_url: str, secret: str, since: float, *, store_by: str | None = None, page: int = 1000
) -> list[dict[str, Any]]:
    """Every callback the receiver took since ``since`` (epoch seconds), oldest first, each as
    :func:`arrived_callback` gives it plus its ``received_at``. httpx errors are raised: the caller decides what an
    unreachable receiver means."""
    found: dict[str, dict[str, Any]] = {}
    while True:
        response = await shared_http_client().get(
            f"{receiver_url.rstrip('/')}/callbacks",
            params={"since": since, "limit": page, **({"store_by": store_by} if store_by else {})},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        response.raise_for_status()
        entries = response.json()["callbacks"]
        for entry in entries:
            found.setdefault(entry["callback"]["task_id"], {**_entry_facts(entry), "received_at": entry["received_at"]})
        if len(entries) < page:
            return list(found.values())
        since = entries[-1]["received_at"]


class CallbackHub:
    """One subscription to the callback events per event loop, shared by every wait in it (a batch waits for
    hundreds of jobs: one websocket, not one each). Events are kept for a while, so a wait that starts after
    its event streamed past still finds it."""

    LINGER_SECONDS = 30.0
    REMEMBERED = 20_000

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[dict[str, Any]]]] = {}
        self._seen: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._connected = asyncio.Event()
        self._listening_since: float | None = None
        self._runner: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def register(self, key: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the callback event of ``key`` (a task_id, or ``job:<job_id>``); once this returns, no
        later event can be missed."""
        if self._runner is None or self._runner.done():
            self._connected.clear()
            self._failure = None
            self._runner = asyncio.create_task(self._run(), name="faceswap-callback-hub")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, set()).add(future)
        if key in self._seen:
            future.set_result(self._seen[key])
        connected = asyncio.ensure_future(self._connected.wait())
        await asyncio.wait({connected, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        if not self._connected.is_set():
            self.release(key, future)
            raise RuntimeError(f"could not subscribe to the callback events: {self._failure!r}")
        return future

    def heard_everything_since(self, moment: float) -> bool:
        """Whether the subscription has been open without a break since before ``moment`` (epoch seconds): then
        every callback event emitted after it reached this hub (and a recent one is remembered)."""
        return self._listening_since is not None and self._listening_since <= moment

    def release(self, key: str, future: asyncio.Future[dict[str, Any]]) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[key]

    def _arrived(self, event: Event) -> None:
        found = callback_from_event(event)
        keys = [event.resource.id.removeprefix(task_resource_id(""))]
        if job_id := event.resource.get("aifaceswap.job-id"):
            keys.append(f"job:{job_id}")
        for key in keys:
            if key.startswith("job:") and self._seen.get(key, {}).get("success") == 1:
                continue  # a job's first successful callback stands, whatever its other tasks report
            self._seen[key] = found
            self._seen.move_to_end(key)
            for future in self._waiters.get(key, ()):
                if not future.done():
                    future.set_result(found)
        while len(self._seen) > self.REMEMBERED:
            self._seen.popitem(last=False)

    async def _run(self) -> None:
        event_filter = EventFilter(
            event=EventNameFilter(name=[SUCCEEDED, FAILED]),
            resource=EventResourceFilter(id_prefix=[task_resource_id("")]),
        )
        loop = asyncio.get_running_loop()
        try:
            async with get_events_subscriber(filter=event_filter) as subscriber:
                self._listening_since = time.time()
                self._connected.set()
                stream = aiter(subscriber)
                idle_since = loop.time()
                while self._waiters or loop.time() - idle_since < self.LINGER_SECONDS:
                    with contextlib.suppress(TimeoutError):
                        self._arrived(await asyncio.wait_for(anext(stream), timeout=1.0))
                    if self._waiters:
                        idle_since = loop.time()
        except Exception as error:
            self._failure = error
            logger.warning("callback event subscription ended: %r", error)
        finally:
            self._listening_since = None
            self._connected.clear()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CallbackHub] = weakref.WeakKeyDictionary()


def callback_hub() -> CallbackHub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = CallbackHub()
    return _hubs[loop]


async def wait_for_task_callback(
    task_id: str,
    timeout: float,
    *,
    receiver_url: str | None = None,
    secret: str | None = None,
    recheck_every: float = 5.0,
    by_job: bool = False,
    sent_at: float | None = None,
    job_id: str | None = None,
) -> ArrivedCallback:
    """Return the callback of ``task_id`` (or, ``by_job``, of that job id) whenever it arrived;
    CallbackTimeout after ``timeout`` seconds. ``sent_at``: when the job was submitted (epoch seconds); when this
    event loop has listened to callback events since before then, the receiver's inbox is not asked first.
    ``job_id``: wait by that job instead (the first successful callback of the job, whatever its task_id), still
    naming ``task_id`` in the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    hub = callback_hub()
    named = task_id
    if job_id is not None:
        task_id, by_job = job_id, True
    key = f"job:{task_id}" if by_job else task_id
    arrival = await hub.register(key)
    try:
        found = None
        if not arrival.done() and not (sent_at is not None and hub.heard_everything_since(sent_at)):
            found = await arrived_callback(receiver_url, secret, task_id, by_job=by_job)
        while found is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise CallbackTimeout(named, timeout, job_id=job_id)
            done, _ = await asyncio.wait({arrival}, timeout=min(remaining, recheck_every))
            if done:
                found = arrival.result()
            else:
                found = await stored_event(task_id, by_job=by_job)
    finally:
        hub.release(key, arrival)
    return ArrivedCallback.model_validate(found)
