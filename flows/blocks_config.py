"""The block names the flows use by default, and loading them."""

from __future__ import annotations

from dataclasses import dataclass

from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.flows.media.download_rules import CURRENT_RULES, DownloadRules

DEFAULT_CREDENTIALS = "aifaceswap"
DEFAULT_STORAGE = "faceswap-media"
DEFAULT_RECEIVER = "faceswap-receiver"


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
) -> Services:
    credentials = await AIFaceSwapCredentials.aload(credentials_block)
    CURRENT_RULES.set(DownloadRules.for_credentials(credentials))  # the result downloads of this run follow them
    return Services(
        credentials=credentials,
        storage=await MediaStorage.aload(storage_block),
        receiver=await WebhookReceiver.aload(receiver_block),
        storage_block=storage_block,
    )
