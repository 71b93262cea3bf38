"""The receiver's OpenAPI document (served at ``/openapi.json``), built from the callback wire model and the
receiver's own answers."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from faceswap_flows.aifaceswap.models import TaskCallback
from faceswap_flows.aifaceswap.openapi import Operation, openapi_document, path_parameter, query_parameter
from faceswap_flows.receiver.tokens import JobToken


class Refusal(BaseModel):
    """Every refusal of the receiver."""

    status: Literal["refused"]
    error: str


class CallbackAnswer(BaseModel):
    """A callback kept: ``accepted`` (new), ``duplicate`` (delivered again) or ``unparsed`` (kept raw)."""

    model_config = ConfigDict(extra="allow")

    status: str
    task_id: str | None = None
    error: str | None = None


class ReceivedCallback(BaseModel):
    """A callback in the inbox, with the job its token named."""

    model_config = ConfigDict(extra="allow")

    callback: TaskCallback
    job: JobToken
    received_at: float
    emitted_at: float | None
    deliveries: int


class ReceivedCallbacks(BaseModel):
    callbacks: list[ReceivedCallback]


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    received: int
    pending: int


class Challenge(BaseModel):
    nonce: str = Field(pattern="^[0-9a-f]{32,128}$", description="Random lowercase hex digits chosen by the asker.")


class InboxState(BaseModel):
    writable: bool
    error: str | None


class ChallengeAnswer(BaseModel):
    """``answer``: hex HMAC-SHA256 of the nonce (after a fixed prefix) under the signing secret."""

    answer: str
    inbox: InboxState


REFUSED = dict.fromkeys((401, 404), Refusal)


@cache
def receiver_openapi() -> dict[str, Any]:
    token = path_parameter("token", "the signed job token of the callback URL (unguessable)")
    operations = [
        Operation(
            "POST",
            "/callbacks/{token}",
            "The service's callback for one job (JSON, form-urlencoded or multipart)",
            {200: CallbackAnswer, **dict.fromkeys((403, 404, 409, 410, 413, 503), Refusal)},
            body={
                "application/json": TaskCallback,
                "application/x-www-form-urlencoded": TaskCallback,
            },
            parameters=[token],
        ),
        Operation(
            "GET",
            "/callbacks",
            "What arrived since a time, oldest first",
            {200: ReceivedCallbacks, 401: Refusal, 422: Refusal},
            parameters=[
                query_parameter("since", {"type": "number"}, "epoch seconds"),
                query_parameter("limit", {"type": "integer"}, "at most this many (1..5000)"),
                query_parameter("store_by", {"type": "string"}, "only jobs stored by: flow, trigger or sweep"),
            ],
            secured=True,
        ),
        Operation(
            "GET",
            "/tasks/{task_id}",
            "The callback of a task",
            {200: ReceivedCallback, **REFUSED},
            parameters=[path_parameter("task_id", "the service's task_id")],
            secured=True,
        ),
        Operation(
            "GET",
            "/jobs/{job_id}",
            "The callback of a job",
            {200: ReceivedCallback, **REFUSED},
            parameters=[path_parameter("job_id", "the job id of the token")],
            secured=True,
        ),
        Operation(
            "POST",
            "/challenge",
            "Proof that this receiver holds the signing secret (never sent), and whether its inbox is writable",
            {200: ChallengeAnswer, 422: Refusal},
            body={"application/json": Challenge},
        ),
        Operation("GET", "/health", "The receiver is up; callbacks received and pending", {200: Health}),
    ]
    return openapi_document(
        "faceswap-flows webhook receiver",
        "1",
        "Where the aifaceswap API calls back. The listings need 'Authorization: Bearer <the signing secret>'.",
        operations,
    )


async def openapi_route(request: Request) -> Response:
    return JSONResponse(receiver_openapi())
