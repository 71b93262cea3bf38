"""Issue 21.2: property tests (Hypothesis, seeded and bounded) of every parser of outside input: job tokens,
the wire models, batch manifests, storage keys and the names built from user input, callback bodies."""

from __future__ import annotations

import csv
import io
import json
import posixpath
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import (
    Envelope,
    ExtractBase64FaceRequest,
    ExtractFaceRequest,
    FaceBox,
    FaceSwapRequest,
    MultiFaceSwapRequest,
    MultiVideoFaceSwapRequest,
    TaskCallback,
    VideoFaceSwapRequest,
    describe_validation_error,
)
from faceswap_flows.blocks import MediaStorage, StorageError
from faceswap_flows.flows.batch.rows import ManifestLine, decode_manifest, parse_manifest_lines
from faceswap_flows.flows.tasks.artifacts import artifact_key
from faceswap_flows.flows.tasks.media import local_name
from faceswap_flows.receiver.parsing import UnreadableCallback, parse_callback
from faceswap_flows.receiver.tokens import JobToken, TokenError, sign, verify

CASES = settings(
    max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
SECRET = "property-secret"

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),  # json.loads reads NaN, Infinity
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=6),
    max_leaves=25,
)
MODELS = [
    FaceSwapRequest,
    ExtractFaceRequest,
    MultiFaceSwapRequest,
    VideoFaceSwapRequest,
    ExtractBase64FaceRequest,
    MultiVideoFaceSwapRequest,
    TaskCallback,
    FaceBox,
    Envelope[dict[str, Any]],
]


def _fields_of(model: type) -> set[str]:
    return set(getattr(model, "model_fields", {}))


# ---- tokens -----------------------------------------------------------------------------------------------


@CASES
@given(
    job_id=st.text(min_size=8, max_size=64),
    operation=st.text(max_size=40),
    flow_run_id=st.none() | st.text(max_size=40),
    result_key=st.none() | st.text(max_size=80),
    store_by=st.sampled_from(["flow", "trigger", "sweep"]),
    secret=st.text(min_size=1, max_size=40),
)
def test_a_signed_token_verifies_to_the_same_job(job_id, operation, flow_run_id, result_key, store_by, secret) -> None:
    job = JobToken(
        job_id=job_id, operation=operation, flow_run_id=flow_run_id, result_key=result_key, store_by=store_by
    )
    try:
        secret.encode()
    except UnicodeEncodeError:
        return  # a secret with a lone surrogate cannot be configured (environment, block): not a case
    token = sign(job, secret)
    assert token.isascii() and "/" not in token
    assert verify(token, secret) == job
    with pytest.raises(TokenError) as forged:
        verify(token, secret + "x")
    assert forged.value.status == 403


@CASES
@given(text=st.text(max_size=400) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_string_verifies_or_raises_the_token_error(text: str) -> None:
    try:
        job = verify(text, SECRET)
    except TokenError as error:
        assert error.status in (403, 404, 410) and str(error)
    else:
        assert isinstance(job, JobToken)


@CASES
@given(payload=JSON)
def test_a_signed_payload_that_is_no_job_is_unknown(payload: Any) -> None:
    """Even a correctly signed token whose content is anything but a job is a 404, never a crash."""
    from faceswap_flows.receiver.tokens import _b64, _signature

    body = _b64(json.dumps(payload).encode())
    try:
        verify(f"{body}.{_signature(SECRET, body)}", SECRET)
    except TokenError as error:
        assert error.status in (404, 410)


# ---- wire models ------------------------------------------------------------------------------------------


@CASES
@given(model=st.sampled_from(MODELS), data=JSON)
def test_any_json_validates_or_names_the_field(model: type, data: Any) -> None:
    try:
        model.model_validate(data)
    except ValidationError as error:
        described = describe_validation_error(error)
        assert described
        given_keys = {str(k) for k in data} if isinstance(data, dict) else set()
        known = _fields_of(model) | given_keys
        for item in error.errors():
            named = [str(part) for part in item["loc"] if not str(part).startswith(("function-", "union"))]
            assert not named or named[0] in known or named[0].isdigit() or named[0] in ("list", "dict"), item
            assert (named[0] if named else error.title) in described


@CASES
@given(
    success=st.sampled_from([0, 1, "0", "1", " 1 ", "1.0", 1.0, True, False, "true", "no"]),
    type_=st.sampled_from([None, 1, 2, "1", "2", 2.0]),
    task_id=st.text(string.ascii_letters + string.digits, min_size=1, max_size=40) | st.integers(0, 10**12),
    extra=st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8), st.text(max_size=20), max_size=3),
    encoding=st.sampled_from(["json", "form", "multipart", "form-as-text"]),
)
async def test_a_callback_reads_the_same_in_every_encoding(success, type_, task_id, extra, encoding) -> None:
    fields: dict[str, Any] = {k: v for k, v in extra.items() if k not in ("success", "type", "task_id", "result_image")}
    fields.update(success=success, task_id=task_id, result_image="http://127.0.0.1:9/r.png")
    if type_ is not None:
        fields["type"] = type_
    body, content_type = _encoded(fields, encoding)
    callback = await parse_callback(body, content_type)
    assert callback.task_id == str(task_id)
    assert callback.success == (1 if str(success).strip() in ("1", "1.0", "True", "true") else 0)
    assert callback.type == (int(float(type_)) if type_ is not None else 1)


