"""Prefect blocks of the project: the API credentials, the media storage and the webhook receiver.

Register them with ``prefect block register -m faceswap_flows.blocks``.
"""

from faceswap_flows.blocks.credentials import AIFaceSwapCredentials
from faceswap_flows.blocks.receiver import WebhookReceiver
from faceswap_flows.blocks.storage import MediaStorage, StorageError

__all__ = ["AIFaceSwapCredentials", "MediaStorage", "StorageError", "WebhookReceiver"]
