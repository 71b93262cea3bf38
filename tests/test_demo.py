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
