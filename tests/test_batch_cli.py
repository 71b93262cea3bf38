"""The batch from the installed command line: ``faceswap-flows plan`` then ``faceswap-flows run batch`` over a
folder, against the real stack."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.media import write_png
from tests.test_cli import faceswap_flows
from tests.vision import photos


def test_plan_then_run_a_folder_from_the_command_line(stack, prefect_api: str, tmp_path: Path) -> None:
    folder = tmp_path / "shoot"
    write_png(folder / "left.png", photos.face_video_frame(12)[0])
    write_png(folder / "pair.png", photos.pair_video_frame(3)[0])
    write_png(folder / "skip" / "other.png", photos.astronaut())
    (folder / "readme.md").write_text("not media")
    choose = ["--source", str(folder), "--face", str(stack.files["grace"]), "--exclude", "skip/*"]
    before = stack.spent()

    planned = faceswap_flows("plan", *choose, "--csv", str(tmp_path / "plan.csv"), prefect_api=prefect_api)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "faceswap: 2 to run, 0 already done, 4 credits" in planned.stdout
    assert [row["status"] for row in csv.DictReader((tmp_path / "plan.csv").open())] == ["run", "run"]
    assert stack.spent() == before

    ran = faceswap_flows("run", "batch", *choose, "--max-credits", "4", prefect_api=prefect_api)
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads(ran.stdout[ran.stdout.index("{") :])
    assert [item["status"] for item in report["items"]] == ["stored", "stored"]
    assert report["credits"] == 4 and stack.spent() == before + 4

    again = faceswap_flows("plan", *choose, prefect_api=prefect_api)
    assert "faceswap: 0 to run, 2 already done, 0 credits" in again.stdout and "total: 0 to run" in again.stdout
