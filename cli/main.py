"""The command line: ``faceswap-flows demo | sandbox | receiver | media-server | run | estimate | blocks | init |
deploy | serve | collect``."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from faceswap_flows.cli.batch import plan as plan_batch
from faceswap_flows.cli.batch import run_batch
from faceswap_flows.cli.common import fail
from faceswap_flows.cli.consent import consent_app
from faceswap_flows.cli.servers import demo, media_server, receiver, sandbox
from faceswap_flows.cli.setup import blocks_app, deploy, estimate_app, signing_app
from faceswap_flows.cli.setup import init as init_project

app = typer.Typer(
    help="Face-swap pipelines on Prefect 3 over the aifaceswap API, with an offline sandbox of the API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help="Run a flow here, now, with typed options.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(estimate_app, name="estimate")
app.add_typer(blocks_app, name="blocks")
app.add_typer(signing_app, name="signing")
app.add_typer(consent_app, name="consent")
app.command()(deploy)
app.command("init")(init_project)
app.command()(demo)
app.command()(sandbox)
app.command()(receiver)
app.command("media-server")(media_server)


class _WithoutTraceback(logging.Formatter):
    """Formats as the wrapped formatter does, leaving out tracebacks (the CLI says what failed in one line)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def _console_without_tracebacks() -> None:
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import APILogHandler

    if not logging.getLogger().handlers:
        setup_logging()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, APILogHandler)
            if console and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter))


def _run_flow(coroutine: object) -> None:
    from faceswap_flows.aifaceswap.errors import AIFaceSwapError
    from faceswap_flows.flows.exceptions import FaceSwapFlowError

    _console_without_tracebacks()
    try:
        outcome = asyncio.run(coroutine)  # type: ignore[arg-type]
    except (FaceSwapFlowError, AIFaceSwapError, ValueError, TimeoutError, RuntimeError) as error:
        from faceswap_flows.devstack.prefect_server import drain_prefect_workers

        drain_prefect_workers()
        fail(f"{type(error).__name__}: {error}")
    typer.echo(outcome.model_dump_json(indent=2))  # type: ignore[union-attr]


@run_app.command("faceswap")
def run_faceswap(
    source: Annotated[str, typer.Option(help="Image whose face is replaced (path, storage key or URL).")],
    face: Annotated[str, typer.Option(help="Image of the new face.")],
    wait: Wait = True,
    max_credits: MaxCredits = None,
    on_unknown_outcome: OnUnknown = "at-most-once",
) -> None:
    """Run the faceswap flow. Example: faceswap-flows run faceswap --source a.jpg --face b.jpg"""
    from faceswap_flows.flows.image import faceswap

    _run_flow(
        faceswap(source, face, wait=wait, max_credits=max_credits, on_unknown_outcome=_policy(on_unknown_outcome))
    )


Wait = Annotated[bool, typer.Option(help="Wait for the result (else a trigger stores it).")]
MaxCredits = Annotated[int | None, typer.Option(help="Refuse to spend more than this.")]
OnUnknown = Annotated[
    str,
    typer.Option(
        help="When a submission's outcome stays unknown after the grace: at-most-once (fail, name the job to "
        "collect later) or resubmit (send again: a result is likelier, and it may be charged twice)."
    ),
]
Enhance = Annotated[int, typer.Option(help="0 none, 1 enhance faces up to 1080p, 2 up to 2k.")]
TrimStart = Annotated[float | None, typer.Option(help="Keep the video from this second.")]
TrimEnd = Annotated[float | None, typer.Option(help="Keep the video up to this second.")]


@run_app.command("extract-faces")
def run_extract_faces(image: Annotated[str, typer.Argument(help="The image (path, storage key or URL).")]) -> None:
    """Find and number the faces of an image. Example: faceswap-flows run extract-faces team.jpg"""
    from faceswap_flows.flows.image import extract_faces

    _run_flow(extract_faces(image))


@run_app.command("multi-faceswap")
def run_multi_faceswap(
    source: Annotated[str, typer.Option(help="Image with several faces.")],
    face: Annotated[list[str], typer.Option(help="A new face (repeat, one per face to replace).")],
    index: Annotated[list[int] | None, typer.Option(help="Which face (repeat; numbers from extract-faces).")] = None,
    reference: Annotated[list[str] | None, typer.Option(help="Instead of --index: a photo of who to replace.")] = None,
    wait: Wait = True,
    max_credits: MaxCredits = None,
    on_unknown_outcome: OnUnknown = "at-most-once",
) -> None:
    """Replace several faces. Example: faceswap-flows run multi-faceswap --source team.jpg --face me.jpg --index 2"""
    from faceswap_flows.flows.image import multi_faceswap

    _run_flow(
        multi_faceswap(
            source,
            face,
            face_indexes=index,
            reference_images=reference,
            wait=wait,
            max_credits=max_credits,
            on_unknown_outcome=_policy(on_unknown_outcome),
        )
    )


