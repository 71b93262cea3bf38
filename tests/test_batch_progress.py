"""``run batch``'s progress: plain lines when its output is not a terminal (the installed command, piped), a live
bar on a terminal (a rich Console forced to terminal mode), each against a real batch on the sandbox whose report
the counts must match."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from rich.console import Console

from faceswap_flows.cli.progress import LiveBar, batch_progress
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.batch.plan import BatchPlan
from faceswap_flows.flows.batch.progress import BatchProgress, BatchStart, Tally, listening
from faceswap_flows.flows.batch.report import BatchReport, ItemOutcome
from tests.support import SANDBOX_KEY
from tests.test_cli import faceswap_flows

ITEM_LINE = re.compile(
    r"item (?P<position>\d+) \((?P<id>[^)]+)\): (?P<status>\w+), (?P<credits>\d+) credits; "
    r"(?P<finished>\d+)/(?P<total>\d+) finished: (?P<done>\d+) done, (?P<failed>\d+) failed, (?P<spent>\d+) credits"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def write_manifest(stack, path: Path) -> Path:
    """Four distinct swaps, one of them with a face photo that has no face (the job fails, unpaid), and a row whose
    source is an empty file (refused by the plan, never run)."""
    pairs = [
        ("astronaut", "grace"),
        ("grace", "astronaut"),
        ("group", "grace"),
        ("astronaut", "cat"),
        ("empty", "grace"),
    ]
    rows = [
        {"id": f"{source}-{face}", "source_image": str(stack.files[source]), "face_image": str(stack.files[face])}
        for source, face in pairs
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def assert_counts_match(tally: dict[str, int], report: BatchReport) -> None:
    run = [item for item in report.items if not (item.error or "").startswith("refused before submission")]
    assert tally["finished"] == tally["total"] == len(run) == 4
    assert tally["done"] == report.stored + report.submitted == 3
    assert tally["failed"] == report.failed - report.refused == 1
    assert tally["credits"] == report.credits


def charged(stack) -> int:
    """What the sandbox charged, refunds aside: a report counts a failed job as charged (the API does not say it
    refunds)."""
    return int(stack.sandbox.ledger(SANDBOX_KEY)["charged"])


def test_piped_run_batch_prints_a_line_per_item_with_the_counts(stack, prefect_api: str, tmp_path: Path) -> None:
    manifest = write_manifest(stack, tmp_path / "manifest.jsonl")
    before = charged(stack)
    ran = faceswap_flows("run", "batch", str(manifest), "--force", "--items-per-task", "2", prefect_api=prefect_api)
    assert ran.returncode == 1, ran.stderr[-2000:]  # an item failed: the batch says so
    assert "2 failed, 1 refused" in ran.stderr  # the refused row counts as failed in the report
    report = BatchReport.model_validate_json(ran.stdout)  # standard output holds the report alone (| jq works)
    lines = [line for line in ran.stderr.splitlines() if line.startswith(("batch: ", "item "))]  # progress
    assert not ANSI.search("".join(lines)), "plain lines carry no terminal codes"

    assert lines[0] == (
        f"batch: 4 to run, 0 already done, 1 refused, 0 skipped (over max_credits), {report.planned_credits} "
        "credits planned"
    )
    items = [ITEM_LINE.fullmatch(line) for line in lines[1:]]
    assert all(items) and len(items) == 4, lines
    told = {(int(m["position"]), m["id"], m["status"], int(m["credits"])) for m in items}
    assert told == {
        (item.position, item.id, item.status, item.credits) for item in report.items if item.id != "empty-grace"
    }
    assert [int(m["finished"]) for m in items] == [1, 2, 3, 4]
    assert [int(m["spent"]) for m in items] == sorted(int(m["spent"]) for m in items)
    last = items[-1]
    assert_counts_match(
        {key: int(last[key]) for key in ("finished", "total", "done", "failed")} | {"credits": int(last["spent"])},
        report,
    )
    assert report.credits == charged(stack) - before > 0  # a failed job's credits too (the sandbox refunds it)


async def test_on_a_terminal_run_batch_shows_a_live_bar(stack, tmp_path: Path) -> None:
    manifest = write_manifest(stack, tmp_path / "manifest.jsonl")
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system="standard")
    before = charged(stack)
    with batch_progress(console) as bar:
        state = await batch_faceswap(str(manifest), force=True, items_per_task=1, return_state=True)
    report = await state.result(raise_on_failure=False)
    assert isinstance(bar, LiveBar) and isinstance(report, BatchReport)
    assert state.is_failed() and report.credits == charged(stack) - before > 0

    task = bar.bar.tasks[0]
    shown = {"finished": int(task.completed), "total": int(task.total or 0), **task.fields}
    assert_counts_match(shown, report)
    assert task.fields["planned"] == report.planned_credits
    drawn = ANSI.sub("", screen.getvalue())
    assert "\x1b[" in screen.getvalue(), "a terminal gets a drawn bar"
    bars = re.findall(r"(\d+)/(\d+) +(\d+) done (\d+) failed +(\d+)/(\d+) credits", drawn)
    assert bars[-1] == tuple(str(n) for n in (4, 4, 3, 1, report.credits, report.planned_credits)), bars[-3:]
    logged = [line for line in drawn.splitlines() if "item 3 failed" in line]
    assert logged and not [line for line in logged if "credits" in line], "the log line is above the bar, not in it"


def outcome(position: int, status: str, credits: int) -> ItemOutcome:
    return ItemOutcome(position=position, id=f"item-{position}", status=status, credits=credits)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.tallies: list[Tally] = []

    def started(self, start: BatchStart) -> None:
        pass

    def finished(self, item: ItemOutcome, tally: Tally) -> None:
        self.tallies.append(tally)


def test_an_item_told_again_unchanged_is_not_counted_twice() -> None:
    recorder = Recorder()
    progress = BatchProgress(recorder)
    progress.finished(outcome(0, "stored", 2))
    progress.settle([outcome(0, "stored", 2), outcome(1, "failed", 0)])  # a retried group re-attaches item 0
    assert recorder.tallies[-1] == Tally(total=0, finished=2, done=1, failed=1, credits=2)
    assert len(recorder.tallies) == 2


def test_the_listener_of_the_context_is_told_and_dropped_when_it_fails() -> None:
    class Broken(Recorder):
        def finished(self, item: ItemOutcome, tally: Tally) -> None:
            raise OSError("the terminal went away")

    with listening(Broken()) as broken:
        progress = BatchProgress.start(BatchPlan(items=[]))
    assert progress.listener is broken
    progress.finished(outcome(0, "stored", 2))  # logged, and the batch goes on
    assert progress.listener is None
    progress.finished(outcome(1, "stored", 2))
    assert BatchProgress.start(BatchPlan(items=[])).listener is None, "outside the block nothing listens"
