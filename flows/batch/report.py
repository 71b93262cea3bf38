"""What a batch shows and keeps: its plan and its report, each as a table artifact and a CSV (the report also as
JSON) in storage, linked from the run."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from pathlib import Path
from typing import Any, Literal, get_args

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.blocks import MediaStorage, StorageError
from faceswap_flows.flows.batch.plan import BatchPlan, PlannedItem, PlanStatus
from faceswap_flows.flows.batch.rows import flow_name
from faceswap_flows.flows.provenance.records import write_manifest
from faceswap_flows.flows.tasks.artifacts import artifact_key

ItemStatus = Literal["stored", "submitted", "done", "failed", "skipped", "refused"]
# The error as the UI's batch table shows it (whole in the CSV and the JSON report).
ERROR_SHOWN = 100
REPORT_COLUMNS = (
    "item",
    "line",
    "operation",
    "status",
    "credits",
    "possibly charged",
    "job_id",
    "task_id",
    "result_key",
    "error",
)
PLAN_COLUMNS = ("item", "line", "operation", "status", "credits", "seconds", "result_key", "reason")
PLAN_STATUS_SHOWN = {
    "done": "already done",
    "collect": "to collect",
    "unknown": "outcome unknown",
    "failed_before": "failed before",
}
PLAN_STATUS_SAID: dict[PlanStatus, str] = {
    "run": "to run",
    "done": "already done",
    "collect": "to collect",
    "unknown": "of unknown outcome",
    "failed_before": "failed before",
    "refused": "refused",
    "skipped": "over max_credits",
}


def plan_in_words(plan: BatchPlan) -> str:
    """The plan's counts in words, e.g. ``2 to run, 1 already done: 4 credits to spend``."""
    counts = [f"{plan.count(status)} {said}" for status, said in PLAN_STATUS_SAID.items() if plan.count(status)]
    ignored = len(plan.ignored)
    not_media = f"; {ignored} file{'s' if ignored != 1 else ''} neither image nor video left out" if ignored else ""
    return f"{', '.join(counts) or 'no items'}: {plan.credits} credits to spend{not_media}"


class ItemOutcome(BaseModel):
    position: int
    id: str | None
    line: int | None = None
    operation: str = "faceswap"
    status: ItemStatus
    task_id: str | None = None
    job_id: str | None = None
    credits: int = 0
    possibly_charged: int = 0
    result_key: str | None = None
    result_uri: str | None = None
    provenance_key: str | None = None
    error: str | None = None
    row: dict[str, Any] | None = None

    @classmethod
    def of(cls, item: PlannedItem, status: ItemStatus, **fields: Any) -> ItemOutcome:
        """The outcome of a planned item: its place, name, line, operation and row, with ``status`` and ``fields``."""
        return cls(
            position=item.position,
            id=item.label,
            line=item.line,
            operation=item.operation,
            status=status,
            row=item.row,
            **fields,
        )


