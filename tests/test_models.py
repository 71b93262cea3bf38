"""The wire models: every validation error names its field and says how to fix it."""

import base64
import io
import struct
import zlib

import pytest

from faceswap_flows.aifaceswap import FaceBox, InputValidationError, TaskCallback
from faceswap_flows.aifaceswap.models import (
    Envelope,
    ExtractBase64FaceRequest,
    ExtractFaceData,
    FaceSwapRequest,
    FileInput,
    MultiFaceSwapRequest,
    MultiVideoFaceSwapRequest,
    VideoFaceSwapRequest,
    sniff_image_type,
    validate_model,
)


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x00\xff\x00\x00"
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


PNG_B64 = base64.b64encode(tiny_png()).decode()
URL = "https://cdn.example.com/a.jpg"
HOOK = "https://hooks.example.com/cb"
REF = {"face_ref": PNG_B64, "face_url": URL}
VIDEO = {"source_video": "https://cdn.example.com/v.mp4", "face_image": URL, "duration": 5, "webhook": HOOK}

BAD_INPUTS = [
    (FaceSwapRequest, {"source_image": "photo.jpg", "face_image": URL, "webhook": HOOK}, "source_image", "upload"),
    (FaceSwapRequest, {"source_image": URL, "face_image": "ftp://x/y.jpg", "webhook": HOOK}, "face_image", "http(s)"),
    (FaceSwapRequest, {"source_image": URL, "face_image": URL, "webhook": "/cb"}, "webhook", "receiver"),
    (FaceSwapRequest, {"source_image": URL, "face_image": URL}, "webhook", "is required: add it"),
    (FaceSwapRequest, {"source_image": URL, "face_image": URL, "webhook": HOOK, "extra": 1}, "extra", "not permitted"),
    (FaceSwapRequest, {"source_image": "", "face_image": URL, "webhook": HOOK}, "source_image", "http(s)"),
    (
        MultiFaceSwapRequest,
        {"source_image": URL, "face_image": [URL, URL], "index": [0], "webhook": HOOK},
        "face_image has 2 URLs but index has 1",
        "one index per face image",
    ),
    (
        MultiFaceSwapRequest,
        {"source_image": URL, "face_image": [URL, URL], "index": [1, 1], "webhook": HOOK},
        "index",
        "remove duplicates",
    ),
    (
        MultiFaceSwapRequest,
        {"source_image": URL, "face_image": [URL], "index": [-1], "webhook": HOOK},
        "index",
        "start at 0",
    ),
    (
        MultiFaceSwapRequest,
        {"source_image": URL, "face_image": [], "index": [], "webhook": HOOK},
        "face_image",
        "at least 1",
    ),
    (VideoFaceSwapRequest, {**VIDEO, "enhance": 3}, "enhance", "0 (no enhance), 1"),
    (VideoFaceSwapRequest, {**VIDEO, "duration": 0}, "duration", "read it from the file"),
    (VideoFaceSwapRequest, {**VIDEO, "duration": -2.5}, "duration", "> 0"),
    (VideoFaceSwapRequest, {**VIDEO, "duration": "long"}, "duration", "seconds"),
    (VideoFaceSwapRequest, {**VIDEO, "source_video": "video.mp4"}, "source_video", "upload"),
    (ExtractBase64FaceRequest, {"base64_img": "not base64!"}, "base64_img", "base64.b64encode"),
    (ExtractBase64FaceRequest, {"base64_img": base64.b64encode(b"hello world").decode()}, "base64_img", "not an image"),
    (ExtractBase64FaceRequest, {"base64_img": ""}, "base64_img", "non-empty"),
    (
        MultiVideoFaceSwapRequest,
        {"source_video": URL, "ref_info": [REF] * 4, "duration": 2, "webhook": HOOK},
        "ref_info",
        "1 to 3 faces",
    ),
    (
        MultiVideoFaceSwapRequest,
        {"source_video": URL, "ref_info": [], "duration": 2, "webhook": HOOK},
        "ref_info",
        "1 to 3 faces",
    ),
    (
        MultiVideoFaceSwapRequest,
        {"source_video": URL, "ref_info": [{"face_ref": "xx", "face_url": URL}], "duration": 2, "webhook": HOOK},
        "ref_info.0.face_ref",
        "base64",
    ),
    (
        MultiVideoFaceSwapRequest,
        {"source_video": URL, "ref_info": [{"face_ref": PNG_B64, "face_url": "x"}], "duration": 2, "webhook": HOOK},
        "ref_info.0.face_url",
        "http(s)",
    ),
]


