"""The batch on the command line: ``faceswap-flows plan ...`` (what would run, what is done, what is refused, the
credits: no API call) and ``faceswap-flows run batch ...``, with the same ways to choose the items."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

Manifest = Annotated[str | None, typer.Argument(help="CSV or JSONL manifest (an operation column: any of the four).")]
Source = Annotated[str | None, typer.Option(help="Instead of a manifest: a folder, storage prefix or glob.")]
Face = Annotated[str | None, typer.Option(help="With --source: the new face for every image and video.")]
FaceMap = Annotated[
    list[str] | None, typer.Option(help="With --source: INDEX=FACE or REFERENCE=FACE (repeat) for several faces.")
]
Include = Annotated[list[str] | None, typer.Option(help="With --source: only names matching (repeat; *.jpg).")]
Exclude = Annotated[list[str] | None, typer.Option(help="With --source: leave out names matching (repeat).")]
Enhance = Annotated[int, typer.Option(help="With --source, videos: 0 none, 1 up to 1080p, 2 up to 2k.")]
Trim = Annotated[float | None, typer.Option(help="With --source, videos: keep from/up to this second.")]
RetryFailed = Annotated[str | None, typer.Option(help="Instead of a manifest: rerun the failed items of a report.")]
Force = Annotated[bool, typer.Option(help="Redo items whose result is already stored.")]
Template = Annotated[str | None, typer.Option(help="Result keys, e.g. results/{date}/{source_stem}__{face_stem}.{ext}")]
MaxCredits = Annotated[int | None, typer.Option(help="Items beyond this many credits are skipped, never submitted.")]


def _face_map(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    wrong = [pair for pair in pairs if "=" not in pair]
    if wrong:
        raise typer.BadParameter(f"{wrong}: give INDEX=FACE or REFERENCE=FACE", param_hint="--face-map")
    return dict(pair.split("=", 1) for pair in pairs)


def selection(
    manifest: str | None,
    source: str | None,
    face: str | None,
    face_map: list[str] | None,
    include: list[str] | None,
    exclude: list[str] | None,
    enhance: int,
    trim_start: float | None,
    trim_end: float | None,
    retry_failed: str | None,
    force: bool,
    output_template: str | None,
    max_credits: int | None,
) -> dict[str, Any]:
    """The flow parameters that choose the items, as the batch flow names them."""
    chosen: dict[str, Any] = {
        "manifest": manifest,
        "source": source,
        "face_image": face,
        "face_map": _face_map(face_map),
        "include": include,
        "exclude": exclude,
        "enhance": enhance,
        "trim_start": trim_start,
        "trim_end": trim_end,
        "retry_failed": retry_failed,
        "force": force,
        "max_credits": max_credits,
    }
    if output_template:
        chosen["output_template"] = output_template
    return chosen


def plan(
    manifest: Manifest = None,
    source: Source = None,
    face: Face = None,
    face_map: FaceMap = None,
    include: Include = None,
    exclude: Exclude = None,
    enhance: Enhance = 0,
    trim_start: Trim = None,
    trim_end: Trim = None,
    retry_failed: RetryFailed = None,
    force: Force = False,
    output_template: Template = None,
    max_credits: MaxCredits = None,
    csv: Annotated[Path | None, typer.Option(help="Also write the plan here as CSV.")] = None,
) -> None:
    """Show what a batch would do, without calling the API: the items to run, already done, refused (and why) or
    over --max-credits, and the credits by operation (video seconds read from the files).

    Example: faceswap-flows plan --source s3://catalogue/2026-12/ --face faces/ambassador.jpg --max-credits 200
    """
    from faceswap_flows.cli.main import _console_without_tracebacks, fail
    from faceswap_flows.flows.batch import batch_faceswap
    from faceswap_flows.flows.batch_report import PLAN_COLUMNS, plan_rows_table, to_csv

    chosen = selection(manifest, source, face, face_map, include, exclude, enhance, trim_start, trim_end,
                       retry_failed, force, output_template, max_credits)  # fmt: skip
    _console_without_tracebacks()
    try:
        the_plan = asyncio.run(batch_faceswap(**chosen, plan=True))  # type: ignore[arg-type]
    except (ValueError, RuntimeError) as error:
        fail(f"{type(error).__name__}: {error}")
        return
    rows = plan_rows_table(the_plan)
    for row in rows:
        typer.echo("  ".join(f"{row[c]}" for c in PLAN_COLUMNS if row[c] != ""))
    for operation, total in the_plan.by_operation().items():
        typer.echo(
            f"{operation}: {total['run']:g} to run, {total['done']:g} already done, {int(total['credits'])} credits, "
            f"{total['seconds']:.2f} s of video"
        )
    typer.echo(
        f"total: {the_plan.count('run')} to run, {the_plan.count('done')} already done, {the_plan.count('refused')} "
        f"refused, {the_plan.count('skipped')} over max_credits: {the_plan.credits} credits; plan {the_plan.csv_key}"
    )
    if csv is not None:
        csv.write_bytes(to_csv(rows, PLAN_COLUMNS))


def run_batch(
    manifest: Manifest = None,
    source: Source = None,
    face: Face = None,
    face_map: FaceMap = None,
    include: Include = None,
    exclude: Exclude = None,
    enhance: Enhance = 0,
    trim_start: Trim = None,
    trim_end: Trim = None,
    retry_failed: RetryFailed = None,
    force: Force = False,
    output_template: Template = None,
    max_credits: MaxCredits = None,
    max_concurrency: Annotated[int, typer.Option(help="Items in flight at once.")] = 4,
    items_per_task: Annotated[
        int, typer.Option(min=1, help="Items per swap-items task run; 1: a submit and a collect task run per item.")
    ] = 25,
    wait: Annotated[bool, typer.Option(help="Wait for the results (else the store-results sweep stores them).")] = True,
    on_unknown_outcome: Annotated[
        str,
        typer.Option(
            help="When a submission's outcome stays unknown after the grace: at-most-once (fail, name the job to "
            "collect later) or resubmit (send again: a result is likelier, and it may be charged twice)."
        ),
    ] = "at-most-once",
    require_consent: Annotated[
        bool, typer.Option(help="Swap only face photos in the consent register (faceswap-flows consent add).")
    ] = False,
) -> None:
    """Run the batch flow: a manifest, a --source with a --face, or --retry-failed REPORT.

    Example: faceswap-flows run batch manifest.csv --max-credits 100
    """
    from faceswap_flows.cli.main import _console_without_tracebacks, _policy, fail
    from faceswap_flows.cli.progress import batch_progress
    from faceswap_flows.flows.batch import batch_faceswap

    chosen = selection(manifest, source, face, face_map, include, exclude, enhance, trim_start, trim_end,
                       retry_failed, force, output_template, max_credits)  # fmt: skip
    _console_without_tracebacks()
    flow_run = batch_faceswap(
        **chosen,
        max_concurrency=max_concurrency,
        items_per_task=items_per_task,
        wait=wait,
        on_unknown_outcome=_policy(on_unknown_outcome),
        require_consent=require_consent,
        return_state=True,
    )
    try:
        with batch_progress():  # a live bar in a terminal, plain lines otherwise
            state = asyncio.run(flow_run)  # type: ignore[arg-type]
        report = state.result(raise_on_failure=False)
    except (ValueError, RuntimeError) as error:
        fail(f"{type(error).__name__}: {error}")
        return
    if isinstance(report, BaseException):
        fail(f"{type(report).__name__}: {report}")
    typer.echo(report.model_dump_json(indent=2))
    if state.is_failed():
        fail(state.message or "the batch failed")
