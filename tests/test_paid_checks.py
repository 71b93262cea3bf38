"""Every free check before the first paid call, and what a paid call's answer costs when it makes the job
impossible, judged by the sandbox's ledger: consent is refused before any face detection (batch multi_faceswap by
reference photo, single and batch multi_video_faceswap), a face-free frame or an index beyond the faces found
fails with FaceSelectionFailed naming the 2 credits charged (the ledger shows exactly those), and a batch item
answered by a gateway's 502 HTML page keeps its job id, credits and collect command whole in the report."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import cv2
import pytest

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.blocks import WebhookReceiver
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.batch.report import BatchReport
from faceswap_flows.flows.exceptions import ConsentRefused, FaceSelectionFailed
from faceswap_flows.flows.image import multi_faceswap
from faceswap_flows.flows.options import BlockNames, SwapOptions
from faceswap_flows.flows.video import multi_video_faceswap
from tests.support import RECEIVER_SECRET, SANDBOX_KEY
from tests.test_cli import faceswap_flows
from tests.vision import photos

FPS = 25
MANIFEST_COLUMNS = ["operation", "source_image", "source_video", "face_images", "face_indexes", "reference_images"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """pair.mp4: two people (faces 0 and 1); no-face.mp4: a cat, no face in any frame (1.2 s each)."""
    folder = tmp_path_factory.mktemp("paid-checks")
    cat = cv2.resize(photos.cat(), (320, 240))
    return {
        "pair": photos.write_video(folder / "pair.mp4", lambda i: photos.pair_video_frame(i)[0], 30, fps=FPS),
        "no_face": photos.write_video(folder / "no-face.mp4", lambda i: cat, 30, fps=FPS),
    }


def unregistered_face(folder: Path) -> str:
    """Grace Hopper's photo under bytes of its own, so no consent record names it."""
    path = folder / "unregistered-face.jpg"
    cv2.imwrite(str(path), photos.grace_hopper(), [cv2.IMWRITE_JPEG_QUALITY, 71])
    return str(path)


class Ledger:
    """The sandbox's charges to the test key from now on (what the service billed, not what the flows counted)."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.start = len(self._entries())

    def _entries(self) -> list[dict]:
        return list(self.stack.sandbox.ledger(SANDBOX_KEY)["entries"])

    def charges(self) -> list[tuple[str, int]]:
        self.stack.sandbox.wait_idle()
        return [(e["operation"], e["points"]) for e in self._entries()[self.start :] if e["kind"] == "charge"]


def manifest(folder: Path, name: str, rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path = folder / f"{name}.csv"
    path.write_text(buffer.getvalue())
    return str(path)


async def one_failed_item(path: str, **options: object) -> tuple[BatchReport, str]:
    """Run a batch of one item that fails: its report and the item's error."""
    state = await batch_faceswap(path, max_concurrency=1, return_state=True, **options)
    report = await state.result(raise_on_failure=False)
    assert state.is_failed() and isinstance(report, BatchReport), state.message
    [item] = report.items
    assert item.status == "failed" and item.error, item
    return report, item.error


# --- consent: refused before any detection is paid --------------------------------------------------------------


async def test_batch_by_reference_refuses_an_unconsented_face_before_finding_faces(stack, tmp_path: Path) -> None:
    f = stack.files
    rows = [
        {"operation": "multi_faceswap", "source_image": str(f["group"]), "face_images": unregistered_face(tmp_path),
         "reference_images": str(f["grace"])},
    ]  # fmt: skip
    ledger = Ledger(stack)
    _, error = await one_failed_item(
        manifest(tmp_path, "by-reference", rows), options=SwapOptions(require_consent=True)
    )
    assert error.startswith("face_images[0]: the face photo unregistered-face.jpg") and "consent add" in error, error
    assert ledger.charges() == [], "no face detection (2 + 2 credits) before the consent check"


async def test_multi_video_refuses_an_unconsented_face_before_finding_faces(stack, videos, tmp_path: Path) -> None:
    face = unregistered_face(tmp_path)
    ledger = Ledger(stack)
    with pytest.raises(ConsentRefused, match=r"^face_images\[0\]: the face photo unregistered-face\.jpg"):
        await multi_video_faceswap(str(videos["pair"]), [face], options=SwapOptions(require_consent=True))
    rows = [{"operation": "multi_video_faceswap", "source_video": str(videos["pair"]), "face_images": face}]
    _, error = await one_failed_item(
        manifest(tmp_path, "video-consent", rows), options=SwapOptions(require_consent=True)
    )
    assert error.startswith("face_images[0]: the face photo unregistered-face.jpg"), error
    assert ledger.charges() == [], "no extract_base64_face (2 credits) before the consent check, single or batch"


# --- a paid detection whose answer makes the job impossible ----------------------------------------------------


