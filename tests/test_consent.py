"""The consent register: `consent add | list | revoke` over the storage block; flows with require_consent swap
only registered, unexpired, unrevoked face photos, refuse the others before any credit is spent (the sandbox's
ledger unchanged) naming the photo and the command, and put the consent record in the provenance record and
in the signed C2PA manifest."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import date, timedelta
from pathlib import Path

import c2pa
import cv2
import pytest
from typer.testing import CliRunner

from faceswap_flows.cli.main import app
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.options import SwapOptions
from faceswap_flows.flows.provenance.consent import ConsentRefused, file_sha256
from faceswap_flows.flows.provenance.content_credentials import JOB_ASSERTION
from faceswap_flows.flows.video import video_faceswap
from tests.tables import read_table
from tests.vision import photos


def cli(*args: str) -> tuple[int, str]:
    outcome = CliRunner().invoke(app, ["consent", *args], env={"COLUMNS": "200"})
    return outcome.exit_code, outcome.output


async def registered(*args: str) -> None:
    """``faceswap-flows consent ...`` from a test's event loop (the command runs its own)."""
    code, output = await asyncio.to_thread(cli, *args)
    assert code == 0, output


def face_photo(folder: Path, name: str, variant: int) -> Path:
    """Grace Hopper's photo as its own file (a different JPEG quality: different bytes, the same face)."""
    path = folder / f"{name}.jpg"
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), photos.grace_hopper(), [cv2.IMWRITE_JPEG_QUALITY, 80 + variant])
    return path


def future(days: int = 365) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


def test_add_list_revoke(stack, tmp_path: Path) -> None:
    photo = face_photo(tmp_path, "ada", 1)
    sha = file_sha256(photo.read_bytes())
    code, output = cli(
        "add", str(photo), "--by", "Ada Lovelace", "--scope", "test campaign", "--until", future(), "--person", "Ada"
    )
    assert code == 0 and sha in output, output
    record = json.loads(stack.storage.read_bytes(f"consent/{sha}.json"))
    assert record["consented_by"] == "Ada Lovelace" and record["scope"] == "test campaign"
    assert record["person"] == "Ada" and record["photo"] == "ada.jpg" and record["expires"] == future()
    code, output = cli("list")
    [row] = [row for row in read_table(output) if row["sha256"] == sha[:12]]
    assert code == 0 and row["photo"] == "ada.jpg" and row["person"] == "Ada", output
    assert row["consented by"] == "Ada Lovelace" and row["scope"] == "test campaign", output
    assert row["until"] == future() and row["status"] == "valid", output
    assert sha not in output, "hashes are shortened to 12 hex digits unless --full"
    assert [row["sha256"] for row in read_table(cli("list", "--full")[1]) if row["photo"] == "ada.jpg"] == [sha]

    code, output = cli("revoke", sha)
    assert code == 0 and "revoked the consent of Ada Lovelace" in output, output
    assert sha[:12] not in cli("list")[1]
    code, output = cli("list", "--all")
    [row] = [row for row in read_table(output) if row["sha256"] == sha[:12]]
    assert row["photo"] == "ada.jpg" and "revoked at" in row["status"], output


def test_bad_consent_input_names_the_field(stack, tmp_path: Path) -> None:
    photo = face_photo(tmp_path, "bad", 2)
    code, output = cli("add", str(photo), "--by", "X", "--scope", "s", "--until", "31/12/2027")
    assert code == 1 and output.startswith("error: --until: ") and "YYYY-MM-DD" in output, output
    assert "expires" not in output, "the option, not the record's field"
    code, output = cli("add", str(tmp_path / "missing.jpg"), "--by", "X", "--scope", "s")
    assert code == 1 and output.startswith("error: PHOTO: ") and "neither a file nor a SHA-256" in output, output
    code, output = cli("add", str(photo), "--by", "X", "--scope", "s", "--at", "2027-01-02", "--until", "2027-01-01")
    said = "error: --until: 2027-01-01 is before the day the consent was given (2027-01-02, `--at`)\n"
    assert code == 1 and output == said, output
    code, output = cli("revoke", "0" * 64)
    assert code == 1 and "no consent record" in output, output