@pytest.mark.parametrize(("model", "body", "field", "fix"), BAD_INPUTS)
def test_bad_input_names_field_and_fix(model, body, field, fix) -> None:
    with pytest.raises(InputValidationError) as caught:
        validate_model(model, body)
    assert field in str(caught.value)
    assert fix.lower() in str(caught.value).lower()


def test_good_requests_round_trip_to_the_spec_bodies() -> None:
    body = {"source_image": URL, "face_image": [URL, URL], "index": [0, 2], "webhook": HOOK}
    assert validate_model(MultiFaceSwapRequest, body).model_dump(mode="json") == body
    video = validate_model(VideoFaceSwapRequest, {**VIDEO, "enhance": 2}).model_dump(mode="json")
    assert video == {**VIDEO, "duration": 5.0, "enhance": 2}
    multi = validate_model(
        MultiVideoFaceSwapRequest, {"source_video": URL, "ref_info": [REF], "duration": 5, "webhook": HOOK}
    )
    assert multi.model_dump(mode="json")["ref_info"] == [REF]
    assert MultiVideoFaceSwapRequest.path() == "/api/aifaceswap/v1/multi_video_faceswap"


def test_base64_accepts_bytes_and_data_uri() -> None:
    assert validate_model(ExtractBase64FaceRequest, {"base64_img": tiny_png()}).base64_img == PNG_B64
    validate_model(ExtractBase64FaceRequest, {"base64_img": f"data:image/png;base64,{PNG_B64}"})


def test_face_box_from_wire_list() -> None:
    box = FaceBox.model_validate([146, 256, 240, 381])
    assert (box.width, box.height) == (94, 125)
    assert box.model_dump() == [146, 256, 240, 381]
    data = ExtractFaceData.model_validate({"faces": [[146, 256, 240, 381], [297, 521, 371, 621]], "points": 2})
    assert data.faces[1].as_tuple() == (297, 521, 371, 621)


@pytest.mark.parametrize(
    ("value", "message"),
    [([10, 10, 5, 20], "x2 > x1"), ([10, 10, 20, 10], "y2 > y1"), ([1, 2, 3], "4 numbers"), ([-1, 0, 5, 5], "x1")],
)
def test_bad_face_boxes(value, message) -> None:
    with pytest.raises(ValueError, match=message):
        FaceBox.model_validate(value)


def test_file_input_checks_content(tmp_path) -> None:
    with pytest.raises(InputValidationError, match="empty"):
        FileInput.from_bytes(b"")
    with pytest.raises(InputValidationError, match="not an image"):
        FileInput.from_bytes(b"GIF-but-not-really")
    with pytest.raises(InputValidationError, match="no such file"):
        FileInput.from_path(tmp_path / "missing.jpg")
    (tmp_path / "a.png").write_bytes(tiny_png())
    file = FileInput.from_path(tmp_path / "a.png")
    assert file.content_type == "image/png" and file.filename == "a.png"
    request = validate_model(FaceSwapRequest, {"source_image": file, "face_image": URL, "webhook": HOOK})
    assert request.has_files()


def test_sniffing() -> None:
    assert sniff_image_type(tiny_png()) == "image/png"
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_image_type(io.BytesIO(b"x").read()) is None


def test_callbacks() -> None:
    ok = TaskCallback.model_validate({"success": 1, "type": 1, "task_id": "t1", "result_image": URL})
    assert ok.succeeded
    failed = TaskCallback.model_validate({"success": 0, "type": 2, "task_id": "t2"})
    assert not failed.succeeded and failed.result_image is None
    with pytest.raises(ValueError, match="result_image"):
        TaskCallback.model_validate({"success": 1, "type": 1, "task_id": "t3"})
    with pytest.raises(ValueError):
        TaskCallback.model_validate({"success": 2, "type": 1, "task_id": "t4"})


def test_envelope_parses_spec_examples() -> None:
    envelope = Envelope.model_validate(
        {"code": 200, "data": {"points": 2, "task_id": "ac3e"}, "extra_data": {}, "message": "OK"}
    )
    assert envelope.data == {"points": 2, "task_id": "ac3e"}
