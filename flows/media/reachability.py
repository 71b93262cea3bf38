"""Whether the service can reach what it is handed. The real service (a base URL on a public host) fetches every
input itself and calls the webhook back over the internet: each such URL must be http(s) on a host that resolves to
public addresses. A loopback, private or link-local one is refused before any credit is spent, naming the block field
and the fix. The sandbox on loopback (or any base URL on a private address) is reached over the same network, so
nothing is refused there; ``AIFaceSwapCredentials.allow_private_urls`` says a service is reached over a private
network.

Example:
    ```python
    reach = Reach.for_credentials(credentials)
    reach.check("http://127.0.0.1:8701/callbacks/x", "WebhookReceiver.public_url", WEBHOOK_FIX)  # raises
    ```
"""

from __future__ import annotations

import contextvars
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from faceswap_flows.flows.exceptions import UnreachableUrl
from faceswap_flows.flows.media.download_rules import is_literal_ip, is_private_address

if TYPE_CHECKING:
    from faceswap_flows.blocks import AIFaceSwapCredentials

WEBHOOK_FIX = (
    "expose the receiver through a tunnel or an ingress and set the WebhookReceiver block's public_url to its public "
    "https URL (see docs/troubleshooting.md)"
)
STORAGE_FIX = (
    "the service fetches every input itself: use S3 storage (presigned URLs) or set the MediaStorage block's "
    "public_base_url to a public base URL (a CDN) that serves the folder"
)
INPUT_FIX = "give a public http(s) URL, or a local file or a storage key (staged in storage)"
RESOLVE_SECONDS = 60.0
_resolved: dict[str, tuple[float, tuple[str, ...]]] = {}

CURRENT_REACH: contextvars.ContextVar[Reach | None] = contextvars.ContextVar("reach", default=None)


def addresses(host: str) -> tuple[str, ...]:
    """The addresses ``host`` resolves to here (cached for a minute); () when it does not resolve."""
    if is_literal_ip(host):
        return (host,)
    known = _resolved.get(host)
    if known is None or time.monotonic() - known[0] > RESOLVE_SECONDS:
        try:
            found = tuple(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, None)))
        except (socket.gaierror, UnicodeError):
            found = ()
        known = _resolved[host] = (time.monotonic(), found)
    return known[1]


def is_public_host(host: str) -> bool:
    """A host on public addresses. One that does not resolve here counts as public (the real service's name may
    resolve only where it runs); ``localhost`` never does."""
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return False
    found = addresses(host)
    return not found or not any(is_private_address(address) for address in found)


@dataclass(frozen=True)
class Reach:
    """The rule of one service: ``checked`` when it is public and private addresses are not allowed."""

    service: str
    checked: bool

    @classmethod
    def for_credentials(cls, credentials: AIFaceSwapCredentials) -> Reach:
        host = (urlsplit(credentials.base_url).hostname or "").lower()
        public = bool(host) and is_public_host(host)
        return cls(service=credentials.base_url, checked=public and not credentials.allow_private_urls)

    def check(self, url: str, field: str, fix: str) -> None:
        """UnreachableUrl naming ``field`` and ``fix`` when the service cannot fetch or call ``url``."""
        if not self.checked:
            return
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        where = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        shown = where if field.startswith("WebhookReceiver") else f"{where}{parts.path}"[:200]  # no token, no query
        if parts.scheme not in ("http", "https") or not host:
            raise UnreachableUrl(f"{field}: {shown!r} is not an http(s) URL the service can fetch: {fix}", field=field)
        found = addresses(host)
        if not found and not is_literal_ip(host):
            why = f"its host {host!r} does not resolve"
        elif host in ("localhost",) or host.endswith(".localhost") or any(is_private_address(a) for a in found):
            private = next((a for a in found if is_private_address(a)), host)
            why = f"its host {host!r} is the loopback, private or link-local address {private}"
        else:
            return
        raise UnreachableUrl(
            f"{field}: {shown} cannot be reached by the service at {self.service}: {why}. Nothing was sent: {fix}; "
            "or, if the service reaches you over a private network, set allow_private_urls on the credentials block",
            field=field,
        )

    def check_request(self, request: Any) -> None:
        """Every URL of an API request (the webhook and the inputs), before it is sent."""
        for field, url in _urls(request.model_dump(mode="json")):
            fix = WEBHOOK_FIX if field == "webhook" else STORAGE_FIX
            self.check(url, "WebhookReceiver.public_url" if field == "webhook" else field, fix)


def _urls(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _urls(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _urls(item, f"{path}[{i}]")


def current_reach() -> Reach | None:
    """The rule of the credentials the flow run loaded (load_services), if any."""
    return CURRENT_REACH.get()
