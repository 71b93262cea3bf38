"""The flows' errors in the user's terms: in Python they name the parameter (``blocks.storage``, and ``field`` says
it), on the command line the option (``--storage``); each says what to do next, and a job the service failed says
what is known of it (its task, the likely cause, the commands that check it), in a batch's report too."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from faceswap_flows.cli.main import app
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.exceptions import BlockNotFound, JobFailed, SigningNotConfigured
from faceswap_flows.flows.image import faceswap
from faceswap_flows.flows.options import BlockNames, OutputOptions
from tests.media import write_png
from tests.support import SANDBOX_KEY
from tests.vision import photos

runner = CliRunner()


def flag(path: tuple[str, ...], name: str) -> str:
    """How the command spells the option of parameter ``name`` (after any rename, its first long spelling)."""
    command: Any = typer.main.get_command(app)
    for part in path:
        command = command.commands[part]
    parameter = next(p for p in command.params if p.name == name)
    return next(opt for opt in parameter.opts if opt.startswith("--"))


def error_line(*args: str) -> str:
    """The command's error line (it exits 1)."""
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def refunded_tasks(stack) -> set[str]:
    """The tasks the sandbox failed (it refunds each)."""
    entries = stack.sandbox.ledger(SANDBOX_KEY)["entries"]
    return {entry["task_id"] for entry in entries if entry["kind"] == "refund"}


def test_a_missing_block_names_the_option_on_the_command_line_and_the_field_in_python(stack) -> None:
    astronaut, grace = str(stack.files["astronaut"]), str(stack.files["grace"])
    before = stack.spent()
    line = error_line("run", "faceswap", "--source", astronaut, "--face", grace, "--storage", "no-such-storage")
    assert line.startswith("error: BlockNotFound: --storage: there is no MediaStorage block named 'no-such-storage'")
    assert "or set `--storage` to the name of your MediaStorage block" in line and "blocks." not in line, line
    with pytest.raises(BlockNotFound) as missing:
        await_flow(faceswap(astronaut, grace, blocks=BlockNames(storage="no-such-storage")))
    assert missing.value.field == "blocks.storage" and "set `blocks.storage` to" in str(missing.value)
    assert stack.spent() == before


def test_a_missing_signing_key_says_how_to_turn_signing_off_in_each_terms(stack) -> None:
    astronaut, grace = str(stack.files["astronaut"]), str(stack.files["grace"])
    before = stack.spent()
    line = error_line("run", "faceswap", "--source", astronaut, "--face", grace, "--signing-block", "no-such-key")
    assert line.startswith("error: SigningNotConfigured: --signing-block: the Content Credentials signing block"), line
    assert "or set `--no-sign` to store results unsigned" in line and "output." not in line, line
    with pytest.raises(SigningNotConfigured) as refused:
        await_flow(faceswap(astronaut, grace, output=OutputOptions(signing_block="no-such-key")))
    assert refused.value.field == "output.signing_block" and "set `output.sign=False` to" in str(refused.value)
    assert stack.spent() == before


def test_a_face_without_consent_names_the_options(stack, tmp_path: Path) -> None:
    face = write_png(tmp_path / "unconsented.png", photos.grace_hopper()[:, ::-1])  # a photo never registered
    path = ("run", "faceswap")
    line = error_line(*path, "--source", str(stack.files["astronaut"]), "--face", str(face), "--require-consent")
    assert line.startswith(f"error: ConsentRefused: {flag(path, 'face_image')}: the face photo unconsented.png"), line
    assert "has no consent record, and `--require-consent` swaps only face photos with valid consent" in line
    assert "require_consent" not in line and "face_image" not in line


