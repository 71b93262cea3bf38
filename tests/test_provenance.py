"""Provenance and audit: every stored result carries the synthetic-media label (read back by Pillow, PyAV and,
where installed, exiftool) and a provenance record whose hash matches; the submitted event carries the same
facts; labels survive S3; the audit command tells a good output from a tampered one."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import c2pa
import numpy as np
import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from typer.testing import CliRunner

from faceswap_flows.cli.main import app
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.collect import store_result
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.media.staged import StagedMedia
from faceswap_flows.flows.options import BlockNames, OutputOptions, SwapOptions
from faceswap_flows.flows.provenance import labels
from faceswap_flows.flows.provenance.labels import (
    DIGITAL_SOURCE_TYPE,
    SyntheticLabel,
    draw_watermark,
    label_image,
    label_video,
    watermark_box,
)
from faceswap_flows.flows.provenance.records import RECORD_SUFFIX, job_facts, output_choices, strip_query
from faceswap_flows.flows.tasks.job import SwapOutcome
from faceswap_flows.flows.video import video_faceswap
from faceswap_flows.receiver.events import SUBMITTED, task_resource_id
from tests.optional import IN_CI, unavailable
from tests.support import RECEIVER_SECRET, SANDBOX_KEY
from tests.vision import photos

EXIFTOOL = shutil.which("exiftool")
NO_EXIFTOOL = "exiftool not installed (apt-get install libimage-exiftool-perl)"
needs_exiftool = pytest.mark.usefixtures("exiftool_installed")
FORMAT_SUFFIX = {"png": "png", "jpeg": "jpg", "webp-lossy": "webp", "webp-lossless": "webp"}
LABEL = SyntheticLabel(task_id="task-42", operation="faceswap", job_id="job-42", record_key="results/x.png.json")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def exiftool_installed() -> None:
    if EXIFTOOL is None:
        unavailable(NO_EXIFTOOL)


def exiftool(path: Path) -> dict[str, Any]:
    if EXIFTOOL is None:
        unavailable(NO_EXIFTOOL)
    found = subprocess.run([EXIFTOOL, "-j", "-G1", "-a", "-n", str(path)], capture_output=True, text=True, check=True)
    return json.loads(found.stdout)[0]


def pillow_xmp(data: bytes) -> str:
    """The XMP packet as Pillow reads it (PNG iTXt, JPEG APP1, WebP XMP chunk)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp") or ""
    return xmp.decode() if isinstance(xmp, bytes) else xmp


def encoded(fmt: str, size: tuple[int, int] = (120, 90), **options: Any) -> bytes:
    pixels = (np.random.default_rng(7).random((size[1], size[0], 4)) * 255).astype("uint8")
    image = Image.fromarray(pixels, "RGBA")
    buffer = io.BytesIO()
    (image if fmt in ("PNG", "WEBP") else image.convert("RGB")).save(buffer, format=fmt, **options)
    return buffer.getvalue()


