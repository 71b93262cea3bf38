"""``faceswap-flows run ...``: each flow run here, now, with one option per flow parameter (made from the flow's
signature by :mod:`faceswap_flows.cli.flow_options`, so the command line and the flows cannot drift apart)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from faceswap_flows.cli.batch import plan_command, run_batch_command
from faceswap_flows.cli.common import run_flow
from faceswap_flows.cli.flow_options import flow_command
from faceswap_flows.flows.batch import batch_faceswap
from faceswap_flows.flows.image import extract_faces, faceswap, multi_faceswap
from faceswap_flows.flows.video import multi_video_faceswap, video_faceswap

run_app = typer.Typer(help="Run a flow here, now, with one option per flow parameter.", no_args_is_help=True)


def _runs(flow: Any) -> Any:
    return lambda parameters: run_flow(flow(**parameters))


SWAP_COMMANDS = {
    "faceswap": (
        faceswap,
        (),
        "Put the face of --face-image on the main face of --source-image (2 credits).\n\n"
        "Example: faceswap-flows run faceswap --source team.jpg --face me.jpg --max-credits 2 --watermark AI",
    ),
    "extract-faces": (
        extract_faces,
        ("image",),
        "Find and number the faces of an image (2 credits).\n\nExample: faceswap-flows run extract-faces team.jpg",
    ),
    "multi-faceswap": (
        multi_faceswap,
        (),
        "Replace several faces of one image, by --index or by --reference photo.\n\n"
        "Example: faceswap-flows run multi-faceswap --source team.jpg --face me.jpg --index 2",
    ),
    "video-faceswap": (
        video_faceswap,
        (),
        "Swap one face through a video (cut to --trim-start/--trim-end first), charged per second.\n\n"
        "Example: faceswap-flows run video-faceswap --video a.mp4 --face me.jpg --trim-end 4 --enhance 1",
    ),
    "multi-video-faceswap": (
        multi_video_faceswap,
        (),
        "Replace up to three people through a video.\n\n"
        "Example: faceswap-flows run multi-video-faceswap --video panel.mp4 --face a.jpg --face b.jpg --frame-time 2",
    ),
}

for _name, (_flow, _arguments, _help) in SWAP_COMMANDS.items():
    run_app.command(_name)(flow_command(_flow, _runs(_flow), help=_help, arguments=_arguments))

# the batch: a progress bar and its report, and its plan (no API call), from the same flow's parameters
run_app.command("batch")(run_batch_command(batch_faceswap))
PLAN_COMMAND = plan_command(batch_faceswap)


@run_app.command("store-results")
def run_store_results(
    since: Annotated[datetime | None, typer.Option(help="Jobs finished since (UTC; default now).")] = None,
    lookback_seconds: Annotated[float, typer.Option(help="Also look this far before --since.")] = 300,
    window_seconds: Annotated[float, typer.Option(help="Keep sweeping this long after --since.")] = 0,
    max_concurrency: Annotated[int, typer.Option(help="Results stored at once.")] = 8,
) -> None:
    """Store every finished store_by=sweep job not stored yet (what the store-results trigger runs).

    Example: faceswap-flows run store-results --since 2024-05-01T00:00:00
    """
    from faceswap_flows.flows.sweep import store_results

    run_flow(
        store_results(
            since=since,
            lookback_seconds=lookback_seconds,
            window_seconds=window_seconds,
            max_concurrency=max_concurrency,
        )
    )