async def test_a_registered_face_is_swapped_with_its_consent_recorded(stack, tmp_path: Path) -> None:
    face = face_photo(tmp_path, "registered", 3)
    await registered("add", str(face), "--by", "Grace Hopper", "--scope", "flow test", "--until", future())
    outcome = await faceswap(str(stack.files["astronaut"]), str(face), options=SwapOptions(require_consent=True))
    record = json.loads(stack.storage.read_bytes(outcome.provenance_key))
    [consent] = record["consent"]
    assert consent["field"] == "face_image" and consent["consented_by"] == "Grace Hopper"
    assert consent["sha256"] == file_sha256(face.read_bytes())
    face_input = next(i for i in record["inputs"] if i["field"] == "face_image")
    assert face_input["sha256"] == consent["sha256"]
    result = stack.storage.read_bytes(outcome.result_key)
    with c2pa.Reader("image/png", io.BytesIO(result)) as reader:
        manifest = reader.get_active_manifest()
    job = next(a for a in manifest["assertions"] if a["label"] == JOB_ASSERTION)["data"]
    assert job["consent"] == record["consent"]


@pytest.mark.parametrize("why", ["unregistered", "expired", "revoked", "not yet"])
async def test_faces_without_valid_consent_are_refused_unpaid(stack, tmp_path: Path, why: str) -> None:
    face = face_photo(tmp_path, f"refused-{why.replace(' ', '-')}", 10 + len(why))
    if why == "expired":
        await registered("add", str(face), "--by", "G", "--scope", "s", "--at", "2020-01-01", "--until", "2020-12-31")
    elif why == "revoked":
        await registered("add", str(face), "--by", "G", "--scope", "s")
        await registered("revoke", str(face))
    elif why == "not yet":
        await registered("add", str(face), "--by", "G", "--scope", "s", "--at", future(30))
    before = stack.spent()
    with pytest.raises(ConsentRefused) as refused:
        await faceswap(str(stack.files["astronaut"]), str(face), options=SwapOptions(require_consent=True))
    message = str(refused.value)
    assert message.startswith("face_image:") and face.name in message and "faceswap-flows consent add" in message
    expected = {"unregistered": "no consent record", "expired": "expired on 2020-12-31", "revoked": "revoked at"}
    assert expected.get(why, "starts on") in message, message
    sha, name = file_sha256(face.read_bytes()), face.name
    register = f'faceswap-flows consent add {name} --by "WHO CONSENTED" --scope "WHAT FOR" --until YYYY-MM-DD'
    exactly = {
        "unregistered": f"face_image: the face photo {name} (sha256 {sha}) has no consent record, and "
        "`require_consent=True` swaps only face photos with valid consent. Register its consent with: "
        f'{register} [--person "NAME"]',
        "expired": f"face_image: the consent for the face photo {name} (sha256 {sha}) is not valid: expired on "
        "2020-12-31, and `require_consent=True` swaps only face photos with valid consent. Register its consent "
        f'with: {register} [--person "NAME"]',
    }
    assert message == exactly.get(why, message)
    assert stack.spent() == before, "refused before any credit was spent"


async def test_video_flow_refuses_an_unregistered_face_unpaid(stack, tmp_path: Path) -> None:
    video = photos.write_video(tmp_path / "clip.mp4", lambda i: photos.face_video_frame(i)[0], 10)
    before = stack.spent()
    with pytest.raises(ConsentRefused, match="face_image: the face photo"):
        await video_faceswap(
            str(video), str(face_photo(tmp_path, "video-face", 5)), options=SwapOptions(require_consent=True)
        )
    assert stack.spent() == before


async def test_consent_off_by_default(stack, tmp_path: Path) -> None:
    outcome = await faceswap(str(stack.files["astronaut"]), str(face_photo(tmp_path, "unasked", 6)))
    assert outcome.status == "stored"
    assert json.loads(stack.storage.read_bytes(outcome.provenance_key))["consent"] == []


async def test_the_batch_fails_only_the_unconsented_item(stack, tmp_path: Path) -> None:
    ok_face, no_face = face_photo(tmp_path, "batch-ok", 7), face_photo(tmp_path, "batch-no", 8)
    await registered("add", str(ok_face), "--by", "G", "--scope", "batch", "--until", future())
    manifest = tmp_path / "consent-batch.csv"
    manifest.write_text(
        f"source_image,face_image\n{stack.files['astronaut']},{ok_face}\n{stack.files['astronaut']},{no_face}\n"
    )
    before = stack.spent()
    state = await batch_faceswap(
        str(manifest), options=SwapOptions(require_consent=True), max_concurrency=2, return_state=True
    )
    assert state.is_failed() and "1 failed" in state.message, "a refused item makes the batch end Failed"
    report = await state.result(raise_on_failure=False)
    by_position = {item.position: item for item in report.items}
    assert by_position[0].status == "stored" and by_position[1].status == "failed"
    assert "batch-no.jpg" in by_position[1].error and "faceswap-flows consent add" in by_position[1].error
    assert stack.spent() - before == 2, "only the consented item was paid for"
