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
    job_id      TEXT NOT NULL,
    job         TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at REAL NOT NULL,
    emitted_at  REAL,
    deliveries  INTEGER NOT NULL DEFAULT 1,
    first_task_id TEXT
);
CREATE INDEX IF NOT EXISTS pending ON callbacks (received_at) WHERE emitted_at IS NULL;
CREATE INDEX IF NOT EXISTS by_job ON callbacks (job_id, received_at);
"""
COLUMNS = "task_id, job_id, job, body, received_at, emitted_at, deliveries"


class Outcome(StrEnum):
    NEW = "accepted"
    DUPLICATE = "duplicate"
    DUPLICATE_JOB = "duplicate-job"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class InboxEntry:
    job: JobToken
    callback: TaskCallback
    received_at: float
    emitted_at: float | None
    deliveries: int
    first_task_id: str | None = None
    """Set on a job's second (or later) task: the task that called back first for the same job."""


def _upgrade(db: sqlite3.Connection) -> None:
    """An inbox made before a job could have two tasks (job_id UNIQUE, no first_task_id): rebuild it, rows kept."""
    found = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'callbacks'").fetchone()
    if found is None or "first_task_id" in found[0]:
        return
    db.execute("BEGIN IMMEDIATE")
    db.execute("ALTER TABLE callbacks RENAME TO callbacks_old")
    db.execute("DROP INDEX IF EXISTS pending")
    db.execute(SCHEMA.split(";")[0])
    db.execute(f"INSERT INTO callbacks ({COLUMNS}) SELECT {COLUMNS} FROM callbacks_old")
    db.execute("DROP TABLE callbacks_old")
    db.execute("COMMIT")


class Inbox:
    """Thread-safe; every write is committed (fsync'd, WAL) before it returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        _upgrade(self._db)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def record(self, job: JobToken, callback: TaskCallback) -> Outcome:
        """Keep a callback. The same task again is a duplicate delivery; another task of a job that already called
        back (the job was sent twice) is kept too, as ``DUPLICATE_JOB`` naming the first; another job for a
        task_id already taken is a conflict (a replayed token)."""
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
        row = self._db.execute("SELECT job_id FROM callbacks WHERE task_id = ?", (callback.task_id,)).fetchone()
        if row is not None:
            if row[0] != job.job_id:
                return Outcome.CONFLICT
            self._db.execute("UPDATE callbacks SET deliveries = deliveries + 1 WHERE task_id = ?", (callback.task_id,))
            return Outcome.DUPLICATE
        first = self._db.execute(
            "SELECT task_id FROM callbacks WHERE job_id = ? ORDER BY received_at LIMIT 1", (job.job_id,)
        ).fetchone()
        self._db.execute(
            "INSERT INTO callbacks (task_id, job_id, job, body, received_at, first_task_id) VALUES (?, ?, ?, ?, ?, ?)",
            (
                callback.task_id,
                job.job_id,
                job.model_dump_json(),
                callback.model_dump_json(),
                time.time(),
                first[0] if first else None,
            ),
        )
        return Outcome.NEW if first is None else Outcome.DUPLICATE_JOB

    def _entries(self, where: str, args: tuple[object, ...]) -> list[InboxEntry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT job, body, received_at, emitted_at, deliveries, first_task_id FROM callbacks WHERE {where}",
                args,
            ).fetchall()
        return [
            InboxEntry(
                JobToken.model_validate_json(job), TaskCallback.model_validate(json.loads(body)), rec, emit, n, first
            )
            for job, body, rec, emit, n, first in rows
        ]

    def pending(self, limit: int = 200) -> list[InboxEntry]:
        """Callbacks whose event has not been accepted by the Prefect API yet, oldest first."""
        return self._entries("emitted_at IS NULL ORDER BY received_at LIMIT ?", (limit,))

    def get(self, task_id: str) -> InboxEntry | None:
        found = self._entries("task_id = ?", (task_id,))
        return found[0] if found else None

    def get_by_job(self, job_id: str) -> InboxEntry | None:
        """The job's first successful callback, else its first callback (a job sent twice has two tasks)."""
        found = self._entries(
            "job_id = ? ORDER BY json_extract(body, '$.success') = 1 DESC, received_at LIMIT 1", (job_id,)
        )
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

    def probe_write(self) -> str | None:
        """None when a row can be written here now (a probe row, written in a transaction rolled back); else why
        not (read-only file, locked database, full disk...)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT INTO callbacks (task_id, job_id, job, body, received_at) VALUES (?, ?, '{}', '{}', ?)",
                        (f"probe-{time.time_ns()}", "probe", time.time()),
                    )
                finally:
                    self._db.execute("ROLLBACK")
            except sqlite3.Error as error:
                return f"{self.path}: {type(error).__name__}: {error}"
        return None

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
