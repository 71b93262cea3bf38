"""``faceswap-flows doctor``: the deployment checked as it will run, one row per check; exit 1 on a failure."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from faceswap_flows.flows.defaults import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_SIGNING, DEFAULT_STORAGE

if TYPE_CHECKING:
    from faceswap_flows.flows.doctor import DoctorReport

STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def print_table(report: DoctorReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"faceswap-flows doctor (Prefect API {report.api_url or 'not set'})", show_lines=True)
    for column in ("check", "result", "fix"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        status = f"[{STYLES[row.status]}]{row.status.upper()}[/]"
        table.add_row(f"{status} {row.check}", row.result, row.fix)
    Console(soft_wrap=False).print(table)


def doctor(
    credentials: Annotated[str, typer.Option(help="Name of the AIFaceSwapCredentials block.")] = DEFAULT_CREDENTIALS,
    storage: Annotated[str, typer.Option(help="Name of the MediaStorage block.")] = DEFAULT_STORAGE,
    receiver: Annotated[str, typer.Option(help="Name of the WebhookReceiver block.")] = DEFAULT_RECEIVER,
    signing_block: Annotated[str, typer.Option(help="Name of the ContentSigningKey block.")] = DEFAULT_SIGNING,
    spend: Annotated[
        bool, typer.Option(help="Also run one real swap of two small built-in photos (2 credits), end to end.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
) -> None:
    """Check a deployment before spending: the Prefect API and its event stream, each block, the storage and the URL
    the service fetches, that public_url reaches a receiver holding the block's secret, the reachability rules, the
    signing certificate and its time-stamp authority, the API rate limit. Nothing is paid without --spend. Exit 1 on
    any failure (warnings do not fail).

    Example: faceswap-flows doctor --receiver prod-receiver --spend
    """
    from faceswap_flows.flows.doctor import DoctorBlocks, run_doctor

    if spend:
        from faceswap_flows.cli.common import console_without_tracebacks

        console_without_tracebacks()  # the swap's log lines, without tracebacks: its row says what failed
    names = DoctorBlocks(credentials=credentials, storage=storage, receiver=receiver, signing_block=signing_block)
    with tempfile.TemporaryDirectory(prefix="faceswap-doctor-") as folder:
        photos = demo_photos(Path(folder)) if spend else None
        report = asyncio.run(run_doctor(names, photos))
    if json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_table(report)
    if not report.ok:
        raise typer.Exit(1)


def demo_photos(folder: Path) -> tuple[Path, Path]:
    """The demo's two public-domain photos (the photos extra), written to ``folder``."""
    from faceswap_flows.cli.common import require_extras
    from faceswap_flows.devstack.demo import write_demo_photos

    require_extras("doctor --spend", "photos")
    return write_demo_photos(folder)