FRAME_CASES = {
    "face-free frame": ("no_face", [0], r"which found no face there: choose a frame_time"),
    "index out of range": (
        "pair",
        [2],
        r"which found 2 face\(s\), numbered 0 to 1 .*: face_indexes \[2\] out of range",
    ),
}


@pytest.mark.parametrize("case", FRAME_CASES, ids=list(FRAME_CASES))
async def test_multi_video_says_what_the_frame_detection_cost(stack, videos, tmp_path: Path, case: str) -> None:
    video, indexes, found = FRAME_CASES[case]
    charged = r"^face_indexes: 2 credits were charged for extract_base64_face of the frame at 0\.0 s of .*\.mp4, "
    ledger = Ledger(stack)
    with pytest.raises(FaceSelectionFailed, match=charged + found) as caught:
        await multi_video_faceswap(str(videos[video]), [str(stack.files["grace"])], face_indexes=indexes)
    assert not isinstance(caught.value, InputValidationError), "InputValidationError means nothing was sent"
    assert caught.value.credits == 2 and ledger.charges() == [("extract_base64_face", 2)]

    rows = [{"operation": "multi_video_faceswap", "source_video": str(videos[video]),
             "face_images": str(stack.files["grace"]), "face_indexes": "|".join(map(str, indexes))}]  # fmt: skip
    ledger = Ledger(stack)
    report, error = await one_failed_item(manifest(tmp_path, f"frame-{indexes[0]}", rows))
    assert re.search(charged + found, error), error
    assert report.items[0].credits == report.credits == 2, "the report counts what the detection cost"
    assert ledger.charges() == [("extract_base64_face", 2)], "charged once: a failed selection is not retried"


