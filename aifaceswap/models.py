"""The wire contract of the aifaceswap API: one pydantic model per request body, response body and callback.

The client sends these models and the sandbox parses them, so the two cannot drift apart. Every
validation error names the field and says how to fix it, and happens before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar
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
from faceswap_flows.aifaceswap.pricing import Operation, estimate_credits

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


class ApiRequest(BaseModel):
    """A request body. Subclasses name their endpoint, their operation and the data model of the answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: ClassVar[str]
    operation: ClassVar[Operation]
    response_data: ClassVar[type[BaseModel]]

    @classmethod
    def path(cls) -> str:
        return f"{API_PREFIX}/{cls.endpoint}"

    def has_files(self) -> bool:
        return any(isinstance(value, FileInput) for value in self.__dict__.values())

    def estimated_credits(self) -> int:
        """What this request costs by the pricing table."""
        return estimate_credits(self.operation)


class SubmitRequest(ApiRequest):
    """A request that starts a paid background job, whose result the service POSTs to ``webhook``."""

    webhook: WebhookUrl


class SubmitData(BaseModel):
    """What a swap endpoint answers: the job's id and the credits it charged."""

    task_id: str
    points: int


class ExtractFaceData(BaseModel):
    """What extract_face answers: every face's box, in the service's order, and the credits charged."""

    faces: list[FaceBox]
    points: int = 0


class ExtractBase64FaceData(BaseModel):
    """What extract_base64_face answers: the boxes of the faces in the frame."""

    pos: list[FaceBox]
    points: int = 0


class FaceSwapRequest(SubmitRequest):
    """Swap the face of ``face_image`` into ``source_image`` (2 credits)."""

    endpoint = "faceswap"
    operation = Operation.FACESWAP
    response_data = SubmitData

    source_image: ImageRef
    face_image: ImageRef


class ExtractFaceRequest(ApiRequest):
    """Find every face in an image (2 credits)."""

    endpoint = "extract_face"
    operation = Operation.EXTRACT_FACE
    response_data = ExtractFaceData

    img: ImageRef


class MultiFaceSwapRequest(SubmitRequest):
    """Replace the faces at ``index`` (from extract_face's order) by ``face_image`` (5 credits)."""

    endpoint = "multi_faceswap"
    operation = Operation.MULTI_FACESWAP
    response_data = SubmitData

    source_image: HttpUrl
    face_image: list[HttpUrl] = Field(min_length=1)
    index: list[int] = Field(min_length=1)

    @field_validator("index")
    @classmethod
    def _indexes(cls, index: list[int]) -> list[int]:
        negative = [i for i in index if i < 0]
        if negative:
            raise ValueError(f"face indexes start at 0 (as extract_face numbers them), got {negative}")
        if len(set(index)) != len(index):
            raise ValueError(f"each face may be replaced once, but {index} repeats an index: remove duplicates")
        return index

    @model_validator(mode="after")
    def _same_length(self) -> MultiFaceSwapRequest:
        if len(self.face_image) != len(self.index):
            raise ValueError(
                f"face_image has {len(self.face_image)} URLs but index has {len(self.index)} entries: "
                "give exactly one index per face image"
            )
        return self


class VideoFaceSwapRequest(SubmitRequest):
    """Swap one face through a video, charged per second by ``enhance``."""

    endpoint = "video_faceswap"
    operation = Operation.VIDEO_FACESWAP
    response_data = SubmitData

    source_video: HttpUrl
    face_image: HttpUrl
    duration: Duration
    enhance: EnhanceLevel = Enhance.NONE

    def estimated_credits(self) -> int:
        return estimate_credits(self.operation, duration=self.duration, enhance=self.enhance)


class ExtractBase64FaceRequest(ApiRequest):
    """Find the faces in one video frame given as base64 (2 credits)."""

    endpoint = "extract_base64_face"
    operation = Operation.EXTRACT_BASE64_FACE
    response_data = ExtractBase64FaceData

    base64_img: Base64Image


class RefImage(BaseModel):
    """One face to replace in a video: its crop from a frame (base64) and the new face's URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    face_ref: Base64Image
    face_url: HttpUrl


class MultiVideoFaceSwapRequest(SubmitRequest):
    """Replace up to three faces through a video, charged per second by face count and ``enhance``."""

    endpoint = "multi_video_faceswap"
    operation = Operation.MULTI_VIDEO_FACESWAP
    response_data = SubmitData

    source_video: HttpUrl
    ref_info: list[RefImage]
    duration: Duration
    enhance: EnhanceLevel = Enhance.NONE

    def estimated_credits(self) -> int:
        return estimate_credits(
            self.operation, duration=self.duration, enhance=self.enhance, face_count=len(self.ref_info)
        )

    @field_validator("ref_info")
    @classmethod
    def _ref_count(cls, refs: list[RefImage]) -> list[RefImage]:
        if not 1 <= len(refs) <= MAX_VIDEO_REFS:
            raise ValueError(
                f"takes 1 to {MAX_VIDEO_REFS} faces (the service's limit), got {len(refs)}: split the job or drop faces"
            )
        return refs


class CallbackType(IntEnum):
    SINGLE = 1
    MULTIPLE = 2


class TaskCallback(BaseModel):
    """The body the service POSTs to the webhook when a job ends."""

    model_config = ConfigDict(extra="allow")

    success: int = Field(ge=0, le=1)
    type: int
    task_id: str = Field(min_length=1, max_length=200)
    result_image: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.success == 1

    @model_validator(mode="after")
    def _result_when_successful(self) -> TaskCallback:
        if self.success == 1:
            if not self.result_image:
                raise ValueError("a successful callback must carry result_image")
            _check_http_url(self.result_image)
        return self


DataT = TypeVar("DataT")


class Envelope(BaseModel, Generic[DataT]):
    """Every answer of the API: ``code`` 200 with ``data``, or another code with ``message``."""

    code: int
    data: DataT | None = None
    extra_data: dict[str, Any] | list[Any] | None = None
    message: str = ""


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
