"""Which result URLs the flows may download, and how much and how long: the host rules and limits of the
credentials block, checked on every hop of a download (redirects included) and on the address actually
connected to, so a callback cannot make a worker fetch from inside its own network."""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx

from faceswap_flows.aifaceswap.client import DEFAULT_BASE_URL
from faceswap_flows.flows.defaults import DEFAULT_CREDENTIALS
from faceswap_flows.flows.exceptions import DownloadRefused

if TYPE_CHECKING:
    from faceswap_flows.blocks import AIFaceSwapCredentials

_log = logging.getLogger("faceswap.flows")

DEFAULT_MAX_RESULT_BYTES = 2 * 1024**3
DEFAULT_RESULT_TIMEOUT_SECONDS = 600.0
MAX_REDIRECTS = 5
CACHE_SECONDS = 30.0

CURRENT_RULES: contextvars.ContextVar[DownloadRules | None] = contextvars.ContextVar("download_rules", default=None)


def is_private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def is_literal_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def service_domain(host: str) -> str:
    """``api.aifaceswap.io`` -> ``aifaceswap.io`` (the last two labels); an IP address or one label stays as is."""
    if is_literal_ip(host) or host.count(".") < 1:
        return host
    return ".".join(host.rsplit(".", 2)[-2:])


@dataclass(frozen=True)
class DownloadRules:
    """``hosts``: exact names or ``*.domain`` patterns; ``trusted``: hosts whose private address is expected
    (the sandbox when it is the base URL)."""

    hosts: tuple[str, ...]
    trusted: tuple[str, ...] = ()
    allow_private: bool = False
    max_bytes: int = DEFAULT_MAX_RESULT_BYTES
    timeout_seconds: float = DEFAULT_RESULT_TIMEOUT_SECONDS

    @classmethod
    def for_service(
        cls, base_url: str = DEFAULT_BASE_URL, extra_hosts: tuple[str, ...] = (), **limits: object
    ) -> DownloadRules:
        base_host = (urlsplit(base_url).hostname or "").lower()
        domain = service_domain(base_host)
        hosts = tuple(dict.fromkeys([base_host, domain, f"*.{domain}", *(h.lower() for h in extra_hosts)]))
        real = service_domain(urlsplit(DEFAULT_BASE_URL).hostname or "")
        trusted = (base_host,) if base_host and domain != real else ()  # the sandbox (or a stand-in) is the base URL
        return cls(hosts=hosts, trusted=trusted, **limits)  # type: ignore[arg-type]

    @classmethod
    def for_credentials(cls, credentials: AIFaceSwapCredentials) -> DownloadRules:
        return cls.for_service(
            credentials.base_url,
            tuple(credentials.allowed_result_hosts),
            allow_private=credentials.allow_private_result_addresses,
            max_bytes=credentials.max_result_bytes,
            timeout_seconds=credentials.result_download_timeout_seconds,
        )

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == rule or (rule.startswith("*.") and host.endswith(rule[1:])) for rule in self.hosts)

    def check_url(self, url: str) -> str:
        """The URL's host when the rules allow it; DownloadRefused naming the URL, the host and the option."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise DownloadRefused(f"result URL {url[:200]!r} is not an http(s) URL: refused")
        if not self.host_allowed(host):
            raise DownloadRefused(
                f"result URL {url[:200]} is on host {host!r}, not the service's ({', '.join(self.hosts)}): refused; "
                "if you trust it, add it to the credentials block's allowed_result_hosts"
            )
        return host

    def check_address(self, url: str, host: str, address: str) -> None:
        if self.allow_private or host in self.trusted or not is_private_address(address):
            return
        raise DownloadRefused(
            f"result URL {url[:200]} leads to the private, loopback or link-local address {address} (host {host!r}): "
            "refused; set allow_private_result_addresses on the credentials block if the service really is there"
        )


async def _addresses(host: str) -> list[str]:
    if is_literal_ip(host):
        return [host]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except (OSError, UnicodeError) as error:
        raise httpx.ConnectError(f"cannot resolve {host}: {error}") from None
    return [str(info[4][0]) for info in infos]


def _peer(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    address = stream.get_extra_info("server_addr") if stream is not None else None
    return str(address[0]) if address else None


@asynccontextmanager
async def guarded_get(http: httpx.AsyncClient, url: str, rules: DownloadRules) -> AsyncIterator[httpx.Response]:
    """A streamed GET of ``url`` under ``rules``: each redirect hop is checked like the first URL, and the
    address connected to as well (a name that resolves differently the second time gains nothing)."""
    for _hop in range(MAX_REDIRECTS + 1):
        host = rules.check_url(url)
        for address in await _addresses(host):
            rules.check_address(url, host, address)
        async with http.stream(
            "GET", url, follow_redirects=False, timeout=min(120.0, rules.timeout_seconds)
        ) as response:
            peer = _peer(response)
            if peer is not None:
                rules.check_address(url, host, peer)
            location = response.headers.get("location")
            if response.is_redirect and location:
                url = urljoin(url, location)
                continue
            yield response
            return
    raise DownloadRefused(f"result URL redirected more than {MAX_REDIRECTS} times: refused")


async def download(
    http: httpx.AsyncClient,
    url: str,
    rules: DownloadRules,
    write: Callable[[bytes], object],
    *,
    check_hosts: bool = True,
    chunk: int = 1024 * 1024,
) -> int:
    """Stream ``url`` into ``write``; returns its size. Refused (DownloadRefused) past ``max_bytes`` or
    ``timeout_seconds`` however slowly it trickles, and, with ``check_hosts``, on a host the rules do not allow.
    A 403/404/410 answer is an expired result URL (RuntimeError); other error statuses raise httpx's error."""
    size = 0
    try:
        async with asyncio.timeout(rules.timeout_seconds):
            opened = (
                guarded_get(http, url, rules)
                if check_hosts
                else http.stream("GET", url, follow_redirects=True, timeout=min(120.0, rules.timeout_seconds))
            )
            async with opened as response:
                if response.status_code in (403, 404, 410):
                    raise RuntimeError(f"the URL {url[:200]} answered {response.status_code}: it may have expired")
                response.raise_for_status()
                _check_declared_size(response, url, rules)
                async for piece in response.aiter_bytes(chunk):
                    size += len(piece)
                    if size > rules.max_bytes:
                        raise DownloadRefused(
                            f"{url[:200]} is over max_result_bytes={rules.max_bytes}: stopped, refused"
                        )
                    write(piece)
    except TimeoutError:
        raise DownloadRefused(
            f"{url[:200]} took over result_download_timeout_seconds={rules.timeout_seconds:g} "
            f"({size} bytes by then): stopped, refused"
        ) from None
    return size


def _check_declared_size(response: httpx.Response, url: str, rules: DownloadRules) -> None:
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > rules.max_bytes:
        raise DownloadRefused(
            f"{url[:200]} declares {int(declared)} bytes, over max_result_bytes={rules.max_bytes}: refused"
        )


_cache: dict[str, tuple[float, DownloadRules]] = {}


async def current_rules() -> DownloadRules:
    """The rules of the credentials the flow run loaded (load_services), else of the default credentials block,
    else the real service's."""
    rules = CURRENT_RULES.get()
    if rules is not None:
        return rules
    from faceswap_flows.blocks import AIFaceSwapCredentials

    cached = _cache.get(DEFAULT_CREDENTIALS)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    try:
        rules = DownloadRules.for_credentials(await AIFaceSwapCredentials.aload(DEFAULT_CREDENTIALS))
    except Exception as error:  # no such block here: the real service's rules, the strictest
        _log.warning(
            "credentials block %r not loaded (%s): result downloads follow the real service's host rules",
            DEFAULT_CREDENTIALS,
            error,
        )
        rules = DownloadRules.for_service()
    _cache[DEFAULT_CREDENTIALS] = (time.monotonic(), rules)
    return rules
