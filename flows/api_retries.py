"""Calls to the Prefect API that are safe to repeat (reading events, posting an event under its own id), asked
again when the API answers 5xx or the connection fails; a 4xx is the API's answer and is raised at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import httpx

T = TypeVar("T")
logger = logging.getLogger(__name__)


async def again_if_api_failed(call: Callable[[], Awaitable[T]], delays: Sequence[float], what: str) -> T:
    """``call()``, asked again after each of ``delays`` seconds while it fails with a 5xx or a transport error.

    Example:
        ```python
        page = await again_if_api_failed(lambda: client.read_events(limit=50), (1.0, 4.0, 15.0), "events page")
        ```
    """
    for delay in (*delays, None):
        try:
            return await call()
        except (httpx.HTTPStatusError, httpx.TransportError) as error:
            server_side = not isinstance(error, httpx.HTTPStatusError) or error.response.status_code >= 500
            if delay is None or not server_side:
                raise
            logger.warning("%s failed (%r); asking again in %.0f s", what, error, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
