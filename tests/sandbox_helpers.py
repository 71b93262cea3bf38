"""Peers of the sandbox tests: a webhook catcher and a file server over a folder of test media."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from faceswap_flows.aifaceswap.http_server import BackgroundServer


class WebhookCatcher(BackgroundServer):
    """Records every callback POSTed to ``/hook/<name>``; can refuse the first N deliveries with HTTP 500, and take
    ``answer_after`` seconds to answer (``most_in_flight``: the most callbacks it was taking at once; ``peers``:
    the client address and port of each callback, one per connection)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refuse_next = 0
        self.answer_after = 0.0
        self.in_flight = self.most_in_flight = 0
        self.peers: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        super().__init__(Starlette(routes=[Route("/hook/{name}", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if request.client:
                self.peers.append((request.client.host, request.client.port))
        try:
            await asyncio.sleep(self.answer_after)
            with self._lock:
                if self.refuse_next > 0:
                    self.refuse_next -= 1
                    return JSONResponse({"error": "try later"}, status_code=500)
                self.received.append({"name": request.path_params["name"], **body})
            return JSONResponse({"ok": True})
        finally:
            with self._lock:
                self.in_flight -= 1

    def hook(self, name: str) -> str:
        return f"{self.url}/hook/{name}"

    def callbacks(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.received if c["task_id"] == task_id]

    def wait_for(self, task_id: str, count: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.callbacks(task_id)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"{count} callback(s) of {task_id} did not arrive in {timeout}s: {self.callbacks(task_id)}"
        )
