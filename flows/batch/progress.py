"""A batch's progress for whoever runs it in this process (the command line's progress bar): the plan's counts
when the items start, then each item as it finishes, with the running counts.

The caller listens with ``with listening(listener): ...`` around the flow call; the batch takes the listener from
the context once, when its items start, and carries it to its task runs (threads included). Nothing listens by
default: then reporting costs nothing. A listener that raises is logged and dropped, never failing the batch.

Example:
    ```python
    with listening(MyListener()):
        asyncio.run(batch_faceswap("manifest.csv"))
    ```
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from faceswap_flows.flows.batch.plan import BatchPlan
    from faceswap_flows.flows.batch.report import ItemOutcome

DONE = ("stored", "submitted")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchStart:
    """The plan, when its items start: how many run, and what the plan already settled."""

    to_run: int
    already_done: int
    refused: int
    skipped: int
    planned_credits: int


@dataclass(frozen=True)
class Tally:
    """The items run so far: finished of ``total``, done (stored or submitted), failed, and credits spent."""

    total: int
    finished: int = 0
    done: int = 0
    failed: int = 0
    credits: int = 0


class BatchListener(Protocol):
    def started(self, start: BatchStart) -> None: ...

    def finished(self, item: ItemOutcome, tally: Tally) -> None: ...


_listener: ContextVar[BatchListener | None] = ContextVar("faceswap_batch_listener", default=None)


@contextmanager
def listening(listener: BatchListener) -> Iterator[BatchListener]:
    """Batches run inside this block (in this context) report to ``listener``."""
    token = _listener.set(listener)
    try:
        yield listener
    finally:
        _listener.reset(token)


class BatchProgress:
    """What a running batch reports to: its listener, if any, and the tally (an item finished again, as a retried
    group re-attaches it, replaces its earlier outcome). Safe to call from any thread."""

    def __init__(self, listener: BatchListener | None) -> None:
        self.listener = listener
        self._lock = threading.Lock()
        self._outcomes: dict[int, ItemOutcome] = {}
        self._total = 0

    @classmethod
    def start(cls, plan: BatchPlan) -> BatchProgress:
        """The progress of ``plan``'s items, reported to the listener of the current context."""
        progress = cls(_listener.get())
        progress._total = plan.count("run")
        start = BatchStart(
            to_run=progress._total,
            already_done=plan.count("done"),
            refused=plan.count("refused"),
            skipped=plan.count("skipped"),
            planned_credits=plan.credits,
        )
        progress._tell(lambda listener: listener.started(start))
        return progress

    def finished(self, outcome: ItemOutcome) -> None:
        """One item's outcome (told again only when it changed)."""
        if self.listener is None:
            return
        with self._lock:
            if self._outcomes.get(outcome.position) == outcome:
                return
            self._outcomes[outcome.position] = outcome
            tally = self.tally()
            self._tell(lambda listener: listener.finished(outcome, tally))

    def settle(self, outcomes: Iterable[ItemOutcome]) -> None:
        """The items' final outcomes: those not told yet (a group whose task run failed as a whole) are told."""
        for outcome in outcomes:
            self.finished(outcome)

    def tally(self) -> Tally:
        outcomes = self._outcomes.values()
        return Tally(
            total=self._total,
            finished=len(outcomes),
            done=sum(o.status in DONE for o in outcomes),
            failed=sum(o.status == "failed" for o in outcomes),
            credits=sum(o.credits for o in outcomes),
        )

    def _tell(self, call: Callable[[BatchListener], None]) -> None:
        if self.listener is None:
            return
        try:
            call(self.listener)
        except Exception:
            logger.exception("the batch's progress listener failed; the batch goes on without it")
            self.listener = None
