"""The aifaceswap.io API: its wire contract, prices, errors and an async client. Knows nothing of Prefect."""

from faceswap_flows.aifaceswap.client import AIFaceSwapClient, ImageInput
from faceswap_flows.aifaceswap.errors import (
    AIFaceSwapError,
    APIError,
    AuthenticationError,
    ConnectionFailedError,
    InputValidationError,
    InsufficientCreditsError,
    InvalidRequestError,
    RateLimitedError,
    ResponseLostError,
    ServerError,
    TransportError,
    UnreadableAnswerError,
)
from faceswap_flows.aifaceswap.models import (
    Enhance,
    ExtractBase64FaceData,
    ExtractFaceData,
    FaceBox,
    FileInput,
    RefImage,
    SubmitData,
    TaskCallback,
)
from faceswap_flows.aifaceswap.pricing import Operation, estimate_credits

__all__ = [
    "AIFaceSwapClient",
    "AIFaceSwapError",
    "APIError",
    "AuthenticationError",
    "ConnectionFailedError",
    "Enhance",
    "ExtractBase64FaceData",
    "ExtractFaceData",
    "FaceBox",
    "FileInput",
    "ImageInput",
    "InputValidationError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "Operation",
    "RateLimitedError",
    "RefImage",
    "ResponseLostError",
    "ServerError",
    "SubmitData",
    "TaskCallback",
    "TransportError",
    "UnreadableAnswerError",
    "estimate_credits",
]
