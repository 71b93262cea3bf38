"""Delivering job callbacks to the webhook URL, with bounded retries and the drills' faults; callbacks can be held
and released all at once (load tests of the receiver)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from faceswap_flows.aifaceswap.client import tls_context
from faceswap_flows.aifaceswap.lanes import ClientLanes
from faceswap_flows.aifaceswap.models import TaskCallback
from faceswap_flows.aifaceswap.sandbox.config import SandboxConfig
from faceswap_flows.aifaceswap.sandbox.faults import FaultDice

logger = logging.getLogger("aifaceswap.sandbox")


@dataclass
class Delivery:
    """One POST of a callback: when, to where, and what came back (status None: no answer)."""

    task_id: str
    url: str
    attempt: int
    status: int | None
    at: float = field(default_factory=time.time)


class Lanes:
    """The connections of one release of held callbacks (see ClientLanes: one client would do work quadratic in
    its connections for every request; at 64 at once, ~2.3x the CPU), started at most ``per_second`` a second."""

    def __init__(self, count: int, per_second: float | None = None) -> None:
        self._lanes = ClientLanes(count, verify=tls_context())
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next_start = time.monotonic()

    async def _paced(self) -> None:
        """Wait for this delivery's turn when the release is paced (``per_second``): one start per interval."""
        if not self._interval:
            return
        turn = self._next_start = max(self._next_start + self._interval, time.monotonic())
        await asyncio.sleep(turn - time.monotonic())

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        await self._paced()
        async with self._lanes.lane() as client:
            yield client

    async def aclose(self) -> None:
        await self._lanes.aclose()


class WebhookSender:
    def __init__(self, http: httpx.AsyncClient, config: SandboxConfig, dice: FaultDice) -> None:
        self._http = http
        self._config = config
        self._dice = dice
        self.deliveries: list[Delivery] = []
        self.delivered = 0
        self.held = 0
        self._gate = asyncio.Event()
        if not config.hold_callbacks:
            self._gate.set()
        self._releases: list[Lanes] = []  # the lanes of each release, latest last; all closed with the sender

    @property
    def holding(self) -> bool:
        return not self._gate.is_set()

    def hold(self) -> None:
        """From now on, callbacks wait (their jobs still finish) until ``release``."""
        self._gate.clear()

    def release(self, concurrency: int | None = None, per_second: float | None = None) -> int:
        """Deliver every held callback, at most ``concurrency`` at once (and ``per_second`` started a second when
        given: a sustained rate); returns how many were held."""
        self._releases.append(Lanes(concurrency or self._config.release_concurrency, per_second))
        held = self.held
        self._gate.set()
        return held

    def status(self) -> dict[str, object]:
        """Whether callbacks are held, how many, how many were delivered, and the tasks whose callback was sent
        more than once because a delivery failed (``retried``)."""
        retried = sorted({delivery.task_id for delivery in self.deliveries if delivery.attempt > 1})
        return {"hold": self.holding, "held": self.held, "delivered": self.delivered, "retried": retried}

    async def send(self, url: str, callback: TaskCallback) -> bool:
        """Deliver a callback as the faults say (dropped, delayed, twice); True if one delivery was accepted.
        While callbacks are held, wait for the release, then deliver within the release's concurrency."""
        if self._gate.is_set():
            return await self._send(url, callback, self._http)
        self.held += 1
        try:
            await self._gate.wait()
        finally:
            self.held -= 1
        async with self._releases[-1].lane() as http:  # the gate opens only in release(), after its lanes exist
            return await self._send(url, callback, http)

    async def close(self) -> None:
        for lanes in self._releases:
            await lanes.aclose()
        self._releases.clear()

    async def _send(self, url: str, callback: TaskCallback, http: httpx.AsyncClient) -> bool:
        faults = self._dice.config
        if self._dice.roll(faults.drop_webhook_rate):
            logger.info("fault: dropping the callback of %s", callback.task_id)
            return False
        if self._dice.roll(faults.delay_webhook_rate):
            await asyncio.sleep(faults.delay_webhook_seconds)
        delivered = await self._deliver(url, callback, http)
        if self._dice.roll(faults.duplicate_webhook_rate):
            delivered = await self._deliver(url, callback, http) or delivered
        return delivered

    async def _deliver(self, url: str, callback: TaskCallback, http: httpx.AsyncClient) -> bool:
        body = callback.model_dump(mode="json", exclude_none=True)
        delay = self._config.webhook_backoff_seconds
        for attempt in range(1, self._config.webhook_retries + 2):
            status: int | None = None
            try:
                response = await http.post(url, json=body, timeout=self._config.webhook_timeout_seconds)
                status = response.status_code
            except httpx.HTTPError as error:
                logger.warning("callback of %s to %s failed: %r", callback.task_id, url, error)
            self.deliveries.append(Delivery(callback.task_id, url, attempt, status))
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return True
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                logger.warning("callback of %s refused with HTTP %s: not retried", callback.task_id, status)
                return False
            if attempt <= self._config.webhook_retries:
                await asyncio.sleep(delay)
                delay *= 2
        return False
