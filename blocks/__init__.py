"""Prefect blocks of the project: the API credentials and the media storage.

Register them with ``prefect block register -m blocks``.
"""

from blocks.credentials import AIFaceSwapCredentials
from blocks.storage import MediaStorage, StorageError

__all__ = ["AIFaceSwapCredentials", "MediaStorage", "StorageError"]
