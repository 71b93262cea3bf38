"""The sandbox's OpenAPI document (served at ``/openapi.json``): the API's six endpoints, built from the same
wire models the client sends and the sandbox parses, plus the result downloads and the sandbox-only routes."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from faceswap_flows.aifaceswap.models import ApiRequest, Envelope
from faceswap_flows.aifaceswap.openapi import Operation, openapi_document, path_parameter
from faceswap_flows.aifaceswap.sandbox.config import FaultConfig

MEDIA = {"schema": {"type": "string", "format": "binary"}}
RESULT_FILE = {
    kind: MEDIA for kind in ("image/png", "image/jpeg", "image/webp", "video/mp4", "application/octet-stream")
}


class CallbackHold(BaseModel):
    """Hold every callback from now on (``hold: true``), or release the held ones ``concurrency`` at once
    (``per_second`` started a second, when given)."""

    model_config = ConfigDict(extra="allow")

    hold: bool
    concurrency: int | None = Field(default=None, gt=0, le=1024)
    per_second: float | None = Field(default=None, gt=0, description="Released callbacks started per second.")


Refusal = Envelope[None]
Answer = Envelope[dict[str, Any]]


def _endpoint(model: type[ApiRequest]) -> Operation:
    answer = Envelope[model.response_data]  # type: ignore[name-defined]
    return Operation(
        "POST",
        model.path(),
        (model.__doc__ or model.endpoint).strip().splitlines()[0],
        {200: answer, 400: Refusal, 401: Refusal, 402: Refusal, 413: Refusal, 429: Refusal, 500: Refusal},
        body={"application/json": model},
        secured=True,
    )


@cache
def sandbox_openapi(endpoints: tuple[type[ApiRequest], ...]) -> dict[str, Any]:
    operations = [_endpoint(model) for model in endpoints]
    operations += [
        Operation(
            "GET",
            "/results/{name}",
            "A finished job's result (expires)",
            {200: RESULT_FILE, 404: Refusal},
            parameters=[path_parameter("name", "the name in the result URL")],
        ),
        Operation("GET", "/sandbox/ledger", "Credits of the key", {200: Answer, 401: Refusal}, secured=True),
        Operation(
            "GET", "/sandbox/jobs", "The key's jobs", {200: Envelope[list[dict[str, Any]]], 401: Refusal}, secured=True
        ),
        Operation(
            "GET",
            "/sandbox/jobs/{task_id}",
            "One job of the key",
            {200: Answer, 401: Refusal, 404: Refusal},
            parameters=[path_parameter("task_id", "the job's task_id")],
            secured=True,
        ),
        Operation(
            "GET", "/sandbox/faults", "The injected faults", {200: Envelope[FaultConfig], 401: Refusal}, secured=True
        ),
        Operation(
            "PUT",
            "/sandbox/faults",
            "Set the injected faults (5xx on purpose when asked)",
            {200: Envelope[FaultConfig], 400: Refusal, 401: Refusal},
            body={"application/json": FaultConfig},
            secured=True,
        ),
        Operation(
            "GET", "/sandbox/callbacks", "Held and delivered callbacks", {200: Answer, 401: Refusal}, secured=True
        ),
        Operation(
            "PUT",
            "/sandbox/callbacks",
            "Hold or release callbacks",
            {200: Answer, 400: Refusal, 401: Refusal},
            body={"application/json": CallbackHold},
            secured=True,
        ),
        Operation("GET", "/health", "The sandbox is up", {200: Answer}),
    ]
    return openapi_document(
        "aifaceswap sandbox",
        "1",
        "The offline stand-in of the aifaceswap.io API (same endpoints, same wire models) and its admin routes. "
        "Authorization: Bearer <a sandbox API key>.",
        operations,
    )
