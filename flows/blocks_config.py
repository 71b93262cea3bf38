"""The block names the flows use by default, and loading them."""

from __future__ import annotations

from dataclasses import dataclass

from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver

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
    return Services(
        credentials=await AIFaceSwapCredentials.aload(credentials_block),
        storage=await MediaStorage.aload(storage_block),
        receiver=await WebhookReceiver.aload(receiver_block),
        storage_block=storage_block,
    )
