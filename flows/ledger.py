"""The ledger of credits: one entry per paid send, in the storage block where every worker sees it
(``ledger/<job_id>/<send_id>.json``), written before the send (``sent``) and again with what its answer proved.

Every credit figure (a run's result, its credits artifact, a provenance record, a batch report, the ``credits``
command) is computed from these entries, never counted a second time. A job's entries include the paid calls
that were only a means to it (face detection for reference photos or a video frame).

What an outcome means for the bill: ``accepted`` and ``failed`` were charged (the API does not say it refunds a
failed job; ``refunded`` is for when a service says so), ``sent`` (no answer recorded: the worker died) and
``unknown`` may have been charged, ``refused`` was not.

Example:
    ```python
    bill = job_bill(storage, "3f2a...")
    print(bill.charged, bill.possibly_charged, bill.sends)
    ```
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Literal

from prefect.context import FlowRunContext
from pydantic import BaseModel, ValidationError

from faceswap_flows.blocks import MediaStorage

LEDGER_PREFIX = "ledger"
Outcome = Literal["sent", "accepted", "unknown", "refused", "failed", "refunded"]
CHARGED: frozenset[str] = frozenset({"accepted", "failed"})
POSSIBLY_CHARGED: frozenset[str] = frozenset({"sent", "unknown"})
NOTE_LIMIT = 300
SWAP = "swap"


class PaidSend(BaseModel):
    """One paid call as it was sent, and what its answer proved."""

    job_id: str
    send_id: str
    operation: str
    purpose: str = SWAP
    credits: int
    estimated: bool = True
    outcome: Outcome = "sent"
    task_id: str | None = None
    sent_at: float
    answered_at: float | None = None
    flow_run_id: str | None = None
    flow_name: str | None = None
    deployment_id: str | None = None
    note: str | None = None

    @property
    def charged(self) -> int:
        return self.credits if self.outcome in CHARGED else 0

    @property
    def possibly_charged(self) -> int:
        return self.credits if self.outcome in POSSIBLY_CHARGED else 0

    def answered(self, outcome: Outcome, **changes: object) -> PaidSend:
        """This send once its outcome is known (``note``s are kept short: the head of an error)."""
        note = changes.get("note")
        if isinstance(note, str) and len(note) > NOTE_LIMIT:
            changes["note"] = note[: NOTE_LIMIT - 3] + "..."
        return self.model_copy(update={"outcome": outcome, "answered_at": time.time(), **changes})


def new_send(job_id: str, operation: str, credits: int, *, purpose: str = SWAP, number: int | None = None) -> PaidSend:
    """A send about to go out: numbered (``<operation>-send<n>``, a job's own submission) or unique (a call that
    is a means to the job, several of which may run at once)."""
    send_id = f"{operation}-send{number}" if number is not None else f"{operation}-{uuid.uuid4().hex[:12]}"
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return PaidSend(
        job_id=job_id,
        send_id=send_id,
        operation=operation,
        purpose=purpose,
        credits=credits,
        sent_at=time.time(),
        flow_run_id=str(run.id) if run is not None else None,
        flow_name=context.flow.name if context is not None and context.flow is not None else None,
        deployment_id=str(run.deployment_id) if run is not None and run.deployment_id else None,
    )


def entry_key(job_id: str, send_id: str) -> str:
    return f"{LEDGER_PREFIX}/{job_id}/{send_id}.json"


def write_send(storage: MediaStorage, send: PaidSend) -> None:
    storage.write_bytes(entry_key(send.job_id, send.send_id), send.model_dump_json().encode())


def _read(storage: MediaStorage, keys: Iterable[str]) -> list[PaidSend]:
    sends = []
    for key in keys:
        if not key.endswith(".json"):
            continue
        try:
            sends.append(PaidSend.model_validate_json(storage.read_bytes(key)))
        except (FileNotFoundError, ValidationError, json.JSONDecodeError):
            continue  # being written (it appears whole), or not an entry
    return sorted(sends, key=lambda send: (send.sent_at, send.send_id))


def job_sends(storage: MediaStorage, job_id: str) -> list[PaidSend]:
    """The job's sends, oldest first."""
    return _read(storage, storage.list(f"{LEDGER_PREFIX}/{job_id}/"))


