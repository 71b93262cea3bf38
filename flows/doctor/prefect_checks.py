"""The Prefect side of a deployment: the API answers, its event stream carries an event both ways, each block
loads, and the global rate limit the credentials name exists."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from prefect.client.orchestration import get_client
from prefect.events import Event
from prefect.events.clients import get_events_client, get_events_subscriber
from prefect.events.filters import EventFilter, EventResourceFilter
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from faceswap_flows.blocks import AIFaceSwapCredentials, ContentSigningKey, MediaStorage, WebhookReceiver
from faceswap_flows.flows.blocks_config import CREATE_BLOCKS, load_block
from faceswap_flows.flows.doctor.report import Check, DoctorBlocks, failed, ok, warn
from faceswap_flows.flows.exceptions import BlockNotFound

EVENT_SECONDS = 15.0
SET_API_URL = (
    "point PREFECT_API_URL at your Prefect server (e.g. prefect config set PREFECT_API_URL=http://host:4200/api)"
)
CREATE_SIGNING = (
    "create it with `faceswap-flows signing dev-cert --block {name}` (development) or save your certificate in a "
    "ContentSigningKey block named {name!r}"
)


def api_source() -> tuple[str, str]:
    """The API URL Prefect uses here, and where it comes from (the environment or the active profile)."""
    from prefect.context import get_settings_context

    url = str(PREFECT_API_URL.value() or "")
    if os.environ.get("PREFECT_API_URL"):
        return url, "PREFECT_API_URL"
    return url, f"Prefect profile {get_settings_context().profile.name!r}"


async def check_api() -> Check:
    url, source = api_source()
    if not url:
        result = (
            f"no API URL: neither PREFECT_API_URL nor {source} sets one (each process would start a temporary server "
            "of its own, which no worker, receiver or trigger shares)"
        )
        return failed("Prefect API", result, SET_API_URL)
    async with get_client() as client:
        error = await client.api_healthcheck()
        version = await client.api_version() if error is None else None
    if error is not None:
        return failed("Prefect API", f"{url} (from {source}) does not answer: {error}", SET_API_URL)
    return ok("Prefect API", f"{url} (from {source}) answers, server {version}")


async def check_events() -> Check:
    """An event emitted through the API's events socket comes back on its event stream (what flows waiting for a
    callback, and the triggers, rely on)."""
    resource = f"faceswap-flows.doctor.{uuid.uuid4().hex}"
    wanted = EventFilter(resource=EventResourceFilter(id=[resource]))  # type: ignore[call-arg]
    fix = "check that the Prefect server's events websockets (/api/events/in and /api/events/out) pass your proxy"
    try:
        async with get_events_subscriber(filter=wanted, reconnection_attempts=1) as subscriber:
            async with get_events_client(reconnection_attempts=1) as events:
                probe = Event(event="faceswap-flows.doctor.probe", resource={"prefect.resource.id": resource})
                await events.emit(probe)
            async with asyncio.timeout(EVENT_SECONDS):
                async for event in subscriber:
                    if event.resource.id == resource:
                        return ok("Prefect events", "an event emitted came back on the event stream")
    except TimeoutError:
        return failed("Prefect events", f"an event emitted did not come back within {EVENT_SECONDS:.0f} s", fix)
    except Exception as error:  # the websocket refused or closed: the result says how
        return failed("Prefect events", f"the event stream cannot be used: {type(error).__name__}: {error}", fix)
    return failed("Prefect events", "the event stream closed before the event came back", fix)


async def load_blocks(names: DoctorBlocks, api_url: str) -> tuple[list[Check], dict[str, Any]]:
    """One row per block, and the blocks that loaded (by role: credentials, storage, receiver, signing)."""
    wanted: list[tuple[str, type[Any], str, str]] = [
        ("credentials", AIFaceSwapCredentials, names.credentials, "blocks.credentials"),
        ("storage", MediaStorage, names.storage, "blocks.storage"),
        ("receiver", WebhookReceiver, names.receiver, "blocks.receiver"),
        ("signing", ContentSigningKey, names.signing_block, "output.signing_block"),
    ]
    rows, loaded = [], {}
    for role, block_type, name, field in wanted:
        check = f"{block_type.__name__} block"
        try:
            loaded[role] = await load_block(block_type, name, field)
        except BlockNotFound:
            create = CREATE_SIGNING.format(name=name) if role == "signing" else _create_command(name, role)
            rows.append(failed(check, f"no {block_type.__name__} block named {name!r} on {api_url}", create))
            continue
        except Exception as error:  # saved but unreadable (a field that no longer validates, a missing type)
            fix = f"save the block {name!r} again (see `faceswap-flows blocks create --help`)"
            rows.append(failed(check, f"{name!r} cannot be loaded: {type(error).__name__}: {error}", fix))
            continue
        rows.append(ok(check, f"{name!r} loads"))
    return rows, loaded


def _create_command(name: str, role: str) -> str:
    return f"{CREATE_BLOCKS} (it saves the default names), or give --{role} the name of your block instead of {name!r}"


async def check_rate_limit(credentials: AIFaceSwapCredentials) -> Check:
    name = credentials.rate_limit
    create = f"prefect gcl create {name or 'aifaceswap-api'} --limit 5 --slot-decay-per-second 2"
    if not name:
        return warn("API rate limit", "the credentials block names no rate_limit: API calls are not limited", create)
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            result = f"global concurrency limit {name!r} does not exist: API calls are not limited"
            return warn("API rate limit", result, create)
    if not limit.active:
        return warn("API rate limit", f"{name!r} exists but is inactive", f"prefect gcl update {name} --enable")
    decay = limit.slot_decay_per_second
    return ok("API rate limit", f"{name!r}: {limit.limit} slots, {decay or 0:g} freed per second")
