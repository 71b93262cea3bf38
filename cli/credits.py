"""``faceswap-flows credits``: what was spent, from the ledger of credits in the storage block
(``flows.ledger``), by day, operation, deployment and flow run, with what may have been charged apart."""

from __future__ import annotations

import asyncio
import csv
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from faceswap_flows.cli.common import fail, load_storage_block
from faceswap_flows.devstack.prefect_server import drain_prefect_workers

if TYPE_CHECKING:
    from faceswap_flows.blocks import MediaStorage
    from faceswap_flows.flows.ledger import PaidSend


def _deployment_names(ids: set[str]) -> dict[str, str]:
    """Deployment ids -> names, from the Prefect API when it answers (ids otherwise)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    async def read() -> dict[str, str]:
        names = {}
        async with get_client() as client:
            for deployment_id in ids:
                try:
                    names[deployment_id] = (await client.read_deployment(UUID(deployment_id))).name
                except Exception:
                    names[deployment_id] = deployment_id
        return names

    try:
        return asyncio.run(read()) if ids else {}
    except Exception:
        return {i: i for i in ids}


def _settle_unknown(storage: MediaStorage, sends: list[PaidSend]) -> list[PaidSend]:
    """The sends again, after settling each job whose swap's outcome is unknown by the callbacks Prefect stored
    for it (a callback proves the service ran, and charged, that task)."""
    from faceswap_flows.flows.ledger import POSSIBLY_CHARGED, SWAP, every_send, settle_by_callback
    from faceswap_flows.flows.tasks.waiting import job_callbacks

    jobs = {s.job_id for s in sends if s.purpose == SWAP and s.outcome in POSSIBLY_CHARGED and s.job_id}
    if not jobs:
        return sends

    async def settle() -> None:
        for job_id in sorted(jobs):
            for callback in await job_callbacks(job_id):
                if callback.get("task_id"):
                    settle_by_callback(storage, job_id, callback["task_id"], callback.get("success") == 1)

    try:
        asyncio.run(settle())
    except Exception as error:
        typer.secho(f"warning: could not read callbacks from the Prefect API ({error}): not settled", err=True)
        return sends
    return every_send(storage)


def credits(
    by: Annotated[
        str, typer.Option(help="Group by these, comma-separated: day, operation, deployment, flow_run.")
    ] = "day,operation,deployment",
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    since: Annotated[str | None, typer.Option(help="Only sends on or after this day (YYYY-MM-DD, UTC).")] = None,
    storage_block: Annotated[
        str, typer.Option("--storage", "--storage-block", help="Name of the MediaStorage block holding the ledger.")
    ] = "faceswap-media",
    settle: Annotated[
        bool, typer.Option(help="First settle sends whose outcome is unknown by their jobs' stored callbacks.")
    ] = True,
) -> None:
    """Credits spent, from the ledger every paid call is written in: charged (the service's answer or callback
    proves it) and possibly charged (the outcome stayed unknown) apart, refused sends and failed jobs counted.
    A flow run shows as its flow's name and the first 8 characters of its id.

    Example: faceswap-flows credits --by day,flow_run --since 2026-12-01
    """
    from datetime import UTC, date, datetime

    from faceswap_flows.flows.ledger import SPEND_KEYS, every_send, spend_rows

    keys = [key.strip().replace("-", "_") for key in by.split(",") if key.strip()]
    if not keys or any(key not in SPEND_KEYS for key in keys):
        fail(f"--by: {by!r}: use a comma-separated list of {', '.join(SPEND_KEYS)}")
    start = 0.0
    if since:
        try:
            start = date.fromisoformat(since).toordinal()
        except ValueError:
            fail(f"--since: {since!r} is not a day: use YYYY-MM-DD")
    storage = load_storage_block(storage_block)
    found = every_send(storage)
    if settle:
        found = _settle_unknown(storage, found)
    sends = [s for s in found if not start or datetime.fromtimestamp(s.sent_at, UTC).toordinal() >= start]
    rows = spend_rows(sends, keys)
    if "deployment" in keys:
        names = _deployment_names({str(r["deployment"]) for r in rows if r["deployment"] not in ("", "-")})
        for row in rows:
            row["deployment"] = names.get(str(row["deployment"]), row["deployment"])
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_table(rows, storage.uri("ledger"))
    drain_prefect_workers()  # the block-loaded event, sent now rather than announced at exit


def _print_table(rows: list[dict[str, object]], where: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Credits, from the ledger at {where}", title_justify="left")
    short = {"possibly charged": "possibly", "failed jobs": "failed", "flow_run": "flow run"}
    numeric = {"sends", "charged", "possibly charged", "refused", "failed jobs"}
    rare = {"refused", "failed jobs"}  # shown only when some row has one
    columns = [c for c in rows[0] if c not in rare or any(row[c] for row in rows)]
    for column in columns:
        header = short.get(column, column)
        shrinks = column in ("deployment", "flow_run", "operation") and column != "day"
        justify = "right" if column in numeric else "left"
        table.add_column(header, justify=justify, no_wrap=True, min_width=None if shrinks else len(header))
    for row in rows:
        table.add_row(*(str(row[column]) for column in columns), end_section=row is rows[-2])
    Console().print(table)
