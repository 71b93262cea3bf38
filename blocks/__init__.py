"""Prefect blocks of the project: the API credentials, the media storage, the webhook receiver and the Content
Credentials signing key.

Register them with ``prefect block register -m faceswap_flows.blocks``.
"""

from faceswap_flows.blocks.credentials import AIFaceSwapCredentials
from faceswap_flows.blocks.receiver import WebhookReceiver
from faceswap_flows.blocks.signing import ContentSigningKey
from faceswap_flows.blocks.storage import MediaStorage, StorageError

__all__ = ["AIFaceSwapCredentials", "ContentSigningKey", "MediaStorage", "StorageError", "WebhookReceiver"]
