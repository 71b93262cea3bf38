"""Prefect blocks of the project: the API credentials, the media storage and the webhook receiver.

Register them with ``prefect block register -m blocks``.
"""

from blocks.credentials import AIFaceSwapCredentials
from blocks.receiver import WebhookReceiver
from blocks.storage import MediaStorage, StorageError

__all__ = ["AIFaceSwapCredentials", "MediaStorage", "StorageError", "WebhookReceiver"]
