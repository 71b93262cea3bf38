"""Exceptions raised by the vision engine.

Every error derives from :class:`VisionError`, so a caller (the sandbox server) can map the whole family to
one client-error response and read ``str(error)`` for the message.
"""

from __future__ import annotations

__all__ = ["FaceIndexOutOfRange", "NoFaceFound", "NotAVideo", "NotAnImage", "TooManyRefs", "VisionError"]


class VisionError(Exception):
    """Base class of every error raised by :mod:`faceswap_flows.aifaceswap.sandbox.vision`."""


class NotAnImage(VisionError):
    """The bytes do not decode to an image."""


class NotAVideo(VisionError):
    """The file is not a decodable video, has no video stream, or has no frames."""


class NoFaceFound(VisionError):
    """No face was found in one input; the message names it (``"no face found in face_image"``)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no face found in {what}")
        self.what = what


class FaceIndexOutOfRange(VisionError, IndexError):
    """A face index is not smaller than the number of faces detected in the image."""

    def __init__(self, index: int, count: int) -> None:
        super().__init__(f"face index {index} is out of range: the image has {count} face(s)")
        self.index = index
        self.count = count


class TooManyRefs(VisionError):
    """More face references than the engine accepts in one multi-face video swap."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} face references given, at most {limit} are supported")
        self.count = count
        self.limit = limit
