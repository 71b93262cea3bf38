"""The receivers' part of the scale drill: callbacks spread over the receivers behind nginx, one receiver SIGKILLed
during the burst of released callbacks and started again on its inbox once every callback is in (a replaced
receiver on the same volume: it emits what it had acknowledged but not emitted), and the figures that show where
each callback went: callbacks per inbox, the callbacks the sandbox sent again, which receiver took those."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from multi_server import MultiServerStack


def inbox_received(inbox: Path) -> dict[str, float]:
    """task_id -> received_at of every callback in an inbox ({} before the receiver made it)."""
    if not inbox.exists():
        return {}
    with sqlite3.connect(f"file:{inbox}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT task_id, received_at FROM callbacks").fetchall())


def inboxes_times(inboxes: list[Path]) -> tuple[int, float, float]:
    """(distinct callbacks, first and last received_at) over every inbox."""
    received: dict[str, float] = {}
    for inbox in inboxes:
        for task_id, at in inbox_received(inbox).items():
            received[task_id] = min(at, received.get(task_id, at))
    times = received.values()
    return len(received), min(times, default=0.0), max(times, default=0.0)


class ReceiverKill:
    """SIGKILL receiver ``name`` ``delay`` seconds after ``start`` (the release of the held callbacks), frozen
    (SIGSTOP) ``freeze`` seconds before, so that callbacks are in flight to it when it dies: a bare SIGKILL on 2
    busy cores caught none in one of two runs (the receiver answers in milliseconds: 0 callbacks sent again).
    ``finish`` starts it again and puts the figures in ``figures["killed_receiver"]``."""

    def __init__(self, topology: MultiServerStack, name: str, delay: float, freeze: float = 0.5) -> None:
        assert topology.stack is not None
        self.topology, self.stack, self.name, self.delay = topology, topology.stack, name, delay
        self.freeze = freeze
        self.received_at_kill = -1
        self.timer = threading.Timer(delay, self._kill)
        self.timer.daemon = True

    def start(self) -> ReceiverKill:
        self.timer.start()
        return self

    def _kill(self) -> None:
        os.killpg(self.topology.procs.pid(self.name), signal.SIGSTOP)
        time.sleep(self.freeze)
        self.topology.kill(self.name)
        self.received_at_kill = inboxes_times(self.stack.inboxes)[0]
        print(f"  killed {self.name} (SIGKILL) {self.delay + self.freeze} s after the release", flush=True)

    def finish(self, figures: dict[str, Any]) -> None:
        self.timer.join()
        self.topology.restart_receiver(self.name)
        figures["killed_receiver"] = {
            "process": self.name,
            "after_seconds": self.delay + self.freeze,
            "frozen_seconds": self.freeze,
            "received_before_kill": self.received_at_kill,
            "restarted": True,
        }


def receiver_figures(stack: Any, sandbox_status: dict[str, Any], killed: str | None) -> dict[str, Any]:
    """Callbacks per receiver, those in two inboxes, and the callbacks the sandbox sent again: how many, and how
    many of them the receivers that were not killed took."""
    per_inbox = {name: set(inbox_received(inbox)) for name, (_, inbox) in stack.receivers.items()}
    retried = set(sandbox_status.get("retried", []))
    others = set().union(*(tasks for name, tasks in per_inbox.items() if name != killed))
    in_two = set.intersection(*per_inbox.values()) if len(per_inbox) > 1 else set()
    return {
        "callbacks_per_receiver": {name: len(tasks) for name, tasks in per_inbox.items()},
        "callbacks_in_two_inboxes": len(in_two),
        "callbacks_retried": len(retried),
        "retried_taken_by_others": len(retried & others),
    }


def receiver_check(f: dict[str, Any]) -> tuple[str, str, str, bool]:
    """The checks table's row of the receivers: every receiver took callbacks and, with one killed mid-burst,
    the callbacks it left unanswered were sent again and taken by another."""
    per = f.get("callbacks_per_receiver", {})
    killed, jobs = f.get("killed_receiver"), f.get("jobs", 0)
    spread = len(per) > 1 and all(per.values())
    if not killed:
        return ("callbacks spread over the receivers", str(per), "every receiver > 0", spread)
    before, retried = killed["received_before_kill"], f.get("callbacks_retried", 0)
    figure = (
        f"{killed['process']} frozen {killed['frozen_seconds']} s then SIGKILLed {killed['after_seconds']} s after "
        f"the release, {before} of {jobs} in; "
        f"per receiver {per}; {retried} sent again, {f.get('retried_taken_by_others')} of them taken by another"
    )
    met = spread and 0 < before < jobs and retried > 0 and f.get("retried_taken_by_others") == retried
    return ("receiver killed mid-burst, its callbacks go to the other", figure, "killed mid-burst, all taken", met)
