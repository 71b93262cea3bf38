"""HTTP clients of one kept-alive connection each, lent one request at a time.

httpcore 1.0.9's pool checks every idle connection (a ``poll`` of its socket) against all the others for each
request: with 16-20 connections kept in one client, a sweep storing 16 results at a time spent ~9% of its CPU in
those checks (py-spy, the 3,000-job drill of issue #31). A lane holds one connection, so a request checks one.

>>> import asyncio
>>> from faceswap_flows.aifaceswap.lanes import ClientLanes
>>> async def main() -> None:
...     lanes = ClientLanes(4)
...     async with lanes.lane() as http:
...         print(type(http).__name__)
...     await lanes.aclose()
>>> asyncio.run(main())
AsyncClient
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


class ClientLanes:
    """``count`` HTTP clients of one connection each (``client_options`` go to each ``httpx.AsyncClient``). At most
    ``count`` requests run at once through the lanes; a caller past that waits for a free lane."""

    def __init__(self, count: int, **client_options: Any) -> None:
        if count < 1:
            raise ValueError(f"count: {count} lanes; give at least 1")
        self._clients = [httpx.AsyncClient(limits=ONE_CONNECTION, **client_options) for _ in range(count)]
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in self._clients:
            self._free.put_nowait(client)

    @property
    def is_closed(self) -> bool:
        return any(client.is_closed for client in self._clients)

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        """A free lane's client for one request (or one streamed download), given back after it."""
        client = await self._free.get()
        try:
            yield client
        finally:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
