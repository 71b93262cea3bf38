"""``run batch``'s progress while the batch runs in this process: a live bar (done / failed / credits) when the
output is a terminal, else one plain line per finished item with the running counts.

``with batch_progress(): asyncio.run(batch_faceswap(...))`` is all a command needs."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from faceswap_flows.flows.batch.progress import BatchListener, BatchStart, Tally, listening

if TYPE_CHECKING:
    from faceswap_flows.flows.batch.report import ItemOutcome


def plan_line(start: BatchStart) -> str:
    return (
        f"batch: {start.to_run} to run, {start.already_done} already done, {start.refused} refused, "
        f"{start.skipped} skipped (over max_credits), {start.planned_credits} credits planned"
    )


def counts(tally: Tally) -> str:
    return f"{tally.finished}/{tally.total} finished: {tally.done} done, {tally.failed} failed, {tally.credits} credits"


class PlainLines:
    """One line when the items start, then one per finished item: its position, id, status and credits, and the
    counts so far (no markup, no colour: for logs and pipes)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.console.out(text, highlight=False)

    def started(self, start: BatchStart) -> None:
        self._line(plan_line(start))

    def finished(self, item: ItemOutcome, tally: Tally) -> None:
        name = f" ({item.id})" if item.id else ""
        self._line(f"item {item.position}{name}: {item.status}, {item.credits} credits; {counts(tally)}")


class LiveBar:
    """A rich progress bar of the items to run, with the done, failed and credit counts beside it."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/]"),
            TextColumn("{task.fields[credits]}/{task.fields[planned]} credits"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task: TaskID = self.bar.add_task("batch", total=None, done=0, failed=0, credits=0, planned=0)

    def started(self, start: BatchStart) -> None:
        self.bar.console.print(plan_line(start), highlight=False, markup=False)
        self.bar.update(self.task, total=start.to_run, planned=start.planned_credits)

    def finished(self, item: ItemOutcome, tally: Tally) -> None:
        self.bar.update(
            self.task, completed=tally.finished, done=tally.done, failed=tally.failed, credits=tally.credits
        )


@contextmanager
def batch_progress(console: Console | None = None) -> Iterator[BatchListener]:
    """The batches run in this block show their progress on ``console`` (default: standard output): a live bar
    when it is a terminal, plain lines otherwise."""
    console = console or Console()
    if not console.is_terminal:
        with listening(PlainLines(console)) as listener:
            yield listener
        return
    live = LiveBar(console)
    with ExitStack() as stack:
        stack.enter_context(live.bar)
        stack.enter_context(logs_above_the_bar())
        yield stack.enter_context(listening(live))


class _Above(io.TextIOBase):
    """Writes to the bar's stand-in for standard error (rich unwraps its proxy when given it as a file)."""

    def __init__(self, proxy: TextIO) -> None:
        self.proxy = proxy

    def write(self, text: str) -> int:
        self.proxy.write(text)
        return len(text)

    def flush(self) -> None:
        self.proxy.flush()

    def isatty(self) -> bool:
        return True


@contextmanager
def logs_above_the_bar() -> Iterator[None]:
    """Prefect's console log lines printed above the live bar, not through it: its handlers' consoles hold the
    standard error of their start, so they are pointed at the one the bar redirects while it is shown."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # as the flow's start would, so its handlers exist now
    consoles = {
        id(handler.console): handler.console
        for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs")
        for handler in logging.getLogger(name).handlers
        if isinstance(getattr(handler, "console", None), Console)
    }
    saved = {key: console.file for key, console in consoles.items()}
    for console in consoles.values():
        console.file = _Above(sys.stderr)
    try:
        yield
    finally:
        for key, console in consoles.items():
            console.file = saved[key]
