"""The webhook receiver: the API calls back here; each valid callback is kept in the inbox, acknowledged,
and emitted as a Prefect event."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faceswap_flows.aifaceswap.http_server import BackgroundServer
from faceswap_flows.receiver.events import Emitter
from faceswap_flows.receiver.inbox import GroupCommitter, Inbox, InboxEntry, Outcome
from faceswap_flows.receiver.openapi import openapi_route
from faceswap_flows.receiver.parsing import UnreadableCallback, found_task_id, parse_callback
from faceswap_flows.receiver.tokens import DEFAULT_MAX_AGE_SECONDS, JobToken, TokenError, challenge_answer, verify
from faceswap_flows.receiver.unparsed import UnparsedEmitter, UnparsedInbox

logger = logging.getLogger("faceswap.receiver")

MAX_CALLBACK_BYTES = 64 * 1024
CALLBACK_PATH = "/callbacks"
CHALLENGE_PATH = "/challenge"
UNAUTHORIZED = "send 'Authorization: Bearer <the receiver's signing secret>'"


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "refused", "error": message}, status_code=status)


async def _read_limited(request: Request) -> bytes | None:
    """The body, or None when it is larger than MAX_CALLBACK_BYTES (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > MAX_CALLBACK_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_CALLBACK_BYTES:
            return None
    return bytes(body)


async def _http_refusal(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in the receiver's JSON shape."""
    assert isinstance(error, HTTPException)
    return _refuse(error.status_code, f"{request.method} {request.url.path}: {error.detail}")


def _described(entry: InboxEntry) -> dict[str, object]:
    return {
        "callback": entry.callback.model_dump(mode="json"),
        "job": entry.job.model_dump(mode="json"),
        "received_at": entry.received_at,
        "emitted_at": entry.emitted_at,
        "deliveries": entry.deliveries,
    }


class ReceiverApp:
    """The receiver's state (inbox, group committer, event emitters) and its routes' handlers."""

    def __init__(self, inbox_path: str | Path, secret: str, max_token_age: float) -> None:
        if not secret:
            raise ValueError("the receiver needs a signing secret: set FACESWAP_RECEIVER_SECRET or pass --secret")
        self.secret, self.max_token_age = secret, max_token_age
        self.inbox = Inbox(inbox_path)
        self.committer = GroupCommitter(self.inbox)
        self.emitter = Emitter(self.inbox)
        self.unparsed = UnparsedInbox(inbox_path)
        self.unparsed_emitter = UnparsedEmitter(self.unparsed)

    async def callback(self, request: Request) -> Response:
        try:
            job = verify(request.path_params["token"], self.secret, max_age_seconds=self.max_token_age)
        except TokenError as error:
            logger.warning("callback refused: %s", error)
            return _refuse(error.status, str(error))
        body = await _read_limited(request)
        if body is None:
            return _refuse(413, f"callback body larger than {MAX_CALLBACK_BYTES} bytes")
        content_type = request.headers.get("content-type", "")
        try:
            parsed = await parse_callback(body, content_type)
        except UnreadableCallback as error:
            return await self.keep_unparsed(job, body, content_type, error)
        try:
            outcome = await self.committer.record(job, parsed)
        except sqlite3.Error as error:
            logger.error("callback of %s for job %s NOT kept, the inbox failed: %s", parsed.task_id, job.job_id, error)
            return _refuse(503, f"the inbox could not keep this callback ({error}): send it again")
        if outcome is Outcome.CONFLICT:
            logger.warning("callback of %s refused: task is bound to another job than %s", parsed.task_id, job.job_id)
            return _refuse(409, "this task_id already belongs to another job (replayed callback)")
        if outcome is Outcome.DUPLICATE_JOB:
            logger.warning("job %s called back from a second task %s: kept, duplicate-job", job.job_id, parsed.task_id)
        if outcome in (Outcome.NEW, Outcome.DUPLICATE_JOB):
            self.emitter.wake()
        return JSONResponse({"status": outcome.value, "task_id": parsed.task_id})

    async def keep_unparsed(self, job: JobToken, body: bytes, content_type: str, error: UnreadableCallback) -> Response:
        """A verified callback that cannot be read: kept raw, answered 200 (the service must not give up on it)."""
        if await asyncio.to_thread(self.unparsed.record, job, body, content_type, error.fields, str(error)):
            self.unparsed_emitter.wake()
        logger.error("unparsed callback of job %s kept raw (%d bytes): %s", job.job_id, len(body), error)
        return JSONResponse({"status": "unparsed", "task_id": found_task_id(error.fields), "error": str(error)})

    def authorized(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self.secret.encode())

    async def task_status(self, request: Request) -> Response:
        if not self.authorized(request):
            return _refuse(401, UNAUTHORIZED)
        if "job_id" in request.path_params:
            entry = await asyncio.to_thread(self.inbox.get_by_job, request.path_params["job_id"])
        else:
            entry = await asyncio.to_thread(self.inbox.get, request.path_params["task_id"])
        if entry is None:
            return _refuse(404, "no callback received for this task yet")
        return JSONResponse(_described(entry))

    async def received(self, request: Request) -> Response:
        """``GET /callbacks?since=<epoch seconds>&store_by=sweep&limit=500``: what arrived since then, oldest
        first (the store-results sweep reads it: exact and immediate, where stored events may lag)."""
        if not self.authorized(request):
            return _refuse(401, UNAUTHORIZED)
        try:
            since = float(request.query_params.get("since", "0"))
            limit = min(max(int(request.query_params.get("limit", "500")), 1), 5000)
        except ValueError:
            return _refuse(422, "since must be epoch seconds and limit a whole number")
        store_by = request.query_params.get("store_by")
        entries = await asyncio.to_thread(self.inbox.received_since, since, store_by=store_by, limit=limit)
        return JSONResponse({"callbacks": [_described(entry) for entry in entries]})

    async def challenge(self, request: Request) -> Response:
        """``POST /challenge {"nonce": "<hex>"}``: ``answer`` proves this receiver holds the secret (see
        tokens.challenge_answer), ``inbox`` says whether a callback could be written to the inbox now."""
        body = await _read_limited(request)
        try:
            nonce = json.loads(body or b"null")["nonce"]
            answer = challenge_answer(self.secret, nonce)
        except (ValueError, TypeError, KeyError) as error:
            return _refuse(422, f'send {{"nonce": "<32 to 128 lowercase hex digits>"}} as JSON ({error})')
        problem = await asyncio.to_thread(self.inbox.probe_write)
        return JSONResponse({"answer": answer, "inbox": {"writable": problem is None, "error": problem}})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", **self.inbox.counts()})

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(self.emitter.run(), name="emit-callback-events")
        unparsed_task = asyncio.create_task(self.unparsed_emitter.run(), name="emit-unparsed-callbacks")
        try:
            yield
        finally:
            task.cancel()
            unparsed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(asyncio.CancelledError):
                await unparsed_task
            self.unparsed.close()
            await self.committer.close()
            self.inbox.close()


def create_app(inbox_path: str | Path, secret: str, *, max_token_age: float = DEFAULT_MAX_AGE_SECONDS) -> Starlette:
    """The receiver as an ASGI app. ``app.state.inbox`` / ``app.state.emitter`` expose its state."""
    receiver = ReceiverApp(inbox_path, secret, max_token_age)
    app = Starlette(
        routes=[
            Route(f"{CALLBACK_PATH}/{{token}}", receiver.callback, methods=["POST"]),
            Route(CALLBACK_PATH, receiver.received, methods=["GET"]),
            Route("/tasks/{task_id}", receiver.task_status, methods=["GET"]),
            Route("/jobs/{job_id}", receiver.task_status, methods=["GET"]),
            Route(CHALLENGE_PATH, receiver.challenge, methods=["POST"]),
            Route("/health", receiver.health, methods=["GET"]),
            Route("/openapi.json", openapi_route, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
        exception_handlers={HTTPException: _http_refusal},
    )
    app.state.inbox = receiver.inbox
    app.state.emitter = receiver.emitter
    app.state.unparsed = receiver.unparsed
    return app


class ReceiverServer(BackgroundServer):
    """A receiver on loopback in a background thread (tests, the demo)."""

    def __init__(self, inbox_path: str | Path, secret: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_app(inbox_path, secret)
        super().__init__(self.app, host=host, port=port)

    @property
    def inbox(self) -> Inbox:
        return self.app.state.inbox
