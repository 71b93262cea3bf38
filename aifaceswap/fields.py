"""The field types of the aifaceswap wire contract and their checks: URLs, images (URL, file or base64), face
boxes, enhance levels, durations; and validation that raises InputValidationError naming the field and the fix.
"""

from __future__ import annotations

import base64
import binascii
import re
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)

from faceswap_flows.aifaceswap.errors import InputValidationError

API_PREFIX = "/api/aifaceswap/v1"
MAX_VIDEO_REFS = 3

IMAGE_SIGNATURES: dict[bytes, str] = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
    b"BM": "image/bmp",
}


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of an encoded image from its first bytes, or None when it is not a known image format."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, mime in IMAGE_SIGNATURES.items():
        if data.startswith(signature):
            return mime
    return None


INPUT_URL_HINT = (
    "the service fetches inputs itself, so upload local files first (MediaStorage.upload) and pass the URL it returns"
)
WEBHOOK_URL_HINT = "pass the URL of the webhook receiver (faceswap-flows receiver) that the service can POST to"


def _check_http_url(value: Any, hint: str = INPUT_URL_HINT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}: {hint}")
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL, got {value[:80]!r}: {hint}")
    return value


def _check_webhook_url(value: Any) -> str:
    return _check_http_url(value, WEBHOOK_URL_HINT)


URL_SCHEMA = {"type": "string", "format": "uri", "pattern": r"^\s*https?://[^\s/?#]+"}
HttpUrl = Annotated[str, BeforeValidator(_check_http_url), WithJsonSchema(URL_SCHEMA)]
"""An absolute http(s) URL kept as the exact string the user gave."""
WebhookUrl = Annotated[str, BeforeValidator(_check_webhook_url), WithJsonSchema(URL_SCHEMA)]


class Enhance(IntEnum):
    """Face enhancement of the video endpoints; it sets the price per second."""

    NONE = 0
    UP_TO_1080P = 1
    UP_TO_2K = 2


def _check_enhance(value: Any) -> Enhance:
    try:
        return Enhance(int(value))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"must be 0 (no enhance), 1 (enhance up to 1080p) or 2 (enhance up to 2k), got {value!r}"
        ) from None


EnhanceLevel = Annotated[
    Enhance, BeforeValidator(_check_enhance), PlainSerializer(int, return_type=int, when_used="always")
]


def _check_duration(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"must be the video's length in seconds (a number > 0), got {value!r}") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(
            f"must be the video's length in seconds (a number > 0), got {value!r}: "
            "read it from the file (the flows do) rather than typing it"
        )
    return seconds


Duration = Annotated[float, BeforeValidator(_check_duration)]

_DATA_URI = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)


def decode_base64_image(value: str) -> bytes:
    """The image bytes of a base64 string (a data: URI prefix is accepted); ValueError when it is not one."""
    payload = _DATA_URI.sub("", value.strip())
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "is not valid base64: pass the image file's bytes encoded with base64.b64encode(...).decode()"
        ) from None
    if not data:
        raise ValueError("decodes to nothing: pass a non-empty encoded image (JPEG, PNG or WebP)")
    if sniff_image_type(data) is None:
        raise ValueError("decodes to bytes that are not an image: encode a JPEG, PNG or WebP file")
    return data


def _check_base64_image(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        value = base64.b64encode(bytes(value)).decode("ascii")
    if not isinstance(value, str):
        raise ValueError(f"must be a base64 string of an image, got {type(value).__name__}")
    decode_base64_image(value)
    return value


Base64Image = Annotated[str, BeforeValidator(_check_base64_image)]
"""A base64-encoded image; raw bytes given here are encoded for you."""


class FaceBox(BaseModel):
    """A face's bounding box in pixels of its image: top-left (x1, y1), bottom-right (x2, y2).

    On the wire it is the list ``[x1, y1, x2, y2]``.

    >>> FaceBox.model_validate([146, 256, 240, 381]).width
    94
    """

    model_config = ConfigDict(frozen=True)

    x1: int = Field(ge=0)
    y1: int = Field(ge=0)
    x2: int
    y2: int

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if len(value) != 4:
                raise ValueError(f"a face box is [x1, y1, x2, y2] (4 numbers), got {len(value)} numbers")
            try:
                numbers = [round(float(v)) for v in value]
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"a face box is [x1, y1, x2, y2] (4 finite numbers), got {value!r}") from None
            return dict(zip(("x1", "y1", "x2", "y2"), numbers, strict=True))
        return value

    @model_validator(mode="after")
    def _ordered(self) -> FaceBox:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(
                f"a face box needs x2 > x1 and y2 > y1, got [{self.x1}, {self.y1}, {self.x2}, {self.y2}]: "
                "give the top-left corner first"
            )
        return self

    @model_serializer
    def _as_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)


class FileInput(BaseModel):
    """An image sent as a multipart file part instead of a URL (the spec's "string or file")."""

    model_config = ConfigDict(frozen=True)

    filename: str
    content: bytes = Field(repr=False)
    content_type: str = "application/octet-stream"

    @field_validator("content")
    @classmethod
    def _is_image(cls, content: bytes) -> bytes:
        if not content:
            raise ValueError("the file is empty: pass a JPEG, PNG or WebP image")
        if sniff_image_type(content) is None:
            raise ValueError("the file is not an image: pass a JPEG, PNG or WebP image")
        return content

    @classmethod
    def from_path(cls, path: str | Path) -> FileInput:
        path = Path(path)
        if not path.is_file():
            raise InputValidationError(f"{path}: no such file: check the path")
        return cls.from_bytes(path.read_bytes(), filename=path.name)

    @classmethod
    def from_bytes(cls, content: bytes, *, filename: str = "image") -> FileInput:
        mime = sniff_image_type(content) or "application/octet-stream"
        return validate_model(cls, {"filename": filename, "content": content, "content_type": mime})


def _check_image_ref(value: Any) -> Any:
    if isinstance(value, FileInput | dict):
        return value
    return _check_http_url(value)


ImageRef = Annotated[FileInput | str, BeforeValidator(_check_image_ref)]
"""An image given as a URL the service fetches, or as a file uploaded with the request."""


ModelT = TypeVar("ModelT", bound=BaseModel)


FRIENDLY_MESSAGES = {
    "missing": "is required: add it to the request",
    "extra_forbidden": "is not a field of this endpoint (extra inputs are not permitted): remove it",
}


def describe_validation_error(error: ValidationError) -> str:
    """One readable line per problem: ``field: what is wrong and how to fix it``."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"] if not str(part).startswith(("function-", "union")))
        message = FRIENDLY_MESSAGES.get(item["type"], item["msg"].removeprefix("Value error, "))
        lines.append(f"{field or error.title}: {message}")
    return "; ".join(dict.fromkeys(lines))


def validate_model(model: type[ModelT], data: Any) -> ModelT:
    """Validate ``data`` as ``model``, raising InputValidationError with readable messages."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputValidationError(describe_validation_error(error), error.errors()) from None
