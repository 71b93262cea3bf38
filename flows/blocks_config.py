"""Loading the blocks the flows use (their default names live in ``flows.defaults``, re-exported here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from prefect.blocks.core import Block

from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.flows.defaults import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_SIGNING, DEFAULT_STORAGE
from faceswap_flows.flows.exceptions import BlockNotFound
from faceswap_flows.flows.media.download_rules import CURRENT_RULES, DownloadRules
from faceswap_flows.flows.media.reachability import CURRENT_REACH, STORAGE_FIX, WEBHOOK_FIX, Reach

__all__ = ["DEFAULT_CREDENTIALS", "DEFAULT_RECEIVER", "DEFAULT_SIGNING", "DEFAULT_STORAGE", "Services", "load_services"]
CREATE_BLOCKS = (
    "create the flows' blocks with `AIFACESWAP_API_KEY=... faceswap-flows blocks create` (options: "
    "`faceswap-flows blocks create --help`)"
)

B = TypeVar("B", bound=Block)


def create_command(block_type: type[Block], name: str) -> str:
    """How to create a missing block: all three flows' blocks under the default names, or this one by its name."""
    if name in (DEFAULT_CREDENTIALS, DEFAULT_STORAGE, DEFAULT_RECEIVER):
        return CREATE_BLOCKS
    command = {
        "AIFaceSwapCredentials": f"AIFACESWAP_API_KEY=... faceswap-flows blocks create --credentials {name}",
        "MediaStorage": f"faceswap-flows blocks create --storage {name} --storage-url FOLDER_OR_S3_URI",
        "WebhookReceiver": f"faceswap-flows blocks create --receiver {name} --receiver-url PUBLIC_URL",
    }.get(block_type.__name__)
    return f"create it with `{command}` (options: `faceswap-flows blocks create --help`)" if command else CREATE_BLOCKS


@dataclass(frozen=True)
class Services:
    """The three blocks a swap flow needs, loaded once per flow run."""

    credentials: AIFaceSwapCredentials
    storage: MediaStorage
    receiver: WebhookReceiver
    storage_block: str


async def load_services(
    credentials_block: str = DEFAULT_CREDENTIALS,
    storage_block: str = DEFAULT_STORAGE,
    receiver_block: str = DEFAULT_RECEIVER,
    *,
    callbacks: bool = True,
) -> Services:
    """The flow's three blocks, by name; BlockNotFound names the first one missing and the command that creates it."""
    credentials = await load_block(AIFaceSwapCredentials, credentials_block, "blocks.credentials")
    CURRENT_RULES.set(DownloadRules.for_credentials(credentials))  # the result downloads of this run follow them
    reach = Reach.for_credentials(credentials)
    CURRENT_REACH.set(reach)  # every input staged in this run is checked by it
    services = Services(
        credentials=credentials,
        storage=await load_block(MediaStorage, storage_block, "blocks.storage"),
        receiver=await load_block(WebhookReceiver, receiver_block, "blocks.receiver"),
        storage_block=storage_block,
    )
    check_reachable(reach, services.storage, services.receiver if callbacks else None)
    return services


def check_reachable(reach: Reach, storage: MediaStorage, receiver: WebhookReceiver | None) -> None:
    """Before anything is spent: the service can call the receiver back and fetch what the storage publishes."""
    if receiver is not None:
        reach.check(receiver.public_url, "WebhookReceiver.public_url", WEBHOOK_FIX)
    if storage.public_base_url:
        reach.check(storage.public_base_url, "MediaStorage.public_base_url", STORAGE_FIX)
    elif storage.is_s3 and storage.endpoint_url:  # presigned URLs point at the endpoint
        reach.check(storage.endpoint_url, "MediaStorage.endpoint_url", STORAGE_FIX)


def server_asked() -> str:
    """The Prefect server this process talks to, as a user can check it."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return (
            "a temporary Prefect server this process started (PREFECT_API_URL is not set: point it, or a "
            "prefect.toml in this folder, at the server that holds your blocks, e.g. the demo's)"
        )
    return f"the Prefect server at {url}"


async def load_block(block_type: type[B], name: str, field: str) -> B:
    """The saved block ``name`` of ``block_type``; BlockNotFound (naming ``field``, the block and the command that
    creates it) instead of Prefect's "Unable to find block document" when it is not saved."""
    try:
        return await block_type.aload(name)
    except ValueError as error:
        if "Unable to find block document" not in str(error):
            raise
        raise BlockNotFound(
            f"{field}: there is no {block_type.__name__} block named {name!r} on {server_asked()}: "
            f"{create_command(block_type, name)}, or set `{field}` to the name of your {block_type.__name__} block",
            block_type=block_type.__name__,
            block_name=name,
            field=field,
        ) from None
