"""The demo's path (what `make demo` runs), against the session's Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceswap_flows.flows.demo import run_demo
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
    manifest = (tmp_path / "faceswap-media" / "demo" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "source_image,face_image,id" and len(manifest) == 3