def every_send(storage: MediaStorage) -> list[PaidSend]:
    """Every send the ledger holds, oldest first."""
    return _read(storage, storage.list(f"{LEDGER_PREFIX}/"))


class Bill(BaseModel):
    """What a set of sends cost: ``charged`` (proven), ``possibly_charged`` (outcome unknown), how many sends of
    each kind, and the service's task ids."""

    charged: int = 0
    possibly_charged: int = 0
    estimated: bool = False
    sends: int = 0
    unknown: int = 0
    refused: int = 0
    failed: int = 0
    task_ids: list[str] = []

    @classmethod
    def of(cls, sends: Iterable[PaidSend]) -> Bill:
        bill = cls()
        for send in sends:
            bill.sends += 1
            bill.charged += send.charged
            bill.possibly_charged += send.possibly_charged
            bill.estimated |= bool(send.charged) and send.estimated
            bill.unknown += send.outcome in POSSIBLY_CHARGED
            bill.refused += send.outcome == "refused"
            bill.failed += send.outcome == "failed"
            if send.task_id and send.task_id not in bill.task_ids:
                bill.task_ids.append(send.task_id)
        return bill

    def rows(self) -> dict[str, object]:
        return self.model_dump(exclude={"task_ids"})


def job_bill(storage: MediaStorage, job_id: str) -> Bill:
    return Bill.of(job_sends(storage, job_id))


def settle_by_callback(storage: MediaStorage, job_id: str, task_id: str, success: bool) -> Bill:
    """A callback of the job proves the service ran ``task_id``: the send that has that task id, else the job's
    oldest submission (not a means to it) whose outcome is not known, takes it (``accepted``, or ``failed`` when the
    callback says success 0). Returns the job's bill after it."""
    return Bill.of(settled_sends(storage, job_id, task_id, success))


def settled_sends(storage: MediaStorage, job_id: str, task_id: str, success: bool) -> list[PaidSend]:
    """The job's sends, oldest first, once the callback for ``task_id`` is settled (see :func:`settle_by_callback`):
    one read of the job's ledger folder."""
    sends = job_sends(storage, job_id)
    outcome: Outcome = "accepted" if success else "failed"
    mine = next((send for send in sends if send.task_id == task_id), None)
    if mine is None:
        mine = next((s for s in sends if s.purpose == SWAP and s.outcome in POSSIBLY_CHARGED), None)
        note = "outcome known from the job's callback"
    else:
        note = mine.note
    if mine is not None and (mine.outcome != outcome or mine.task_id != task_id):
        settled = mine.answered(outcome, task_id=task_id, note=note)
        write_send(storage, settled)
        sends = [settled if send.send_id == settled.send_id else send for send in sends]
    return sends


SPEND_KEYS = ("day", "operation", "deployment", "flow_run")


def spend_rows(sends: Iterable[PaidSend], by: Iterable[str] = SPEND_KEYS) -> list[dict[str, object]]:
    """The spend grouped ``by`` day (UTC), operation, deployment and flow run: sends, credits charged and possibly
    charged (apart), refused sends; a ``total`` row last."""
    keys = tuple(by)
    unknown = [key for key in keys if key not in SPEND_KEYS]
    if unknown:
        raise ValueError(f"by: {unknown} unknown: use {', '.join(SPEND_KEYS)}")
    groups: dict[tuple[str, ...], list[PaidSend]] = {}
    for send in sends:
        facts = {
            "day": time.strftime("%Y-%m-%d", time.gmtime(send.sent_at)),
            "operation": send.operation,
            "deployment": send.deployment_id or "-",
            "flow_run": f"{send.flow_name or 'flow'} {send.flow_run_id[:8]}" if send.flow_run_id else "-",
        }
        groups.setdefault(tuple(facts[key] for key in keys), []).append(send)
    rows = [_spend_row(dict(zip(keys, group, strict=True)), found) for group, found in sorted(groups.items())]
    everything = [send for found in groups.values() for send in found]
    return [*rows, _spend_row(dict.fromkeys(keys, "") | {keys[0]: "total"} if keys else {}, everything)]


def _spend_row(group: dict[str, str], sends: list[PaidSend]) -> dict[str, object]:
    bill = Bill.of(sends)
    return {
        **group,
        "sends": bill.sends,
        "charged": bill.charged,
        "possibly charged": bill.possibly_charged,
        "refused": bill.refused,
        "failed jobs": bill.failed,
    }
