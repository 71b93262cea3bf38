"""The sandbox's HTTP layer: the API's six endpoints, result downloads and a few sandbox-only admin routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from faceswap_flows.aifaceswap.models import (
    ApiRequest,
    ExtractBase64FaceRequest,
    ExtractFaceRequest,
    FaceSwapRequest,
    MultiFaceSwapRequest,
    MultiVideoFaceSwapRequest,
    SubmitRequest,
    VideoFaceSwapRequest,
    describe_validation_error,
)
from faceswap_flows.aifaceswap.sandbox.config import FaultConfig, SandboxConfig
from faceswap_flows.aifaceswap.sandbox.inputs import InputError
from faceswap_flows.aifaceswap.sandbox.ledger import NotEnoughCredits
from faceswap_flows.aifaceswap.sandbox.openapi import sandbox_openapi
from faceswap_flows.aifaceswap.sandbox.service import Sandbox

logger = logging.getLogger("aifaceswap.sandbox")

ENDPOINTS: tuple[type[ApiRequest], ...] = (
    FaceSwapRequest,
    ExtractFaceRequest,
    MultiFaceSwapRequest,
    VideoFaceSwapRequest,
    ExtractBase64FaceRequest,
    MultiVideoFaceSwapRequest,
)
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_RELEASE_LANES = 1024  # each lane is an HTTP client of its own: a huge count would exhaust the sandbox


class SandboxHTTPError(Exception):
    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def envelope(code: int, message: str, data: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's answer shape, with the HTTP status equal to ``code``."""
    body = {"code": code, "data": data, "extra_data": {}, "message": message}
    return JSONResponse(body, status_code=code, headers=headers)


def _api_key(request: Request, sandbox: Sandbox) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise SandboxHTTPError(401, "missing API key: send the header 'Authorization: Bearer <your api key>'")
    if not sandbox.ledger.has_key(key.strip()):
        raise SandboxHTTPError(401, "invalid API key: check the key on the API management page")
    return key.strip()


def _injected_fault(sandbox: Sandbox) -> None:
    faults = sandbox.dice.config
    if sandbox.dice.burst("rate_limit") or sandbox.dice.roll(faults.rate_limit_rate):
        raise SandboxHTTPError(429, "too many requests: slow down", {"Retry-After": f"{faults.retry_after_seconds:g}"})
    if sandbox.dice.burst("server_error") or sandbox.dice.roll(faults.server_error_rate):
        raise SandboxHTTPError(500, "internal server error (injected fault)")


BAD_GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx</center></body></html>"
)


