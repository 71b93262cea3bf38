"""The command line: ``faceswap-flows demo | sandbox | receiver | media-server | run | estimate | blocks | init |
deploy | serve | collect``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from faceswap_flows.cli.consent import consent_app
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


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def require_extras(command: str, *extras: str) -> None:
    """One line naming the pip install of the missing extras, and exit 1 (before anything starts)."""
    from faceswap_flows.aifaceswap.extras import MissingExtra, require_extras

    try:
        require_extras(f"faceswap-flows {command}", *extras)
    except MissingExtra as error:
        fail(str(error))


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where .faceswap/ and faceswap-media/ are made.")] = Path("."),
) -> None:
    """Run one real swap end to end on the embedded default (sandbox, receiver, local Prefect, local storage).

    Example: faceswap-flows demo
    """
    require_extras("demo", "sandbox", "photos")
    from faceswap_flows.devstack.demo import run_demo

    try:
        run_demo(workdir)
    except Exception as error:  # one readable line, not a traceback
        fail(f"{type(error).__name__}: {error}")


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    api_key: Annotated[list[str], typer.Option(help="Accepted API key (repeatable).")] = ["sandbox-key"],  # noqa: B006
    credits: Annotated[int, typer.Option(help="Starting balance of each key.")] = 1000,
    processing_delay: Annotated[float, typer.Option(help="Seconds each job waits before working.")] = 0.0,
    concurrency: Annotated[int, typer.Option(help="Jobs processed at once.")] = 2,
    result_ttl: Annotated[float, typer.Option(help="Seconds result URLs stay valid.")] = 3600.0,
    public_url: Annotated[str | None, typer.Option(help="Base URL of result links, if not host:port.")] = None,
    fail_rate: Annotated[float, typer.Option(help="Fault: share of jobs that fail.")] = 0.0,
    drop_webhook_rate: Annotated[float, typer.Option(help="Fault: share of callbacks never sent.")] = 0.0,
    duplicate_webhook_rate: Annotated[float, typer.Option(help="Fault: share of callbacks sent twice.")] = 0.0,
    delay_webhook_seconds: Annotated[float, typer.Option(help="Fault: delay every callback this long.")] = 0.0,
    server_error_rate: Annotated[float, typer.Option(help="Fault: share of calls answered 500.")] = 0.0,
    rate_limit_rate: Annotated[float, typer.Option(help="Fault: share of calls answered 429.")] = 0.0,
    error_after_accept_rate: Annotated[
        float, typer.Option(help="Fault: share of paid calls answered 500 after being accepted and charged.")
    ] = 0.0,
    bad_gateway_after_accept_rate: Annotated[
        float, typer.Option(help="Fault: share of paid calls answered 502 with an HTML page after being accepted.")
    ] = 0.0,
    close_after_accept_rate: Annotated[
        float, typer.Option(help="Fault: share of paid calls whose connection is closed after being accepted.")
    ] = 0.0,
    result_cache: Annotated[
        bool, typer.Option(help="Identical image swaps (same input bytes, same options) reuse the first result.")
    ] = False,
    hold_callbacks: Annotated[bool, typer.Option(help="Hold callbacks until released (PUT /sandbox/callbacks).")] = (
        False
    ),
    release_concurrency: Annotated[int, typer.Option(help="Held callbacks delivered at once after a release.")] = 64,
) -> None:
    """Serve the offline sandbox of the aifaceswap API.

    Example: faceswap-flows sandbox --port 8700 --api-key KEY --credits 1000
    """
    require_extras("sandbox", "sandbox")
    from faceswap_flows.aifaceswap.sandbox import FaultConfig, SandboxConfig, serve_forever

    faults = FaultConfig(
        fail_rate=fail_rate,
        drop_webhook_rate=drop_webhook_rate,
        duplicate_webhook_rate=duplicate_webhook_rate,
        delay_webhook_rate=1.0 if delay_webhook_seconds else 0.0,
        delay_webhook_seconds=delay_webhook_seconds,
        server_error_rate=server_error_rate,
        rate_limit_rate=rate_limit_rate,
        error_after_accept_rate=error_after_accept_rate,
        bad_gateway_after_accept_rate=bad_gateway_after_accept_rate,
        close_after_accept_rate=close_after_accept_rate,
    )
    config = SandboxConfig(
        keys=dict.fromkeys(api_key, credits),
        processing_delay=processing_delay,
        concurrency=concurrency,
        result_ttl_seconds=result_ttl,
        public_url=public_url,
        faults=faults,
        result_cache=result_cache,
        hold_callbacks=hold_callbacks,
        release_concurrency=release_concurrency,
    )
    serve_forever(config, host=host, port=port)


@app.command()
def receiver(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8701,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    inbox: Annotated[Path, typer.Option(help="The durable inbox (SQLite file).")] = Path(".faceswap/inbox.sqlite"),
    secret: Annotated[str | None, typer.Option(help="Job-token secret (default: $FACESWAP_RECEIVER_SECRET).")] = None,
    access_log: Annotated[
        bool, typer.Option(help="Log every HTTP request (the inbox already keeps every callback).")
    ] = False,
) -> None:
    """Serve the webhook receiver: callbacks become Prefect events (needs PREFECT_API_URL).

    Example: FACESWAP_RECEIVER_SECRET=... faceswap-flows receiver --port 8701
    """
    import uvicorn

    from faceswap_flows.receiver import create_app

    secret = secret or os.environ.get("FACESWAP_RECEIVER_SECRET")
    if not secret:
        fail("the receiver needs the job-token secret: pass --secret or set FACESWAP_RECEIVER_SECRET")
    uvicorn.run(create_app(inbox, secret or ""), host=host, port=port, log_level="info", access_log=access_log)


@app.command("media-server")
def media_server(
    folder: Annotated[Path, typer.Argument(help="The MediaStorage folder to publish.")] = Path("faceswap-media"),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8702,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Publish a local storage folder over HTTP so the sandbox can fetch inputs (set public_base_url to it)."""
    import uvicorn

    from faceswap_flows.devstack.media_server import media_app

    uvicorn.run(media_app(folder), host=host, port=port, log_level="info")


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

    _console_without_tracebacks()
    try:
        outcome = asyncio.run(coroutine)  # type: ignore[arg-type]
    except (AIFaceSwapError, ValueError, TimeoutError, RuntimeError) as error:
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


@run_app.command("batch")
def run_batch(
    manifest: Annotated[str, typer.Argument(help="CSV or JSONL manifest (source_image, face_image).")],
    max_concurrency: Annotated[int, typer.Option(help="Items in flight at once.")] = 4,
    max_credits: Annotated[int | None, typer.Option(help="Stop submitting beyond this.")] = None,
    items_per_task: Annotated[
        int, typer.Option(min=1, help="Items per swap-items task run; 1: a submit and a collect task run per item.")
    ] = 25,
    on_unknown_outcome: OnUnknown = "at-most-once",
) -> None:
    """Run the batch flow. Example: faceswap-flows run batch manifest.csv --max-credits 100"""
    from faceswap_flows.flows.batch import batch_faceswap

    _run_flow(
        batch_faceswap(
            manifest,
            max_concurrency=max_concurrency,
            max_credits=max_credits,
            items_per_task=items_per_task,
            on_unknown_outcome=_policy(on_unknown_outcome),
        )
    )


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
