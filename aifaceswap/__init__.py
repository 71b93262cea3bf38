"""The aifaceswap.io API: its wire contract, prices, errors and an async client. Knows nothing of Prefect."""

from aifaceswap.client import AIFaceSwapClient, ImageInput
from aifaceswap.errors import (
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
)
from aifaceswap.models import (
    Enhance,
    ExtractBase64FaceData,
    ExtractFaceData,
    FaceBox,
    FileInput,
    RefImage,
    SubmitData,
    TaskCallback,
)
from aifaceswap.pricing import Operation, estimate_credits

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
    "estimate_credits",
]
