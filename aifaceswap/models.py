"""The wire contract of the aifaceswap API: one pydantic model per request body, response body and callback.

The client sends these models and the sandbox parses them, so the two cannot drift apart. Every
validation error names the field and says how to fix it, and happens before anything is sent.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from faceswap_flows.aifaceswap.fields import (  # noqa: F401  (re-exported: the contract's field types)
    API_PREFIX,
    MAX_VIDEO_REFS,
    Base64Image,
    Duration,
    Enhance,
    EnhanceLevel,
    FaceBox,
    FileInput,
    HttpUrl,
    ImageRef,
    WebhookUrl,
    _check_enhance,
    _check_http_url,
    decode_base64_image,
    describe_validation_error,
    sniff_image_type,
    validate_model,
)
from faceswap_flows.aifaceswap.pricing import Operation, estimate_credits


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
