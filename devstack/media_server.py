"""Publish a local MediaStorage folder over HTTP, so that the API (the sandbox) can fetch its files.

Real deployments publish media through S3 (presigned URLs) or a CDN; this is for the local default.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from faceswap_flows.aifaceswap.http_server import BackgroundServer


def media_app(folder: str | Path) -> Starlette:
    """An ASGI app serving ``folder`` read-only at ``/``."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Starlette(routes=[Mount("/", app=StaticFiles(directory=str(folder)), name="media")])


class MediaServer(BackgroundServer):
    """A loopback file server over a folder; set the storage's ``public_base_url`` to its ``url``."""

    def __init__(self, folder: str | Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(media_app(folder), host=host, port=port)
