"""Output made for people: `plan` and `consent list` print tables with a header and aligned columns (the face
photo kept in the source folder is no item), `audit` says its verdict on its first line, no stray Prefect line
follows a command, every `--help` reads whole at 80 columns, and the numbered-faces picture numbers faces in a
TrueType font sized to the face."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceswap_flows.aifaceswap.models import FaceBox
from faceswap_flows.cli.main import app
from faceswap_flows.flows.batch.report import BatchReport, ItemOutcome, report_rows, table_rows
from faceswap_flows.flows.exceptions import JobFailed
from faceswap_flows.flows.tasks.artifacts import BOX_RED, numbered_faces
from tests.media import write_png
from tests.tables import read_table
from tests.test_cli_help import COMMANDS
from tests.vision import photos

PREFECT_QUEUE_NOISE = "Still processing items"


def installed(*args: str, prefect_api: str) -> subprocess.CompletedProcess[str]:
    """The installed console script in a 200-column terminal, as a user runs it."""
    script = Path(sys.executable).parent / "faceswap-flows"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "200"}
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=300)


def unique(image: np.ndarray) -> np.ndarray:
    """The image with one pixel of its own: work no earlier test of the session has done (else it is done)."""
    marked = image.copy()
    marked[0, 0] = np.frombuffer(os.urandom(3), dtype=np.uint8)
    return marked


def test_plan_prints_a_table_and_leaves_out_the_face_photo_in_the_folder(
    stack, prefect_api: str, tmp_path: Path
) -> None:
    folder = tmp_path / "shoot"
    write_png(folder / "left.png", unique(photos.face_video_frame(12)[0]))
    write_png(folder / "right.png", unique(photos.pair_video_frame(3)[0]))
    face = folder / "face.png"
    shutil.copyfile(stack.files["grace"], face)
    planned = installed("plan", "--source", str(folder), "--face", str(face), prefect_api=prefect_api)
    assert planned.returncode == 0, planned.stderr[-2000:]
    rows = read_table(planned.stdout)
    assert {"item", "operation", "status", "credits"} <= set(rows[0]), planned.stdout
    assert sorted(row["item"] for row in rows) == ["left.png", "right.png"], planned.stdout
    assert {row["status"] for row in rows} == {"run"} and {row["credits"] for row in rows} == {"2"}
    assert "faceswap: 2 to run, 0 already done, 4 credits" in planned.stdout
    assert PREFECT_QUEUE_NOISE not in planned.stdout + planned.stderr


async def test_the_flow_logs_its_plan_in_words(stack, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from faceswap_flows.flows.batch.flow import batch_faceswap

    write_png(tmp_path / "shoot" / "left.png", unique(photos.face_video_frame(12)[0]))
    (tmp_path / "shoot" / "notes.txt").write_text("not media")
    with caplog.at_level(logging.INFO, logger="prefect.flow_runs"):
        await batch_faceswap(source=str(tmp_path / "shoot"), face_image=str(stack.files["grace"]), plan=True)
    [said] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("plan: ")]
    assert said == "plan: 1 to run: 2 credits to spend; 1 file neither image nor video left out", said


def test_consent_list_is_a_table_and_commands_end_without_prefect_noise(
    stack, prefect_api: str, tmp_path: Path
) -> None:
    photo = write_png(tmp_path / "noor.png", photos.astronaut())
    added = installed("consent", "add", str(photo), "--by", "Noor", "--scope", "cli table", prefect_api=prefect_api)
    assert added.returncode == 0, added.stderr[-2000:]
    listed = installed("consent", "list", prefect_api=prefect_api)
    assert listed.returncode == 0, listed.stderr[-2000:]
    [row] = [row for row in read_table(listed.stdout) if row["photo"] == "noor.png"]
    assert len(row["sha256"]) == 12 and row["consented by"] == "Noor" and row["scope"] == "cli table"
    assert row["until"] == "-" and row["status"] == "valid", listed.stdout
    audited = installed("audit", "results/nothing-here.png", prefect_api=prefect_api)
    assert audited.returncode == 1
    assert audited.stdout.startswith("NOT FOUND: results/nothing-here.png"), audited.stdout
    for done in (added, listed, audited):
        assert PREFECT_QUEUE_NOISE not in done.stdout + done.stderr, done.stderr


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_help_reads_whole_at_80_columns(path: list[str], command: object) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    flags = [name for param in command.params for name in (*param.opts, *param.secondary_opts)]  # type: ignore[attr-defined]
    words = set(result.output.replace(",", " ").split())
    assert [flag for flag in flags if flag.startswith("-") and flag not in words] == [], result.output
    assert "…" not in result.output and "``" not in result.output, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output


def test_numbered_faces_are_numbered_in_a_truetype_font_sized_to_the_face() -> None:
    image = Image.new("RGB", (600, 600), (90, 110, 130))
    picture = numbered_faces(image, [FaceBox(x1=200, y1=250, x2=400, y2=450)])  # a 200 px face
    drawn = np.asarray(Image.open(io.BytesIO(picture)))
    above = drawn[:250, 200:400]
    tab = np.all(above == BOX_RED, axis=2)
    digit = np.all(above > 230, axis=2)
    assert tab.any(), "a red tab above the face"
    rows = np.flatnonzero(digit.any(axis=1))
    assert rows.size and rows[-1] - rows[0] + 1 >= 20, f"the number is {rows.size and rows[-1] - rows[0] + 1} px tall"


def test_the_batch_table_shows_the_error_beside_the_status() -> None:
    item = ItemOutcome(position=0, id="a.png", status="failed", error="InputValidationError: no face found")
    [row] = report_rows(BatchReport.of([item], 0))
    assert list(row)[:3] == ["item", "status", "error"] and row["error"].startswith("InputValidationError")


def test_the_batch_table_shows_each_error_short_and_the_csv_keeps_it_whole() -> None:
    failed = JobFailed.reported("9" * 32, job_id="8" * 32, operation="faceswap")
    item = ItemOutcome(position=0, id="a.png", status="failed", error=str(failed))
    [row] = report_rows(BatchReport.of([item], 0))
    [shown] = table_rows([row])
    assert row["error"] == str(failed) and len(str(failed)) > 200, "the report keeps the whole message"
    assert shown["error"].startswith(f"task {'9' * 32}") and len(shown["error"]) <= 100
    assert {key: value for key, value in shown.items() if key != "error"} == {
        key: value for key, value in row.items() if key != "error"
    }