FORMATS = {
    "png": lambda: encoded("PNG"),
    "jpeg": lambda: encoded("JPEG", quality=90),
    "webp-lossy": lambda: encoded("WEBP", quality=80),
    "webp-lossless": lambda: encoded("WEBP", lossless=True),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_image_format_is_labelled_without_touching_pixels(fmt: str) -> None:
    original = FORMATS[fmt]()
    labelled, _mime = label_image(original, LABEL)
    assert label_image(labelled, LABEL)[0].count(b"x:xmpmeta") == 2, "labelling twice replaces the label"
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(labelled)) as after:
        assert after.format == before.format and (np.asarray(after) == np.asarray(before)).all()
    xmp = pillow_xmp(labelled)
    assert f'Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}"' in xmp and 'fsf:TaskId="task-42"' in xmp
    with Image.open(io.BytesIO(labelled)) as image:
        if fmt == "png":
            assert image.info["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
            assert image.info["aifaceswap:task_id"] == "task-42" and "Synthetic media" in image.info["Description"]
        if fmt == "jpeg":
            assert image.info["comment"].startswith(b"Synthetic media: AI face swap (faceswap)")


@needs_exiftool
@pytest.mark.parametrize("fmt", FORMATS)
def test_exiftool_reads_the_image_labels(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"labelled.{FORMAT_SUFFIX[fmt]}"
    path.write_bytes(label_image(FORMATS[fmt](), LABEL)[0])
    tags = exiftool(path)
    assert tags["XMP-iptcExt:DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert tags["XMP-fsf:TaskId"] == "task-42" and tags["XMP-fsf:Operation"] == "faceswap"
    if fmt == "png":
        assert tags["PNG:DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    if fmt == "jpeg":
        assert tags["File:Comment"].startswith("Synthetic media")
    checked = subprocess.run([EXIFTOOL, "-validate", "-warning", "-error", "-a", str(path)], capture_output=True)
    assert b"Validate                        : OK" in checked.stdout, checked.stdout  # type: ignore[list-item]


def test_a_video_is_labelled_by_stream_copy(tmp_path: Path) -> None:
    source = photos.write_video(tmp_path / "in.mp4", lambda i: photos.face_video_frame(i)[0], 12)
    target = tmp_path / "out.mp4"
    label_video(source, target, LABEL.model_copy(update={"operation": "video_faceswap"}))

    def packets(path: Path) -> list[bytes]:
        with av.open(str(path)) as container:
            return [bytes(p) for p in container.demux() if p.size]

    assert packets(target) == packets(source), "the streams are copied, not re-encoded"
    with av.open(str(target)) as container:
        tags = dict(container.metadata)
    assert tags["digital_source_type"] == DIGITAL_SOURCE_TYPE and tags["aifaceswap_task_id"] == "task-42"
    assert tags["comment"].startswith("Synthetic media: AI face swap (video_faceswap)")


@needs_exiftool
def test_exiftool_reads_the_video_label(tmp_path: Path) -> None:
    source = photos.write_video(tmp_path / "in.mp4", lambda i: photos.face_video_frame(i)[0], 5)
    label_video(source, tmp_path / "out.mp4", LABEL)
    found = exiftool(tmp_path / "out.mp4")
    assert found["XMP-iptcExt:DigitalSourceType"] == found["Keys:DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert found["XMP-fsf:TaskId"] == found["Keys:AifaceswapTaskId"] == "task-42"
    assert "Warning" not in found, found


@pytest.mark.parametrize("corner", ["bottom-right", "bottom-left", "top-right", "top-left"])
def test_the_watermark_changes_only_its_corner(corner: str) -> None:
    original = encoded("PNG", (480, 360))
    with Image.open(io.BytesIO(original)) as image:
        size, before = image.size, np.asarray(image).astype(int)
    with Image.open(io.BytesIO(draw_watermark(original, "AI-GENERATED", corner))) as image:  # type: ignore[arg-type]
        after = np.asarray(image).astype(int)
    ys, xs = np.nonzero(np.abs(after - before).sum(axis=2))
    x1, y1, x2, y2 = watermark_box(size, "AI-GENERATED", corner)  # type: ignore[arg-type]
    assert len(xs) > 100 and x1 <= xs.min() and xs.max() < x2 and y1 <= ys.min() and ys.max() < y2
    assert (x2 <= size[0] / 2) == corner.endswith("left") and (y2 <= size[1] / 2) == corner.startswith("top")


def test_records_keep_no_query_strings_or_passwords() -> None:
    assert strip_query("https://u:p@bucket.s3.amazonaws.com/a/b.png?X-Amz-Signature=abc#f") == (
        "https://bucket.s3.amazonaws.com/a/b.png"
    )
    assert strip_query("inputs/abc/a.png") == "inputs/abc/a.png"
    presigned = StagedMedia("http://127.0.0.1:9/b/a.png?X-Amz-Credential=k&X-Amz-Signature=s", None, "a.png", "ab12")
    facts = job_facts({"face_images": [presigned]}, source="https://h/v.mp4?token=t", index=[1])
    assert facts.inputs[0].model_dump() == {
        "field": "face_images[0]",
        "key": None,
        "url": "http://127.0.0.1:9/b/a.png",
        "sha256": "ab12",
    }
    assert facts.parameters == {"source": "https://h/v.mp4", "index": [1]}


def stored_record(storage, outcome: SwapOutcome) -> dict[str, Any]:
    assert outcome.result_key and outcome.provenance_key == outcome.result_key + RECORD_SUFFIX
    return json.loads(storage.read_bytes(outcome.provenance_key))


def check_record(record: dict[str, Any], result: bytes, outcome: SwapOutcome) -> None:
    text = json.dumps(record)
    assert record["synthetic"] is True and record["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert record["output"]["sha256"] == sha256(result) and record["output"]["bytes"] == len(result)
    assert (record["task_id"], record["operation"], record["credits"]) == (
        outcome.task_id,
        outcome.operation,
        outcome.credits,
    )
    assert record["run_by"]["os_user"] and record["run_by"]["host"]
    for secret in (SANDBOX_KEY, RECEIVER_SECRET, "/callbacks/", "webhook", "?"):
        assert secret not in text, f"{secret!r} must not be in a provenance record"


@pytest.fixture(scope="module")
async def swapped(stack) -> tuple[SwapOutcome, str]:
    state = await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), return_state=True)
    return await state.result(), str(state.state_details.flow_run_id)


async def test_an_image_result_is_labelled_and_recorded(stack, swapped, tmp_path: Path) -> None:
    outcome, flow_run_id = swapped
    result = stack.storage.read_bytes(outcome.result_key)
    assert f'fsf:TaskId="{outcome.task_id}"' in pillow_xmp(result)
    record = stored_record(stack.storage, outcome)
    check_record(record, result, outcome)
    assert record["output"]["labelled"] and record["output"]["media_type"] == "image/png"
    assert record["flow_run"]["id"] == flow_run_id and record["parameters"]["output"]["label"] is True
    inputs = {item["field"]: item for item in record["inputs"]}
    for field, name in (("source_image", "astronaut"), ("face_image", "grace")):
        assert inputs[field]["sha256"] == sha256(stack.files[name].read_bytes())
        assert stack.storage.exists(inputs[field]["key"])
    if EXIFTOOL or IN_CI:
        path = tmp_path / "result.png"
        path.write_bytes(result)
        assert exiftool(path)["XMP-iptcExt:DigitalSourceType"] == DIGITAL_SOURCE_TYPE


async def test_the_submitted_event_carries_the_same_facts(stack, swapped) -> None:
    outcome, flow_run_id = swapped
    event_filter = EventFilter(
        event=EventNameFilter(name=[SUBMITTED]), resource=EventResourceFilter(id=[task_resource_id(outcome.task_id)])
    )
    async with get_client() as client:
        for _ in range(30):  # events reach the API's store a moment after they are emitted
            events = (await client.read_events(filter=event_filter, limit=1)).events
            if events:
                break
            await asyncio.sleep(0.5)
    payload = dict(events[0].payload)
    record = stored_record(stack.storage, outcome)
    assert payload["inputs"] == record["inputs"] and payload["flow_run"]["id"] == flow_run_id
    assert payload["points"] == record["credits"] and payload["run_by"] == record["run_by"]
    assert payload["parameters"]["label_outputs"] is True and payload["parameters"]["sign_outputs"] is True
    assert payload["digital_source_type"] == record["digital_source_type"] == DIGITAL_SOURCE_TYPE
    text = json.dumps(payload)
    for secret in (SANDBOX_KEY, RECEIVER_SECRET, "/callbacks/", "webhook", "?"):
        assert secret not in text, f"{secret!r} must not be in the submitted event"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    handler = Lines()
    logging.getLogger("prefect").addHandler(handler)
    try:
        yield handler.lines
    finally:
        logging.getLogger("prefect").removeHandler(handler)


async def test_turning_the_label_off_is_explicit_and_logged(stack, warnings_logged: list[str]) -> None:
    outcome = await faceswap(
        str(stack.files["astronaut"]), str(stack.files["grace"]), output=OutputOptions(label=False)
    )
    result = stack.storage.read_bytes(outcome.result_key)
    assert b"x:xmpmeta" not in result and b"DigitalSourceType" not in result
    record = stored_record(stack.storage, outcome)
    assert record["output"]["labelled"] is False and record["parameters"]["output"]["label"] is False
    assert record["output"]["sha256"] == sha256(result)
    assert any("output.label=False" in line and outcome.task_id in line for line in warnings_logged), warnings_logged


async def test_a_watermark_marks_only_the_chosen_corner(stack, swapped) -> None:
    plain, _ = swapped
    outcome = await faceswap(
        str(stack.files["astronaut"]),
        str(stack.files["grace"]),
        output=OutputOptions(watermark="AI-GENERATED", watermark_corner="top-left"),
    )
    result = stack.storage.read_bytes(outcome.result_key)
    assert f'fsf:TaskId="{outcome.task_id}"' in pillow_xmp(result), "a watermarked result is labelled too"
    with Image.open(io.BytesIO(stack.storage.read_bytes(plain.result_key))) as a, Image.open(io.BytesIO(result)) as b:
        before, after, size = np.asarray(a).astype(int), np.asarray(b).astype(int), a.size
    x1, y1, x2, y2 = watermark_box(size, "AI-GENERATED", "top-left")
    changed = np.abs(after - before).sum(axis=2) > 0
    assert changed[y1:y2, x1:x2].mean() > 0.3, "the watermark is drawn"
    changed[y1:y2, x1:x2] = False
    assert not changed.any(), "nothing outside the watermark changed"
    record = stored_record(stack.storage, outcome)
    assert record["output"]["watermark"] == {"text": "AI-GENERATED", "corner": "top-left"}


async def test_a_video_result_is_labelled_and_recorded(stack, tmp_path: Path) -> None:
    video = photos.write_video(tmp_path / "face.mp4", lambda i: photos.face_video_frame(i)[0], 25)
    outcome = await video_faceswap(str(video), str(stack.files["grace"]))
    result = tmp_path / "result.mp4"
    result.write_bytes(stack.storage.read_bytes(outcome.result_key))
    with av.open(str(result)) as container:
        tags = dict(container.metadata)
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 25
    assert tags["digital_source_type"] == DIGITAL_SOURCE_TYPE and tags["aifaceswap_task_id"] == outcome.task_id
    assert tags["aifaceswap_operation"] == "video_faceswap" and "Synthetic media" in tags["comment"]
    record = stored_record(stack.storage, outcome)
    check_record(record, result.read_bytes(), outcome)
    assert record["output"]["media_type"] == "video/mp4" and record["parameters"]["enhance"] == 0
    anchors = c2pa.Context.from_dict({"trust": {"trust_anchors": (stack.signing_dir / "ca.pem").read_text()}})
    with result.open("rb") as handle, c2pa.Reader("video/mp4", handle, context=anchors) as reader:
        assert reader.get_validation_state() == "Trusted", reader.get_validation_results()
        assert reader.get_active_manifest()["title"] == Path(outcome.result_key).name
    assert record["output"]["content_credentials"]["signed"] is True
    if EXIFTOOL or IN_CI:
        assert exiftool(result)["XMP-iptcExt:DigitalSourceType"] == DIGITAL_SOURCE_TYPE


def audit_cli(*args: str) -> tuple[int, str]:
    outcome = CliRunner().invoke(app, ["audit", *args])
    return outcome.exit_code, outcome.output


async def test_the_label_survives_s3(stack, s3_storage) -> None:
    await s3_storage.asave("provenance-s3", overwrite=True)
    outcome = await faceswap(
        str(stack.files["grace"]), str(stack.files["astronaut"]), blocks=BlockNames(storage="provenance-s3")
    )
    assert outcome.result_uri.startswith("s3://")
    result = s3_storage.read_bytes(outcome.result_key)
    assert f'Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}"' in pillow_xmp(result)
    record = stored_record(s3_storage, outcome)
    check_record(record, result, outcome)
    assert record["output"]["uri"] == outcome.result_uri
    code, output = await asyncio.to_thread(audit_cli, outcome.result_uri, "--storage", "provenance-s3")
    assert code == 0 and output.startswith(("TRUSTED: ", "VALID: ")) and outcome.task_id in output, output


async def test_audit_tells_a_good_output_from_a_tampered_one(stack, swapped) -> None:
    outcome, _ = swapped
    code, output = await asyncio.to_thread(audit_cli, outcome.result_key)
    assert code == 0 and output.startswith(("TRUSTED: ", "VALID: ")), output
    assert f"embedded label: {DIGITAL_SOURCE_TYPE}" in output and "{" not in output, "the record as JSON: --json"
    code, output = await asyncio.to_thread(audit_cli, outcome.result_key, "--json")
    assert json.loads(output[output.index("{") :])["task_id"] == outcome.task_id
    code, output = await asyncio.to_thread(audit_cli, stack.storage.uri(outcome.result_key))  # a local path
    assert code == 0, output

    storage, tampered = stack.storage, "results/tampered/copy.png"
    data = bytearray(storage.read_bytes(outcome.result_key))
    data[-20] ^= 0xFF
    storage.write_bytes(tampered, bytes(data))
    storage.write_bytes(tampered + RECORD_SUFFIX, storage.read_bytes(outcome.provenance_key))
    code, output = await asyncio.to_thread(audit_cli, tampered)
    assert code == 1 and output.startswith("TAMPERED: SHA-256 mismatch"), output

    storage.delete(tampered + RECORD_SUFFIX)
    code, output = await asyncio.to_thread(audit_cli, tampered)
    assert code == 1 and output.startswith("TAMPERED: ") and "no provenance record" in output, output
    code, output = await asyncio.to_thread(audit_cli, "results/nothing-here.png")
    assert code == 1 and output.startswith("NOT FOUND: ") and "neither a local file nor a key" in output, output


async def test_store_result_labels_and_records_from_the_submitted_event(stack, swapped) -> None:
    submitted_state = await faceswap(
        str(stack.files["astronaut"]), str(stack.files["grace"]), options=SwapOptions(wait=False), return_state=True
    )
    submitted = await submitted_state.result()
    stack.sandbox.wait_idle()
    stored = None
    for _ in range(30):  # the callback event is stored by the API a few seconds after the callback
        try:
            stored = await store_result(submitted.task_id)
            break
        except Exception as error:
            assert "no callback event" in str(error)
            await asyncio.sleep(1)
    assert stored is not None and stored.result_key == submitted.result_key
    result = stack.storage.read_bytes(stored.result_key)
    assert f'fsf:TaskId="{submitted.task_id}"' in pillow_xmp(result)
    record = stored_record(stack.storage, stored)
    assert record["output"]["sha256"] == sha256(result) and record["credits"] == 2
    assert record["submitted_by"]["flow_run"]["id"] == str(submitted_state.state_details.flow_run_id)
    assert {item["field"] for item in record["inputs"]} == {"source_image", "face_image"}
    assert record["inputs"] == stored_record(stack.storage, swapped[0])["inputs"], "same inputs, same facts"


async def test_the_batch_writes_one_provenance_manifest(stack, tmp_path: Path) -> None:
    manifest = tmp_path / "provenance-batch.csv"
    files = stack.files
    manifest.write_text(f"source_image,face_image\n{files['astronaut']},{files['grace']}\nmissing.png,x.png\n")
    state = await batch_faceswap(str(manifest), max_concurrency=2, force=True, return_state=True)
    assert state.is_failed() and "1 failed" in state.message
    report = await state.result(raise_on_failure=False)
    assert report.provenance_key and report.provenance_key.endswith("-provenance.json")
    items = json.loads(stack.storage.read_bytes(report.provenance_key))["items"]
    assert [item["status"] for item in items] == ["stored", "failed"] and items[1]["record"] is None
    stored = items[0]
    result = stack.storage.read_bytes(stored["record"]["output"]["key"])
    assert stored["record"]["output"]["sha256"] == sha256(result) and stored["record"]["parameters"]["batch_item"] == 0
    assert stored["record"] == json.loads(stack.storage.read_bytes(stored["provenance_key"]))


def test_audit_still_reads_records_written_with_the_earlier_iptc_term(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic"
    assert DIGITAL_SOURCE_TYPE.endswith("/compositeWithTrainedAlgorithmicMedia")
    assert "compositeWithTrainedAlgorithmicMedia" in LABEL.description
    assert legacy in labels.LEGACY_DIGITAL_SOURCE_TYPES
    monkeypatch.setattr(labels, "DIGITAL_SOURCE_TYPE", legacy)  # a result labelled by an earlier version
    result = tmp_path / "old.png"
    result.write_bytes(label_image(FORMATS["png"](), LABEL)[0])
    monkeypatch.undo()
    record = {
        "record": "faceswap-flows/provenance/1",
        "digital_source_type": legacy,
        "operation": "faceswap",
        "task_id": "task-42",
        "output": {"sha256": sha256(result.read_bytes())},
    }
    Path(f"{result}{RECORD_SUFFIX}").write_text(json.dumps(record))
    code, output = audit_cli(str(result))
    assert code == 0 and f"embedded label: {legacy}" in output, output
    assert "written with the earlier IPTC term" in output and "C2PA manifest: none" in output, output


async def test_a_record_names_the_output_options_as_the_flows_do_and_old_records_still_audit(
    stack, swapped, tmp_path: Path
) -> None:
    """A record keeps the output options under ``parameters.output``, named as the flows' ``output`` parameter
    names them (``output.label``, ``output.sign``); a record written before, with ``parameters.label_outputs`` and
    ``sign_outputs``, still audits and reads the same, the audit saying its names are old."""
    outcome, _ = swapped
    record = stored_record(stack.storage, outcome)
    choices = {"label": True, "sign": True, "signing_block": "faceswap-signing", "watermark": None}
    assert record["parameters"]["output"] == {**choices, "watermark_corner": "bottom-right"}
    assert not {"label_outputs", "sign_outputs", "watermark", "signing_block"} & set(record["parameters"])
    flat = {"label_outputs": True, "sign_outputs": True, "signing_block": "faceswap-signing", "watermark": None}
    kept = {name: value for name, value in record["parameters"].items() if name != "output"}
    old = {**record, "parameters": {**kept, **flat, "watermark_corner": "bottom-right"}}
    assert output_choices(old["parameters"]) == output_choices(record["parameters"]) == record["parameters"]["output"]
    for name, written in (("new", record), ("old", old)):
        result = tmp_path / f"{name}.png"
        result.write_bytes(stack.storage.read_bytes(outcome.result_key))
        Path(f"{result}{RECORD_SUFFIX}").write_text(json.dumps(written))
        code, output = await asyncio.to_thread(audit_cli, str(result), "--allow-untrusted")
        assert code == 0 and output.startswith(("TRUSTED: ", "VALID: ")), output
        said = "record: written with the old field names (parameters.label_outputs -> parameters.output.label, "
        assert (said in output) == (name == "old"), output
    assert "parameters.sign_outputs -> parameters.output.sign" in output
