"""The receiver's durable inbox (SQLite): every valid callback is written here before it is acknowledged,
and stays marked as pending until its Prefect event has been accepted by the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from faceswap_flows.aifaceswap.models import TaskCallback
from faceswap_flows.receiver.tokens import JobToken

SCHEMA = """
CREATE TABLE IF NOT EXISTS callbacks (
    task_id     TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL UNIQUE,
    job         TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at REAL NOT NULL,
    emitted_at  REAL,
    deliveries  INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS pending ON callbacks (received_at) WHERE emitted_at IS NULL;
"""


class Outcome(StrEnum):
    NEW = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class InboxEntry:
    job: JobToken
    callback: TaskCallback
    received_at: float
    emitted_at: float | None
    deliveries: int


class Inbox:
    """Thread-safe; every write is committed (fsync'd, WAL) before it returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def record(self, job: JobToken, callback: TaskCallback) -> Outcome:
        """Keep a callback. The first one of a job binds the job to its task_id: another task_id for the
        same job (a replayed token), or another job for the same task_id, is a conflict."""
        return self.record_many([(job, callback)])[0]

    def record_many(self, arrivals: list[tuple[JobToken, TaskCallback]]) -> list[Outcome]:
        """:meth:`record` for several callbacks in one transaction: one disk sync for all (group commit)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                outcomes = [self._record(job, callback) for job, callback in arrivals]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return outcomes

    def _record(self, job: JobToken, callback: TaskCallback) -> Outcome:
        row = self._db.execute(
            "SELECT task_id, job_id FROM callbacks WHERE task_id = ? OR job_id = ?", (callback.task_id, job.job_id)
        ).fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO callbacks (task_id, job_id, job, body, received_at) VALUES (?, ?, ?, ?, ?)",
                (callback.task_id, job.job_id, job.model_dump_json(), callback.model_dump_json(), time.time()),
            )
            return Outcome.NEW
        if tuple(row) == (callback.task_id, job.job_id):
            self._db.execute("UPDATE callbacks SET deliveries = deliveries + 1 WHERE task_id = ?", (callback.task_id,))
            return Outcome.DUPLICATE
        return Outcome.CONFLICT

    def _entries(self, where: str, args: tuple[object, ...]) -> list[InboxEntry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT job, body, received_at, emitted_at, deliveries FROM callbacks WHERE {where}", args
            ).fetchall()
        return [
            InboxEntry(JobToken.model_validate_json(job), TaskCallback.model_validate(json.loads(body)), rec, emit, n)
            for job, body, rec, emit, n in rows
        ]

    def pending(self, limit: int = 200) -> list[InboxEntry]:
        """Callbacks whose event has not been accepted by the Prefect API yet, oldest first."""
        return self._entries("emitted_at IS NULL ORDER BY received_at LIMIT ?", (limit,))

    def get(self, task_id: str) -> InboxEntry | None:
        found = self._entries("task_id = ?", (task_id,))
        return found[0] if found else None

    def get_by_job(self, job_id: str) -> InboxEntry | None:
        found = self._entries("job_id = ?", (job_id,))
        return found[0] if found else None

    def received_since(self, since: float, *, store_by: str | None = None, limit: int = 500) -> list[InboxEntry]:
        """Callbacks received at or after ``since`` (epoch seconds), oldest first; only the jobs whose results
        are stored by ``store_by`` when given. Page on with the last entry's ``received_at``."""
        if store_by is None:
            return self._entries("received_at >= ? ORDER BY received_at LIMIT ?", (since, limit))
        return self._entries(
            "received_at >= ? AND json_extract(job, '$.store_by') = ? ORDER BY received_at LIMIT ?",
            (since, store_by, limit),
        )

    def mark_emitted(self, task_ids: list[str]) -> None:
        """One transaction for the whole batch (row by row, each update would be a disk sync of its own)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE callbacks SET emitted_at = ? WHERE task_id = ?", [(time.time(), t) for t in task_ids]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def counts(self) -> dict[str, int]:
        with self._lock:
            total, pending = self._db.execute("SELECT COUNT(*), COUNT(*) - COUNT(emitted_at) FROM callbacks").fetchone()
        return {"received": total, "pending": pending}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class GroupCommitter:
    """Writes the callbacks that arrive together in one transaction: each caller still returns only once its
    callback is on disk, but a burst costs one disk sync per batch instead of one per callback."""

    def __init__(self, inbox: Inbox, max_batch: int = 256) -> None:
        self.inbox = inbox
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[JobToken, TaskCallback, asyncio.Future[Outcome]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def record(self, job: JobToken, callback: TaskCallback) -> Outcome:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="inbox-group-commit")
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((job, callback, done))
        return await done

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self.max_batch:
                batch.append(self._queue.get_nowait())
            try:
                outcomes = await asyncio.to_thread(self.inbox.record_many, [(job, cb) for job, cb, _ in batch])
            except Exception as error:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for (*_, done), outcome in zip(batch, outcomes, strict=True):
                if not done.done():
                    done.set_result(outcome)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
