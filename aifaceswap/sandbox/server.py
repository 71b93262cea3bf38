"""Start and stop a sandbox in this process (tests) or in the foreground (the CLI)."""

from __future__ import annotations

import asyncio

import httpx

from faceswap_flows.aifaceswap.http_server import BackgroundServer
from faceswap_flows.aifaceswap.sandbox.app import create_app
from faceswap_flows.aifaceswap.sandbox.config import SandboxConfig
from faceswap_flows.aifaceswap.sandbox.service import Sandbox


class SandboxServer(BackgroundServer):
    """A sandbox on loopback in a background thread.

    >>> with SandboxServer(SandboxConfig(keys={"k": 100})) as sandbox:   # doctest: +SKIP
    ...     print(sandbox.url)          # http://127.0.0.1:<free port>
    """

    def __init__(self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SandboxConfig()
        self.app = create_app(self.config)
        super().__init__(self.app, host=host, port=port)

    @property
    def sandbox(self) -> Sandbox:
        return self.app.state.sandbox

    def start(self, timeout: float = 60.0) -> SandboxServer:
        super().start(timeout)
        if not self.config.public_url:
            self.sandbox.base_url = self.url
        return self

    def __enter__(self) -> SandboxServer:
        return self.start()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until every job has finished and its callback has been sent."""
        runner = self.sandbox.runner
        if runner is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(runner.idle(timeout), self._loop).result(timeout + 5)

    def ledger(self, key: str) -> dict[str, object]:
        return self.sandbox.ledger.summary(key)


def serve_forever(config: SandboxConfig, *, host: str = "127.0.0.1", port: int = 8700) -> None:
    """Run the sandbox in the foreground until interrupted (what ``faceswap-flows sandbox`` does)."""
    import uvicorn

    app = create_app(config)
    if not config.public_url:
        app.state.sandbox.base_url = f"http://{host}:{port}"
    uvicorn.run(app, host=host, port=port, log_level="info")


def is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
