"""``faceswap-flows run ...``: each flow run here, now, with one option per flow parameter (made from the flow's
signature by :mod:`faceswap_flows.cli.flow_options`, so the command line and the flows cannot drift apart)."""

from __future__ import annotations

import functools
import importlib
from datetime import datetime
from typing import Annotated, Any

import typer

from faceswap_flows.cli.common import run_flow
from faceswap_flows.cli.flow_options import flow_command
from faceswap_flows.cli.lazy import lazy_group

# name -> (module of faceswap_flows.flows, flow, help with an example); every one takes --source and --face (but
# extract-faces: --source only)
SWAP_COMMANDS = {
    "faceswap": (
        "image",
        "faceswap",
        "Put the face of --face on the main face of --source (2 credits).\n\n"
        "Example: faceswap-flows run faceswap --source team.jpg --face me.jpg --max-credits 2 --watermark AI",
    ),
    "extract-faces": (
        "image",
        "extract_faces",
        "Find and number the faces of an image (2 credits).\n\n"
        "Example: faceswap-flows run extract-faces --source team.jpg",
    ),
    "multi-faceswap": (
        "image",
        "multi_faceswap",
        "Replace several faces of one image, by --index or by --reference photo.\n\n"
        "Example: faceswap-flows run multi-faceswap --source team.jpg --face me.jpg --index 2",
    ),
    "video-faceswap": (
        "video",
        "video_faceswap",
        "Swap one face through a video (cut to --trim-start/--trim-end first), charged per second.\n\n"
        "Example: faceswap-flows run video-faceswap --source a.mp4 --face me.jpg --trim-end 4 --enhance 1",
    ),
    "multi-video-faceswap": (
        "video",
        "multi_video_faceswap",
        "Replace up to three people through a video.\n\n"
        "Example: faceswap-flows run multi-video-faceswap --source panel.mp4 --face a.jpg --face b.jpg --frame-time 2",
    ),
}


def the_flow(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"faceswap_flows.flows.{module}"), name)


def swap_command(name: str) -> Any:
    """The ``run`` command of a swap flow: one option per parameter; runs the flow and prints its outcome."""
    module, flow_name, help_text = SWAP_COMMANDS[name]
    flow = the_flow(module, flow_name)
    formerly_positional = "image" if name == "extract-faces" else None  # `run extract-faces team.jpg` still works
    return flow_command(
        flow, lambda parameters: run_flow(flow(**parameters)), help=help_text, formerly_positional=formerly_positional
    )


def batch_command(flow_name: bool = False) -> Any:
    """``run batch``, also spelled as its flow is named: ``run batch-faceswap``."""
    from faceswap_flows.cli.batch import run_batch_command

    return run_batch_command(the_flow("batch", "batch_faceswap"), "batch-faceswap" if flow_name else "batch")


def plan_command() -> Any:
    """``faceswap-flows plan``: the batch flow's choice of items, output and blocks, planned without an API call."""
    from faceswap_flows.cli.batch import plan_command as from_the_batch

    return from_the_batch(the_flow("batch", "batch_faceswap"))


LAZY_RUN_COMMANDS = {name: functools.partial(swap_command, name) for name in SWAP_COMMANDS}
LAZY_RUN_COMMANDS["batch"] = batch_command
LAZY_RUN_COMMANDS["batch-faceswap"] = functools.partial(batch_command, flow_name=True)
run_app = typer.Typer(
    rich_markup_mode=None,
    cls=lazy_group(LAZY_RUN_COMMANDS),
    help="Run a flow here, now, with one option per flow parameter.",
    no_args_is_help=True,
)


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
    from faceswap_flows.flows.sweep.flow import store_results

    run_flow(
        store_results(
            since=since,
            lookback_seconds=lookback_seconds,
            window_seconds=window_seconds,
            max_concurrency=max_concurrency,
        )
    )
