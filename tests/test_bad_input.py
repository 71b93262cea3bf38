"""Bad input, table-driven: every kind gets a clear error naming the field (and the fix), and the sandbox's
ledger shows no credit spent. Video refusals (trim, corrupt or empty video, enhance, refs, frame_time,
budget) are in test_video_flows.py; together they cover more than 40 kinds."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from faceswap_flows.aifaceswap import AIFaceSwapClient, InputValidationError, InvalidRequestError
from faceswap_flows.blocks import StorageError
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.budget import BudgetExceeded
from faceswap_flows.flows.image import extract_faces, faceswap, multi_faceswap
from faceswap_flows.flows.options import BlockNames, SwapOptions
from faceswap_flows.flows.tasks.api import JobFailed
from faceswap_flows.flows.video import multi_video_faceswap, video_faceswap
from faceswap_flows.receiver import JobToken, sign
from tests.support import RECEIVER_SECRET, SANDBOX_KEY


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[object, dict[str, Path]], Awaitable[object]]
    error: type[BaseException]
    says: str


@pytest.fixture(scope="module")
def bad(stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "no-header.csv").write_text("source,face\na.png,b.png\n")
    (folder / "empty.jsonl").write_text("\n")
    return {
        **stack.files,
        "missing": folder / "missing.png",
        "missing_video": folder / "missing.mp4",
        "no_header": folder / "no-header.csv",
        "empty_manifest": folder / "empty.jsonl",
        "missing_manifest": folder / "nope.csv",
    }


def f(files: dict[str, Path], name: str) -> str:
    return str(files[name])


FLOW_CASES = [
    Case(
        "missing source file",
        lambda s, x: faceswap(f(x, "missing"), f(x, "grace")),
        InputValidationError,
        "source_image: '",
    ),
    Case(
        "source is not an image",
        lambda s, x: faceswap(f(x, "note"), f(x, "grace")),
        InputValidationError,
        "source_image: ",
    ),
    Case("empty source file", lambda s, x: faceswap(f(x, "empty"), f(x, "grace")), InputValidationError, "is empty"),
    Case(
        "face is not an image",
        lambda s, x: faceswap(f(x, "astronaut"), f(x, "note")),
        InputValidationError,
        "face_image: ",
    ),
    Case(
        "URL that is not http(s)",
        lambda s, x: faceswap("ftp://example.com/a.png", f(x, "grace")),
        InputValidationError,
        "source_image: 'ftp://",
    ),
    Case(
        "unreachable URL",
        lambda s, x: faceswap("http://127.0.0.1:9/a.png", f(x, "grace")),
        InvalidRequestError,
        "source_image: could not fetch",
    ),
    Case(
        "URL answering 404",
        lambda s, x: faceswap(f"{s.media_server.url}/gone.png", f(x, "grace")),
        InvalidRequestError,
        "source_image: could not fetch",
    ),
    Case(
        "no face in the face image",
        lambda s, x: faceswap(f(x, "astronaut"), f(x, "cat")),
        JobFailed,
        "failed (success 0, no reason given). Likely cause: no face found in `face_image`",
    ),
    Case(
        "budget too small",
        lambda s, x: faceswap(f(x, "astronaut"), f(x, "grace"), options=SwapOptions(max_credits=1)),
        BudgetExceeded,
        "max_credits: this needs 2",
    ),
    Case(
        "unknown credentials block",
        lambda s, x: faceswap(f(x, "astronaut"), f(x, "grace"), blocks=BlockNames(credentials="nope")),
        ValueError,
        "AIFaceSwapCredentials block named 'nope'",
    ),
    Case(
        "storage key leaving basepath",
        lambda s, x: faceswap("../../no-such-dir/a.png", f(x, "grace")),
        StorageError,
        "leaves basepath",
    ),
    Case(
        "index out of range",
        lambda s, x: multi_faceswap(f(x, "group"), [f(x, "grace")], face_indexes=[3]),
        InvalidRequestError,
        "index[0]: face 3 does not exist",
    ),
    Case(
        "duplicate index",
        lambda s, x: multi_faceswap(f(x, "group"), [f(x, "grace")] * 2, face_indexes=[1, 1]),
        InputValidationError,
        "index: each face may be replaced once",
    ),
    Case(
        "negative index",
        lambda s, x: multi_faceswap(f(x, "group"), [f(x, "grace")], face_indexes=[-1]),
        InputValidationError,
        "index: face indexes start at 0",
    ),
    Case(
        "lengths that differ",
        lambda s, x: multi_faceswap(f(x, "group"), [f(x, "grace")], face_indexes=[0, 1]),
        InputValidationError,
        "face_images: give one face image per face",
    ),
    Case(
        "neither indexes nor references",
        lambda s, x: multi_faceswap(f(x, "group"), [f(x, "grace")]),
        InputValidationError,
        "face_images: ",
    ),
    Case(
        "image flow on a missing image", lambda s, x: extract_faces(f(x, "missing")), InputValidationError, "image: '"
    ),
    Case(
        "video that does not exist",
        lambda s, x: video_faceswap(f(x, "missing_video"), f(x, "grace")),
        InputValidationError,
        "source_video: '",
    ),
    Case(
        "an image given as the video",
        lambda s, x: video_faceswap(f(x, "astronaut"), f(x, "grace")),
        InputValidationError,
        "source_video: ",
    ),
    Case(
        "duplicate video face indexes",
        lambda s, x: multi_video_faceswap(f(x, "astronaut"), [f(x, "grace")] * 2, face_indexes=[0, 0]),
        InputValidationError,
        "face_indexes: [0, 0] repeats",
    ),
    Case(
        "manifest that does not exist",
        lambda s, x: batch_faceswap(f(x, "missing_manifest")),
        InputValidationError,
        "manifest: ",
    ),
    Case(
        "manifest without the columns",
        lambda s, x: batch_faceswap(f(x, "no_header")),
        InputValidationError,
        "manifest line 1: source_image",
    ),
    Case("empty manifest", lambda s, x: batch_faceswap(f(x, "empty_manifest")), InputValidationError, "no items"),
]


@pytest.mark.parametrize("case", FLOW_CASES, ids=[c.name for c in FLOW_CASES])
async def test_flows_refuse_bad_input_for_free(stack, bad, case: Case) -> None:
    before = stack.spent()
    with pytest.raises(case.error) as caught:
        await case.run(stack, bad)
    assert case.says in str(caught.value)
    stack.sandbox.wait_idle()
    assert stack.spent() == before, "no credit spent (a job that fails is refunded)"


CLIENT_CASES = [
    (
        "webhook that is not http(s)",
        lambda c: c.faceswap("https://a/b.png", "https://a/c.png", webhook="tcp://x"),
        "webhook: must be an absolute http(s) URL",
    ),
    (
        "base64 that is not an image",
        lambda c: c.extract_base64_face(base64.b64encode(b"text").decode()),
        "base64_img: decodes to bytes that are not an image",
    ),
    (
        "video duration of zero",
        lambda c: c.video_faceswap("https://a/v.mp4", "https://a/f.png", 0, webhook="https://h"),
        "duration: must be the video's length in seconds",
    ),
]


@pytest.mark.parametrize(("name", "call", "says"), CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES])
async def test_client_refuses_before_sending(stack, name, call, says) -> None:
    before = stack.spent()
    async with AIFaceSwapClient(SANDBOX_KEY, base_url=stack.sandbox.url) as client:
        with pytest.raises(InputValidationError, match=says.replace("(", r"\(").replace(")", r"\)")):
            await call(client)
    assert stack.spent() == before


def _job() -> JobToken:
    return JobToken(job_id=uuid.uuid4().hex, operation="faceswap")


def _ok(task_id: str) -> dict:
    return {"success": 1, "type": 1, "task_id": task_id, "result_image": "http://127.0.0.1:9/r.png"}


RECEIVER_CASES = [
    ("forged token", lambda: sign(_job(), "not-the-secret"), _ok, 403, "forged"),
    ("unknown job token", lambda: "garbage", _ok, 404, "unknown job"),
    (
        "expired token",
        lambda: sign(_job().model_copy(update={"issued_at": int(time.time()) - 9 * 86400}), RECEIVER_SECRET),
        _ok,
        410,
        "expired",
    ),
    (
        "oversized body",
        lambda: sign(_job(), RECEIVER_SECRET),
        lambda t: {**_ok(t), "pad": "x" * 70_000},
        413,
        "larger than",
    ),
    # a verified token's unreadable body is kept raw as unparsed and answered 200 (issue 14.5), never lost
    ("malformed JSON", lambda: sign(_job(), RECEIVER_SECRET), lambda t: "{", 200, "not JSON"),
    (
        "success without result_image",
        lambda: sign(_job(), RECEIVER_SECRET),
        lambda t: {"success": 1, "type": 1, "task_id": t},
        200,
        "result_image",
    ),
    (
        "success that is not 0 or 1",
        lambda: sign(_job(), RECEIVER_SECRET),
        lambda t: {**_ok(t), "success": 2},
        200,
        "success",
    ),
    (
        "callback without task_id",
        lambda: sign(_job(), RECEIVER_SECRET),
        lambda t: {"success": 0, "type": 1},
        200,
        "task_id",
    ),
]


@pytest.mark.parametrize(
    ("name", "token", "body", "status", "says"), RECEIVER_CASES, ids=[c[0] for c in RECEIVER_CASES]
)
def test_receiver_refuses_bad_callbacks(stack, name, token, body, status, says) -> None:
    task_id = uuid.uuid4().hex
    payload = body(task_id)
    content = payload if isinstance(payload, str) else json.dumps(payload)
    response = httpx.post(
        f"{stack.receiver.url}/callbacks/{token()}", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status and says in response.json()["error"]
    assert response.json()["status"] == ("unparsed" if status == 200 else "refused")
    assert stack.receiver.inbox.get(task_id) is None, "no callback accepted, no succeeded/failed event"


def test_receiver_refuses_a_task_id_replayed_for_another_job(stack) -> None:
    first, second = sign(_job(), RECEIVER_SECRET), sign(_job(), RECEIVER_SECRET)
    task_id = uuid.uuid4().hex
    assert httpx.post(f"{stack.receiver.url}/callbacks/{first}", json=_ok(task_id)).status_code == 200
    replayed = httpx.post(f"{stack.receiver.url}/callbacks/{second}", json=_ok(task_id))
    assert replayed.status_code == 409 and "replayed" in replayed.json()["error"]


def test_there_are_at_least_thirty_kinds() -> None:
    assert len(FLOW_CASES) + len(CLIENT_CASES) + len(RECEIVER_CASES) + 1 >= 30