@CASES
@given(body=st.binary(max_size=600), content_type=st.text(max_size=60))
async def test_any_callback_body_reads_or_is_unreadable(body: bytes, content_type: str) -> None:
    try:
        await parse_callback(body, content_type)
    except UnreadableCallback as error:
        assert str(error) and isinstance(error.fields, dict)


def _encoded(fields: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    from urllib.parse import urlencode

    if encoding == "json":
        return json.dumps(fields).encode(), "application/json"
    text = {k: str(v) for k, v in fields.items()}
    if encoding == "form":
        return urlencode(text).encode(), "application/x-www-form-urlencoded"
    if encoding == "form-as-text":
        return urlencode(text).encode(), "text/plain"
    boundary = "fuzzboundary7MA4YWxkTrZu0gW"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in text.items()]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


# ---- manifests --------------------------------------------------------------------------------------------

CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


def _each_line_parses_or_names_itself(lines: list[ManifestLine], text: str) -> None:
    """Every line either is a job or is refused with an error that starts with its own (real) line number."""
    for line in lines:
        assert (line.row is None) != (line.error is None)
        if line.error is not None:
            assert line.line is not None and line.error.startswith(f"manifest line {line.line}: ")
            assert 1 <= line.line <= max(1, len(text.splitlines()), text.count("\n") + 1)


@CASES
@given(lines=st.lists(st.text(max_size=80) | JSON.map(json.dumps), max_size=8))
def test_any_jsonl_line_parses_or_is_refused_with_its_number(lines: list[str]) -> None:
    text = "\n".join(lines)
    parsed = parse_manifest_lines(text, "jsonl")
    _each_line_parses_or_names_itself(parsed, text)
    with_content = [number for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    assert [line.line for line in parsed] == with_content, "one entry per line with content, in order"


@CASES
@given(rows=st.lists(st.tuples(CELL, CELL, st.none() | CELL), min_size=1, max_size=6))
def test_a_written_csv_manifest_reads_back(rows: list[tuple[str, str, str | None]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source_image", "face_image", "id"])
    writer.writerows([(s, f, "" if i is None else i) for s, f, i in rows])
    parsed = parse_manifest_lines(buffer.getvalue(), "csv")
    _each_line_parses_or_names_itself(parsed, buffer.getvalue())
    expected: list[object] = []
    for source, face, given_id in rows:
        if not any(cell.strip() for cell in (source, face, given_id or "")):
            continue  # a blank record is no line of work
        complete = source.strip() and face.strip()
        expected.append((source, face, given_id if given_id and given_id.strip() else None) if complete else "refused")
    got = [(line.row.source_image, line.row.face_image, line.row.id) if line.row else "refused" for line in parsed]
    assert got == expected


@CASES
@given(text=st.text(max_size=300))
def test_any_csv_text_parses_or_is_refused_with_a_line_number(text: str) -> None:
    _each_line_parses_or_names_itself(parse_manifest_lines(text, "csv"), text)


@CASES
@given(data=st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused_with_a_line_number(data: bytes) -> None:
    try:
        decode_manifest(data, "m.csv")
    except InputValidationError as error:
        assert str(error).startswith("manifest m.csv line ") and "UTF-8" in str(error)


# ---- storage keys and names built from user input ---------------------------------------------------------

KEYS = st.text(max_size=60) | st.lists(
    st.sampled_from(["..", ".", "", "a", "/", "\\", "~", "b.png", "\x00"]), max_size=8
).map("/".join)


@CASES
@given(key=KEYS)
def test_no_storage_key_leaves_the_base(tmp_path_factory, key: str) -> None:
    storage = MediaStorage(basepath="/srv/media/base")
    try:
        path = storage.path_of(key)
    except StorageError as error:
        assert "key" in str(error)
        return
    assert ".." not in path.split("/")
    assert posixpath.normpath(path).startswith("/srv/media/base/"), path
    assert posixpath.normpath(path) != "/srv/media/base"


@CASES
@given(key=KEYS)
def test_no_s3_key_leaves_the_prefix(key: str) -> None:
    storage = MediaStorage(basepath="s3://bucket/prefix")
    try:
        path = storage.path_of(key)
    except StorageError:
        return
    assert posixpath.normpath(path).startswith("bucket/prefix/") and ".." not in path.split("/")


@CASES
@given(name=st.text(max_size=60))
def test_artifact_keys_are_plain(name: str) -> None:
    assert set(artifact_key(name)) <= set(string.ascii_lowercase + string.digits + "-")


@CASES
@given(name=KEYS | st.text(max_size=40).map(lambda s: f"http://h/{s}"))
def test_a_local_name_from_user_input_stays_in_its_folder(name: str) -> None:
    folder = Path("/work/downloads")
    target = folder / local_name(name, "input.mp4")
    assert target.parent == folder and target.name not in ("", ".", "..") and "\x00" not in target.name
