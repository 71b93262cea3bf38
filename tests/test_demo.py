"""The demo's path (what `make demo` runs), against the session's Prefect server."""

from __future__ import annotations

from pathlib import Path

import c2pa
import pytest

from faceswap_flows.devstack.demo import run_demo
from faceswap_flows.flows.provenance.content_credentials import JOB_ASSERTION
from tests.media import likeness, read_image
from tests.vision import photos


@pytest.mark.slow
def test_demo_makes_a_real_swap(prefect_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support import restore_stack_blocks

    try:
        result = run_demo(tmp_path, interactive=False)
    finally:
        restore_stack_blocks()
    swapped = read_image(result.result_path.read_bytes())
    assert result.result_path.is_relative_to(tmp_path / "faceswap-media")
    assert likeness(swapped, photos.grace_hopper()) > likeness(swapped, photos.astronaut())
    assert result.credits == 2
    printed = capsys.readouterr().out
    assert f"Result image: {result.result_path}" in printed
    assert f"/runs/flow-run/{result.flow_run_id}" in printed
    ca = tmp_path / ".faceswap" / "signing" / "ca.pem"
    settings = c2pa.Context.from_dict({"trust": {"trust_anchors": ca.read_text()}})
    with result.result_path.open("rb") as handle, c2pa.Reader("image/png", handle, context=settings) as reader:
        assert reader.get_validation_state() == "Trusted", reader.get_validation_results()
        job = next(a for a in reader.get_active_manifest()["assertions"] if a["label"] == JOB_ASSERTION)["data"]
    assert job["task_id"] == result.task_id and job["flow_run"]["id"] == result.flow_run_id
    assert "Content Credentials: C2PA manifest TRUSTED, signed by" in printed and str(ca) in printed
    manifest = (tmp_path / "faceswap-media" / "demo" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "source_image,face_image,id" and len(manifest) == 3


def test_a_second_demo_refuses_to_start_and_says_where_the_first_runs(tmp_path: Path) -> None:
    from faceswap_flows.devstack.demo_session import DemoAlreadyRunning, demo_lock, running_demo, save_lock

    state = tmp_path / ".faceswap"
    with demo_lock(state) as facts:
        facts.update(ui_url="http://127.0.0.1:4200", sandbox="http://127.0.0.1:8700", receiver="http://127.0.0.1:8701")
        save_lock(state, facts)
        with pytest.raises(DemoAlreadyRunning, match=r"already running .*Prefect UI http://127\.0\.0\.1:4200"):
            run_demo(tmp_path, interactive=False)
    assert running_demo(state) is None and not (state / "demo.lock").exists()
    (state / "demo.lock").write_text('{"pid": 999999999, "started": "long ago"}')
    assert running_demo(state) is None, "the lock of a demo whose process is gone does not count"


def test_while_the_demo_runs_prefect_and_the_cli_in_its_folder_talk_to_its_server(
    prefect_api: str, stack, tmp_path: Path
) -> None:
    """The demo's prefect.toml, read by Prefect from the folder: a `faceswap-flows` command with no PREFECT_API_URL
    finds the blocks on the demo's server (here the session's), and the file goes when the demo stops; a user's
    own prefect.toml is never touched."""
    import os
    import subprocess
    import sys

    from faceswap_flows.devstack.demo_session import prefect_settings_here

    environment = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    environment["PREFECT_HOME"] = str(tmp_path / "home")
    command = [sys.executable, "-m", "faceswap_flows.cli", "credits", "--csv", "--no-settle"]
    with prefect_settings_here(tmp_path, prefect_api) as settings:
        assert settings is not None and settings.exists()
        done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.splitlines()[0].startswith("day,operation,deployment,sends,charged")
    assert not (tmp_path / "prefect.toml").exists()
    mine = tmp_path / "prefect.toml"
    mine.write_text('[api]\nurl = "http://example.invalid/api"\n')
    with prefect_settings_here(tmp_path, prefect_api) as settings:
        assert settings is None and "example.invalid" in mine.read_text()
    assert mine.exists()