@run_app.command("video-faceswap")
def run_video_faceswap(
    video: Annotated[str, typer.Option(help="The video (MP4).")],
    face: Annotated[str, typer.Option(help="Image of the new face.")],
    enhance: Enhance = 0,
    trim_start: TrimStart = None,
    trim_end: TrimEnd = None,
    wait: Wait = True,
    max_credits: MaxCredits = None,
    on_unknown_outcome: OnUnknown = "at-most-once",
) -> None:
    """Swap one face through a video. Example: faceswap-flows run video-faceswap --video a.mp4 --face me.jpg"""
    from faceswap_flows.flows.video import video_faceswap

    _run_flow(
        video_faceswap(
            video,
            face,
            enhance=enhance,
            trim_start=trim_start,
            trim_end=trim_end,
            wait=wait,
            max_credits=max_credits,
            on_unknown_outcome=_policy(on_unknown_outcome),
        )
    )


@run_app.command("multi-video-faceswap")
def run_multi_video_faceswap(
    video: Annotated[str, typer.Option(help="The video (MP4).")],
    face: Annotated[list[str], typer.Option(help="A new face (repeat, up to 3).")],
    index: Annotated[list[int] | None, typer.Option(help="Which face of the frame (repeat).")] = None,
    frame_time: Annotated[float, typer.Option(help="Second of the frame where faces are chosen.")] = 0.0,
    enhance: Enhance = 0,
    trim_start: TrimStart = None,
    trim_end: TrimEnd = None,
    wait: Wait = True,
    max_credits: MaxCredits = None,
    on_unknown_outcome: OnUnknown = "at-most-once",
) -> None:
    """Replace up to three people through a video.

    Example: faceswap-flows run multi-video-faceswap --video panel.mp4 --face a.jpg --face b.jpg --frame-time 2
    """
    from faceswap_flows.flows.video import multi_video_faceswap

    _run_flow(
        multi_video_faceswap(
            video,
            face,
            face_indexes=index,
            frame_time=frame_time,
            enhance=enhance,
            trim_start=trim_start,
            trim_end=trim_end,
            wait=wait,
            max_credits=max_credits,
            on_unknown_outcome=_policy(on_unknown_outcome),
        )
    )


run_app.command("batch")(run_batch)
app.command("plan")(plan_batch)


def _policy(value: str) -> Any:
    """The --on-unknown-outcome value, checked before anything is spent."""
    if value not in ("at-most-once", "resubmit"):
        fail(f"--on-unknown-outcome: {value!r} is not a policy: use at-most-once (default) or resubmit")
    return value


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

    _run_flow(
        store_results(
            since=since,
            lookback_seconds=lookback_seconds,
            window_seconds=window_seconds,
            max_concurrency=max_concurrency,
        )
    )


@app.command()
def serve(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments of prefect.yaml to serve.")] = None,
) -> None:
    """Serve deployments of prefect.yaml from this process, triggers included (no work pool needed).

    Example: faceswap-flows serve store-result faceswap
    """
    from faceswap_flows.flows.deployments import serve_deployments

    serve_deployments(names or ["store-result"])


@app.command()
def collect(
    task_id: Annotated[
        str | None,
        typer.Argument(help="The task_id whose result to store (an unparsed callback naming none: its job id)."),
    ] = None,
    job: Annotated[
        str | None, typer.Option(help="Instead of a task_id: the job id a SubmissionOutcomeUnknown named.")
    ] = None,
) -> None:
    """Store the result of a job whose wait timed out, or whose submission's outcome was unknown (by --job), from
    its callback event or the result URL found in its unparsed callback.

    Example: faceswap-flows collect --job 0123abcd...
    """
    from faceswap_flows.flows.collect import store_result

    if bool(task_id) == bool(job):
        fail("collect: give a TASK_ID or --job JOB_ID (one of them)")
    _run_flow(store_result(task_id or "", job_id=job))


def main() -> None:
    """The console script: a module of a missing extra, wherever it is imported, is one line naming the extra."""
    from faceswap_flows.aifaceswap.extras import MissingExtra

    try:
        app(sys.argv[1:])
    except MissingExtra as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)


@app.command()
def audit(
    target: Annotated[str, typer.Argument(help="A stored output: a local path, or a key or URI of the storage.")],
    storage_block: Annotated[str, typer.Option(help="MediaStorage block holding the key.")] = "faceswap-media",
    trust_anchors: Annotated[
        Path | None, typer.Option(help="PEM file of the CA(s) whose signers you trust (default: the signing block's).")
    ] = None,
    signing_block: Annotated[str, typer.Option(help="ContentSigningKey block whose trust anchors to use.")] = (
        "faceswap-signing"
    ),
    allow_untrusted: Annotated[bool, typer.Option(help="Pass a valid signature whose signer is not trusted.")] = False,
) -> None:
    """Print the provenance record of a stored output, check its SHA-256 and its signed C2PA manifest (signature,
    content hash, signer against the trust anchors). Exit 1 on a mismatch, a tampered or untrusted manifest, or
    no record.

    Example: faceswap-flows audit results/faceswap/0123456789abcdef.png --trust-anchors .faceswap/signing/ca.pem
    """
    from faceswap_flows.flows.provenance.audit import audit_report

    if trust_anchors is not None and not trust_anchors.is_file():
        fail(f"trust_anchors: {trust_anchors} does not exist: give the PEM file of your CA")
    report, ok = audit_report(target, storage_block, trust_anchors, signing_block, allow_untrusted)
    typer.echo(report)
    if not ok:
        raise typer.Exit(1)