class BatchReport(BaseModel):
    items: list[ItemOutcome]
    credits: int
    possibly_charged: int = 0
    stored: int
    submitted: int
    failed: int
    skipped: int
    done: int = 0
    refused: int = 0
    planned_credits: int = 0
    report_key: str | None = None
    csv_key: str | None = None
    provenance_key: str | None = None

    @classmethod
    def of(cls, items: list[ItemOutcome], planned_credits: int) -> BatchReport:
        counts = {status: sum(o.status == status for o in items) for status in get_args(ItemStatus)}
        return cls(
            items=items,
            credits=sum(o.credits for o in items),
            possibly_charged=sum(o.possibly_charged for o in items),
            planned_credits=planned_credits,
            **counts,
        )

    @property
    def summary(self) -> str:
        return (
            f"batch: {self.stored} stored, {self.submitted} submitted, {self.done} already done, {self.failed} failed, "
            f"{self.refused} refused, {self.skipped} skipped (over max_credits), {self.credits} credits charged"
            f"{f', {self.possibly_charged} possibly charged' if self.possibly_charged else ''} "
            f"(planned {self.planned_credits}); report {self.report_key}"
        )


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def report_rows(report: BatchReport) -> list[dict[str, Any]]:
    """The report's rows, the error beside the status (the table artifact shows columns in this order, and the
    UI's table is cut at the page's edge: the long ids go last)."""
    return [
        {
            "item": o.id or o.position,
            "status": o.status,
            "error": o.error or "",
            "operation": flow_name(o.operation),
            "credits": o.credits,
            "possibly charged": o.possibly_charged,
            "result_key": o.result_key or "",
            "line": o.line if o.line is not None else "",
            "job_id": o.job_id or "",
            "task_id": o.task_id or "",
        }
        for o in report.items
    ]


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's rows for the UI's table: each error cut to its first sentence, at most ``ERROR_SHOWN``
    characters, so the table fits the page; the CSV and the JSON report keep it whole."""
    return [{**row, "error": brief(row["error"])} for row in rows]


def brief(error: str) -> str:
    first = error.split(". ", 1)[0]
    return first if len(first) <= ERROR_SHOWN else first[: ERROR_SHOWN - 1] + "…"


def plan_rows_table(plan: BatchPlan) -> list[dict[str, Any]]:
    return [
        {
            "item": item.label,
            "line": item.line if item.line is not None else "",
            "operation": flow_name(item.operation),
            "status": PLAN_STATUS_SHOWN.get(item.status, item.status),
            "credits": item.credits if item.status == "run" else 0,
            "seconds": round(item.seconds, 3) if item.seconds else "",
            "result_key": item.result_key or "",
            "reason": item.reason or "",
        }
        for item in plan.items
    ]


def _link(storage: MediaStorage, key: str) -> str:
    try:
        return f"[{key}]({storage.url_for(key)})"
    except StorageError:
        return f"`{storage.uri(key)}`"


async def show_plan(storage: MediaStorage, plan: BatchPlan, name: str) -> None:
    """The plan as a CSV in storage and a table artifact, with the credits by operation."""
    rows = plan_rows_table(plan)
    plan.csv_key = f"reports/{artifact_key('plan', name)}-{len(plan.items)}.csv"
    await asyncio.to_thread(storage.write_bytes, plan.csv_key, to_csv(rows, PLAN_COLUMNS))
    totals = [
        {
            "item": f"total {flow_name(operation)}",
            "operation": flow_name(operation),
            "status": f"{t['run']:g} to run, {t['done']:g} done",
            "credits": int(t["credits"]),
            "seconds": round(t["seconds"], 3),
        }
        for operation, t in plan.by_operation().items()
    ]
    await acreate_table_artifact(
        key=artifact_key("plan", name),
        table=rows + totals + [{"item": "total", "credits": plan.credits}],
        description=(
            f"Plan: {plan.count('run')} to run ({plan.credits} credits), {plan.count('done')} already done, "
            f"{plan.count('collect')} to collect (free), {plan.count('failed_before')} failed before, "
            f"{plan.count('unknown')} of unknown outcome, {plan.count('refused')} refused, "
            f"{plan.count('skipped')} over max_credits; CSV {plan.csv_key}"
        ),
    )


async def write_report(storage: MediaStorage, report: BatchReport, name: str) -> None:
    """The report as JSON and CSV in storage under ``reports/batch-<name>-<flow run>-<items>`` (plus the
    provenance manifest of its items), a table artifact, and a markdown artifact linking the files."""
    run_id = flow_run.get_id() or uuid.uuid4().hex
    stem = f"reports/{artifact_key('batch', name)}-{run_id[:8]}-{len(report.items)}"
    report.report_key, report.csv_key = f"{stem}.json", f"{stem}.csv"
    report.provenance_key = f"{stem}-provenance.json"
    rows = report_rows(report)
    await asyncio.to_thread(write_manifest, storage, report.provenance_key, [o.model_dump() for o in report.items])
    await asyncio.to_thread(storage.write_bytes, report.csv_key, to_csv(rows, REPORT_COLUMNS))
    await asyncio.to_thread(storage.write_bytes, report.report_key, report.model_dump_json(indent=2).encode())
    total = {
        "item": "total",
        "status": f"{report.stored + report.submitted + report.done} ok",
        "credits": report.credits,
    }
    await acreate_table_artifact(
        key=artifact_key("batch", name), table=[*table_rows(rows), total], description=report.summary
    )
    await acreate_markdown_artifact(
        key=artifact_key("batch-report", name),
        markdown=(
            f"### Batch report\n\n{report.summary}\n\n- JSON: {_link(storage, report.report_key)}\n"
            f"- CSV: {_link(storage, report.csv_key)}\n- provenance: {_link(storage, report.provenance_key)}\n"
        ),
        description="Where the batch report is stored",
    )


def failed_rows(storage: MediaStorage, report_key: str) -> list[tuple[int | None, dict[str, Any]]]:
    """The rows (with their manifest lines) of an earlier report's items that failed or were skipped."""
    local = Path(report_key).expanduser()
    try:
        data = local.read_bytes() if local.is_file() else storage.read_bytes(report_key)
    except FileNotFoundError:
        raise InputValidationError(f"retry_failed: no report at {report_key!r}: give a report_key") from None
    report = BatchReport.model_validate_json(data)
    return [(o.line, o.row) for o in report.items if o.status in ("failed", "skipped") and o.row]