def test_a_folder_given_as_the_manifest_says_source(stack, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(stack.files["astronaut"], folder / "astronaut.png")
    for command in (("run", "batch"), ("plan",)):
        line = error_line(*command, str(folder), "--face", str(stack.files["grace"]))
        assert f"MANIFEST: '{folder}' is a folder, not a manifest" in line, line
        assert f"give it as `{flag(command, 'source')}`" in line and "neither a local file" not in line, line


def test_a_manifest_and_a_source_together_name_both_options(stack, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"source_image,face_image\n{stack.files['astronaut']},{stack.files['grace']}\n")
    path = ("run", "batch")
    source, retry = flag(path, "source"), flag(path, "retry_failed")
    line = error_line(*path, str(manifest), "--source", str(tmp_path))
    assert f"give one of `MANIFEST`, `{source}` (a folder, prefix or glob) or `{retry}` (a report)" in line, line
    assert line.endswith(f"got `MANIFEST` and `{source}`"), line


def test_a_face_and_a_face_map_together_name_both_options(stack, tmp_path: Path) -> None:
    path = ("run", "batch")
    face, face_map = flag(path, "face_image"), flag(path, "face_map")
    grace = str(stack.files["grace"])
    line = error_line(*path, "--source", str(tmp_path), "--face", grace, "--face-map", f"0={grace}")
    assert f"{face}: give `{face}` (one new face) or `{face_map}` (several), not both" in line, line


def test_a_trim_that_ends_before_it_starts_names_both_options(stack, tmp_path: Path) -> None:
    path = ("run", "video-faceswap")
    clip = photos.write_video(tmp_path / "clip.mp4", lambda i: photos.face_video_frame(i)[0], 10)
    start, end = flag(path, "trim_start"), flag(path, "trim_end")
    line = error_line(*path, "--video", str(clip), "--face", str(stack.files["grace"]), start, "0.3", end, "0.1")
    assert line.endswith(f"{start}: 0.3 s is not before `{end}` 0.1 s: choose `{start}` < `{end}`"), line


def test_a_failed_job_names_its_task_the_likely_cause_and_the_commands_that_check_it(stack) -> None:
    path = ("run", "faceswap")
    before = refunded_tasks(stack)
    line = error_line(*path, "--source", str(stack.files["astronaut"]), "--face", str(stack.files["cat"]))
    [task_id] = refunded_tasks(stack) - before
    assert line.startswith(f"error: JobFailed: task {task_id} (job "), line
    assert "the service reported that the job failed (success 0, no reason given)" in line
    face, source = flag(path, "face_image"), flag(path, "source_image")
    assert f"Likely cause: no face found in `{face}` or in `{source}`" in line, line
    assert f"`faceswap-flows collect {task_id}` shows what the service reported" in line
    assert "`faceswap-flows credits --by operation` what was charged" in line
    assert "face_image" not in line and "source_image" not in line
    checked = runner.invoke(app, ["collect", task_id])
    assert checked.exit_code == 1 and f"task {task_id} failed on the service's side" in checked.output


def test_a_failed_batch_item_keeps_its_task_id_in_the_report(stack, tmp_path: Path) -> None:
    manifest = tmp_path / "one-fails.csv"
    cat_face = write_png(tmp_path / "cat-face.png", photos.cat()[::-1])  # work no other test did: never failed before
    manifest.write_text(f"source_image,face_image\n{stack.files['astronaut']},{cat_face}\n")
    before = refunded_tasks(stack)
    state = await_flow(batch_faceswap(str(manifest), return_state=True))
    report = state.result(raise_on_failure=False)
    [task_id] = refunded_tasks(stack) - before
    [item] = report.items
    assert item.status == "failed" and item.task_id == task_id, item
    assert item.error.startswith(f"task {task_id} (job {item.job_id}): the service reported"), item.error
    assert "Likely cause: no face found in `face_image` or in `source_image`" in item.error
    rows = list(csv.DictReader(io.StringIO(stack.storage.read_bytes(report.csv_key).decode())))
    failed = next(row for row in rows if row["status"] == "failed")
    assert failed["task_id"] == task_id and task_id in failed["error"]

    again = await_flow(batch_faceswap(str(manifest), return_state=True)).result(raise_on_failure=False)
    [not_sent] = again.items
    assert not_sent.status == "failed" and not_sent.error.startswith(f"failed before: task {task_id}"), not_sent
    assert (not_sent.task_id, not_sent.job_id) == (task_id, item.job_id), "the earlier job, named in its row"
    assert refunded_tasks(stack) - before == {task_id}, "not sent again"


def test_a_failed_job_in_python_names_the_parameters(stack) -> None:
    before = refunded_tasks(stack)
    with pytest.raises(JobFailed) as failed:
        await_flow(faceswap(str(stack.files["astronaut"]), str(stack.files["cat"])))
    [task_id] = refunded_tasks(stack) - before
    assert failed.value.task_id == task_id and failed.value.job_id
    assert str(failed.value) == (
        f"task {task_id} (job {failed.value.job_id}): the service reported that the job failed (success 0, no reason "
        "given). Likely cause: no face found in `face_image` or in `source_image`. Fix the input and run it again; "
        f"`faceswap-flows collect {task_id}` shows what the service reported, `faceswap-flows credits --by "
        "operation` what was charged"
    )


def await_flow(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)