REFERENCE_CASES = {
    "source without a face": (
        "cat", ["astronaut"], ["grace"], 4,
        "source_image: 4 credits were charged for extract_face of cat.png and of 1 reference photo(s), which found "
        "no face in cat.png: use a source image showing the faces to replace",
    ),
    "two references, one face": (
        "group", ["astronaut", "astronaut"], ["grace", "grace-again"], 6,
        "reference_images: 6 credits were charged for extract_face of group.png and of 2 reference photo(s), which "
        "found 3 face(s) in group.png, and two references most like the same one (faces [1, 1]): give face_indexes "
        "instead (`faceswap-flows run extract-faces --source inputs/",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=list(REFERENCE_CASES))
async def test_multi_faceswap_says_when_the_faces_found_leave_no_choice(stack, tmp_path: Path, case: str) -> None:
    source, faces, references, credits, says = REFERENCE_CASES[case]
    f = {**stack.files, "grace-again": tmp_path / "grace-again.jpg"}
    cv2.imwrite(str(f["grace-again"]), photos.grace_hopper(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    ledger = Ledger(stack)
    with pytest.raises(FaceSelectionFailed) as caught:
        await multi_faceswap(
            str(f[source]), [str(f[n]) for n in faces], reference_images=[str(f[n]) for n in references]
        )
    assert str(caught.value).startswith(says), str(caught.value)
    assert caught.value.credits == credits == sum(points for _, points in ledger.charges())


async def test_multi_faceswap_by_reference_says_what_the_detection_cost(stack, tmp_path: Path) -> None:
    f = stack.files
    ledger = Ledger(stack)
    with pytest.raises(FaceSelectionFailed) as caught:
        await multi_faceswap(str(f["group"]), [str(f["astronaut"])], reference_images=[str(f["cat"])])
    message = str(caught.value)
    assert message.startswith(
        "reference_images: 4 credits were charged for extract_face of group.png and of 1 reference photo(s), "
        "which found no face in "
    ), message
    assert "use a photo showing that face, or give face_indexes" in message
    assert "`faceswap-flows run extract-faces --source " in message
    assert ledger.charges() == [("extract_face", 2), ("extract_face", 2)]

    rows = [{"operation": "multi_faceswap", "source_image": str(f["group"]), "face_images": str(f["astronaut"]),
             "reference_images": str(f["cat"])}]  # fmt: skip
    ledger = Ledger(stack)
    report, error = await one_failed_item(manifest(tmp_path, "no-face-reference", rows))
    assert error.startswith("reference_images: 4 credits were charged for extract_face of group.png"), error
    assert report.credits == 4 and ledger.charges() == [("extract_face", 2), ("extract_face", 2)]


async def test_the_same_reference_photo_twice_is_refused_before_finding_faces(stack, tmp_path: Path) -> None:
    """It could only match the same face twice; found by content, whatever the paths."""
    f = stack.files
    copy = tmp_path / "copy-of-grace.png"
    copy.write_bytes(f["grace"].read_bytes())
    says = r"reference_images: \[0\] and \[1\] are the same photo \(copy-of-grace\.png\): give a photo of a different"
    ledger = Ledger(stack)
    with pytest.raises(InputValidationError, match=says):
        await multi_faceswap(str(f["group"]), [str(f["astronaut"])] * 2, reference_images=[str(f["grace"]), str(copy)])
    rows = [{"operation": "multi_faceswap", "source_image": str(f["group"]),
             "face_images": f"{f['astronaut']}|{f['astronaut']}",
             "reference_images": f"{f['grace']}|{copy}"}]  # fmt: skip
    _, error = await one_failed_item(manifest(tmp_path, "same-reference", rows))
    assert re.search(says, error), error
    assert ledger.charges() == []


async def test_a_missing_reference_photo_is_refused_before_finding_faces(stack, tmp_path: Path) -> None:
    f = stack.files
    ledger = Ledger(stack)
    with pytest.raises(InputValidationError, match=r"^reference_images\[0\]: '.*missing\.png' is not"):
        await multi_faceswap(str(f["group"]), [str(f["astronaut"])], reference_images=[str(tmp_path / "missing.png")])
    assert ledger.charges() == [], "every input is staged before the source's faces are found"


async def test_a_request_the_service_would_refuse_is_refused_before_finding_faces(stack, videos) -> None:
    """Staged through a storage whose public URLs are not http(s), the swap request cannot be sent: that is known
    before the faces are found, so nothing is paid (the sources are given as http(s) URLs, which detection takes)."""
    from faceswap_flows.blocks import MediaStorage

    await MediaStorage(basepath=stack.storage.basepath, public_base_url="ftp://media.invalid").asave(
        "ftp-media", overwrite=True
    )
    published = {}
    for name in ("group", "grace"):
        key = f"paid-checks/{name}.png"
        stack.storage.write_bytes(key, stack.files[name].read_bytes())
        published[name] = stack.storage.url_for(key)
    ftp = BlockNames(storage="ftp-media")
    ledger = Ledger(stack)
    with pytest.raises(InputValidationError, match=r"face_image.*must be an absolute http\(s\) URL, got 'ftp://"):
        await multi_faceswap(
            published["group"], [str(stack.files["astronaut"])], reference_images=[published["grace"]], blocks=ftp
        )
    with pytest.raises(InputValidationError, match=r"source_video: must be an absolute http\(s\) URL, got 'ftp://"):
        await multi_video_faceswap(str(videos["pair"]), [published["grace"]], blocks=ftp)
    assert ledger.charges() == []


def test_the_command_line_says_what_the_frame_detection_cost(stack, videos, prefect_api: str) -> None:
    ledger = Ledger(stack)
    ran = faceswap_flows(
        "run", "multi-video-faceswap", "--video", str(videos["no_face"]), "--face", str(stack.files["grace"]),
        prefect_api=prefect_api,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stdout[-2000:]
    said = r"error: FaceSelectionFailed: --(face-indexes|index): 2 credits were charged for extract_base64_face"
    assert re.search(said, ran.stderr), ran.stderr[-2000:]
    assert ledger.charges() == [("extract_base64_face", 2)]


# --- a gateway's HTML page in a batch item: the advice kept whole ----------------------------------------------


async def test_a_gateway_page_keeps_the_job_credits_and_command_in_the_report(stack, faults, tmp_path: Path) -> None:
    receiver = WebhookReceiver(public_url=stack.receiver.url, signing_secret=RECEIVER_SECRET)
    receiver.lost_answer_grace_seconds = 2
    await receiver.asave("receiver-grace-2s", overwrite=True)
    rows = [{"operation": "multi_faceswap", "source_image": str(stack.files["group"]),
             "face_images": str(stack.files["grace"]), "face_indexes": "1"}]  # fmt: skip
    faults(bad_gateway_after_accept_rate=1.0, drop_webhook_rate=1.0)
    ledger = Ledger(stack)
    report, error = await one_failed_item(
        manifest(tmp_path, "gateway", rows), blocks=BlockNames(receiver="receiver-grace-2s"), force=True
    )
    assert ledger.charges() == [("multi_faceswap", 5)], "accepted and charged once, not sent again"
    job_id = re.match(r"job ([0-9a-f]{32}): up to 5 credits possibly charged; collect its result with ", error)
    assert job_id, "the job, the credits at stake and the command come first: " + error
    assert f"`faceswap-flows collect --job {job_id[1]}` (or the store-result flow with job_id={job_id[1]})" in error
    assert "an HTML page" in error and "'502 Bad Gateway'" in error and "<html>" not in error, error

    stored = BatchReport.model_validate_json(stack.storage.read_bytes(report.report_key))
    assert stored.items[0].error == error, "the JSON report keeps the whole message"
    [row] = csv.DictReader(io.StringIO(stack.storage.read_bytes(report.csv_key).decode()))
    assert row["error"] == error, "the CSV report keeps the whole message"
    assert json.loads(stack.storage.read_bytes(report.report_key))["items"][0]["error"] == error
