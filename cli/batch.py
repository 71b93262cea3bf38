"""The batch on the command line: ``faceswap-flows plan ...`` (what would run, what is done, what is refused, the
credits: no API call) and ``faceswap-flows run batch ...``, both with the batch flow's parameters as options."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from faceswap_flows.cli.common import console_without_tracebacks, fail, fail_on, print_table
from faceswap_flows.cli.flow_options import flow_command

# What only a run uses: a plan calls no API and waits for nothing.
RUN_ONLY = ("plan", "max_concurrency", "items_per_task", "concurrency_limit", "wait", "timeout_seconds")
RUN_ONLY += ("on_unknown_outcome", "require_consent")
CSV_OPTION = (Annotated[Path | None, typer.Option(help="Also write the plan here as CSV.")], None)


def plan_command(batch_flow: Any) -> Any:
    """``faceswap-flows plan``: the batch flow's choice of items, output and blocks, planned without an API call."""
    return flow_command(
        batch_flow,
        lambda parameters: show_plan(batch_flow, parameters),
        help="Show what a batch would do, without calling the API: the items to run, already done, refused (and "
        "why) or over --max-credits, and the credits by operation (video seconds read from the files).\n\n"
        "Example: faceswap-flows plan --source s3://catalogue/2026-12/ --face faces/ambassador.jpg --max-credits 200",
        arguments=("manifest",),
        leave_out=RUN_ONLY,
        extra={"csv": CSV_OPTION},
    )


def run_batch_command(batch_flow: Any, name: str = "batch") -> Any:
    """``faceswap-flows run batch`` (or ``run batch-faceswap``, as the flow is named): every parameter of the batch
    flow but ``plan``."""
    same = " (the same as `run batch`)" if name != "batch" else ""
    return flow_command(
        batch_flow,
        lambda parameters: run_batch(batch_flow, parameters),
        help=f"Run the batch-faceswap flow{same}: a manifest, a --source with a --face, or --retry-failed REPORT.\n\n"
        f"Example: faceswap-flows run {name} manifest.csv --max-credits 100",
        arguments=("manifest",),
        leave_out=("plan",),
    )


def show_plan(batch_flow: Any, parameters: dict[str, Any]) -> None:
    """Print the plan: one line per item, the totals by operation, and the CSV if asked."""
    from faceswap_flows.flows.batch.report import PLAN_COLUMNS, plan_rows_table, to_csv
    from faceswap_flows.flows.batch.rows import flow_name

    csv = parameters.pop("csv")
    console_without_tracebacks()
    try:
        the_plan = asyncio.run(batch_flow(**parameters, plan=True))
    except (ValueError, RuntimeError, httpx.TransportError) as error:
        fail_on(error)
    rows = plan_rows_table(the_plan)
    print_table(list(PLAN_COLUMNS), rows)
    for operation, total in the_plan.by_operation().items():
        typer.echo(
            f"{flow_name(operation)}: {total['run']:g} to run, {total['done']:g} already done, "
            f"{int(total['credits'])} credits, {total['seconds']:.2f} s of video"
        )
    typer.echo(
        f"total: {the_plan.count('run')} to run, {the_plan.count('done')} already done, {the_plan.count('collect')} "
        f"to collect, {the_plan.count('failed_before')} failed before, {the_plan.count('unknown')} of unknown outcome, "
        f"{the_plan.count('refused')} refused, {the_plan.count('skipped')} over max_credits: {the_plan.credits} "
        f"credits; plan {the_plan.csv_key}"
    )
    if csv is not None:
        csv.write_bytes(to_csv(rows, PLAN_COLUMNS))


def run_batch(batch_flow: Any, parameters: dict[str, Any]) -> None:
    """Run the batch here and print its report; exit 1 when any item was not done. Its progress goes to standard
    error: a live bar in a terminal, plain lines otherwise (standard output holds only the report)."""
    from faceswap_flows.cli.progress import batch_progress

    console_without_tracebacks()
    flow_run = batch_flow(**parameters, return_state=True)
    try:
        with batch_progress(Console(stderr=True)):
            state = asyncio.run(flow_run)  # type: ignore[arg-type]
        report = state.result(raise_on_failure=False)
    except (ValueError, RuntimeError, httpx.TransportError) as error:
        fail_on(error)
    if isinstance(report, BaseException):
        fail_on(report)
    typer.echo(report.model_dump_json(indent=2))
    if state.is_failed():
        fail(state.message or "the batch failed")