class DropConnection(Response):
    """No answer at all: the connection is closed under the client (uvicorn's transport is aborted)."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        transport = getattr(getattr(receive, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("closing the connection needs uvicorn's transport (serve the sandbox with uvicorn)")
        transport.abort()


def _answer_after_accepting(sandbox: Sandbox, endpoint: str) -> Response | None:
    """The injected fault answering a call that was accepted and charged (None: answer normally)."""
    dice, faults = sandbox.dice, sandbox.dice.config
    if dice.roll(faults.error_after_accept_rate):
        logger.info("fault: %s accepted and charged, answered 500", endpoint)
        return envelope(500, "internal server error (injected fault, after accepting the call)")
    if dice.roll(faults.bad_gateway_after_accept_rate):
        logger.info("fault: %s accepted and charged, answered 502 with an HTML page", endpoint)
        return HTMLResponse(BAD_GATEWAY_PAGE, status_code=502)
    if dice.roll(faults.close_after_accept_rate):
        logger.info("fault: %s accepted and charged, connection closed without an answer", endpoint)
        return DropConnection()
    return None


async def _read_body(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length and length.isascii() and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise SandboxHTTPError(413, f"the body is larger than {MAX_BODY_BYTES // 2**20} MiB: pass URLs for large files")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_part_size=MAX_BODY_BYTES) as form:
            fields: dict[str, Any] = {}
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    fields[name] = {
                        "filename": value.filename or name,
                        "content": await value.read(),
                        "content_type": value.content_type or "application/octet-stream",
                    }
                else:
                    fields[name] = value
            return fields
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise SandboxHTTPError(400, "the body is not valid JSON: send Content-Type application/json") from None
    if not isinstance(body, dict):
        raise SandboxHTTPError(400, "the body must be a JSON object with the endpoint's fields")
    return body


def _endpoint(model: type[ApiRequest]) -> Any:
    async def handler(request: Request) -> Response:
        sandbox: Sandbox = request.app.state.sandbox
        key = _api_key(request, sandbox)
        _injected_fault(sandbox)
        try:
            body = model.model_validate(await _read_body(request))
        except ValidationError as error:
            raise SandboxHTTPError(400, describe_validation_error(error)) from None
        try:
            data = await sandbox.handle(key, body)
        except InputError as error:
            raise SandboxHTTPError(400, str(error)) from None
        except NotEnoughCredits as error:
            raise SandboxHTTPError(402, str(error)) from None
        faults = sandbox.dice.config
        if isinstance(body, SubmitRequest) and sandbox.dice.roll(faults.lose_response_rate):
            logger.info("fault: the answer for task %s comes %.0fs late", data.task_id, faults.lose_response_seconds)
            await asyncio.sleep(faults.lose_response_seconds)
        return _answer_after_accepting(sandbox, body.endpoint) or envelope(200, "OK", data.model_dump(mode="json"))

    handler.__name__ = model.endpoint
    return handler


async def result_file(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    path = sandbox.results.get(request.path_params["name"])
    if path is None or not path.is_file():
        return envelope(404, "result not found or expired: results are kept for a limited time, fetch them promptly")
    return FileResponse(path)


async def ledger(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    return envelope(200, "OK", sandbox.ledger.summary(_api_key(request, sandbox)))


async def jobs(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    key = _api_key(request, sandbox)
    assert sandbox.runner is not None
    listed = [job.describe() for job in sandbox.runner.jobs.values() if job.key == key]
    task_id = request.path_params.get("task_id")
    if task_id is not None:
        found = [job for job in listed if job["task_id"] == task_id]
        if not found:
            return envelope(404, f"no job {task_id} for this key")
        return envelope(200, "OK", found[0])
    return envelope(200, "OK", listed)


async def faults(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    _api_key(request, sandbox)
    if request.method == "PUT":
        try:
            sandbox.set_faults(FaultConfig.model_validate(await _read_body(request)))
        except ValidationError as error:
            raise SandboxHTTPError(400, describe_validation_error(error)) from None
    return envelope(200, "OK", sandbox.dice.config.model_dump())


async def callbacks(request: Request) -> Response:
    """Hold callbacks (PUT {"hold": true}) or release every held one (PUT {"hold": false, "concurrency": 64}),
    optionally at a sustained rate ("per_second": 50)."""
    sandbox: Sandbox = request.app.state.sandbox
    _api_key(request, sandbox)
    assert sandbox.webhooks is not None
    if request.method == "PUT":
        body = await _read_body(request)
        hold, concurrency, per_second = body.get("hold"), body.get("concurrency"), body.get("per_second")
        valid_concurrency = concurrency is None or (type(concurrency) is int and 0 < concurrency <= MAX_RELEASE_LANES)
        valid_rate = per_second is None or (type(per_second) in (int, float) and per_second > 0)
        if not isinstance(hold, bool) or not valid_concurrency or not valid_rate:
            raise SandboxHTTPError(
                400,
                f'send {{"hold": true|false}} and optionally "concurrency": an integer from 1 to {MAX_RELEASE_LANES}'
                ' and "per_second": a positive number',
            )
        if hold:
            sandbox.webhooks.hold()
        else:
            sandbox.webhooks.release(concurrency, per_second)
    status = sandbox.webhooks.status()
    if sandbox.cache is not None:
        status["cache"] = sandbox.cache.stats()
    return envelope(200, "OK", status)


async def openapi(request: Request) -> Response:
    """The OpenAPI document, built from the wire models (aifaceswap.sandbox.openapi)."""
    return JSONResponse(sandbox_openapi(ENDPOINTS))


async def health(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    return envelope(200, "OK", {"engine": sandbox.engine.backend})


async def _on_error(request: Request, error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return envelope(error.status_code, f"{request.method} {request.url.path}: {error.detail}")
    assert isinstance(error, SandboxHTTPError)
    return envelope(error.code, error.message, headers=error.headers)


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its state (ledger, jobs, deliveries)."""
    sandbox = Sandbox(config or SandboxConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.start()
        try:
            yield
        finally:
            await sandbox.stop()

    routes = [Route(model.path(), _endpoint(model), methods=["POST"]) for model in ENDPOINTS]
    routes += [
        Route("/results/{name}", result_file, methods=["GET"]),
        Route("/sandbox/ledger", ledger, methods=["GET"]),
        Route("/sandbox/jobs", jobs, methods=["GET"]),
        Route("/sandbox/jobs/{task_id}", jobs, methods=["GET"]),
        Route("/sandbox/faults", faults, methods=["GET", "PUT"]),
        Route("/sandbox/callbacks", callbacks, methods=["GET", "PUT"]),
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={SandboxHTTPError: _on_error, HTTPException: _on_error}
    )
    app.state.sandbox = sandbox
    return app
