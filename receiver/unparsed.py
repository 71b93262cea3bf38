"""Callbacks whose token verified but whose body is no callback even read leniently: kept raw in the inbox's
database (table ``unparsed``), answered 200 so the service does not give up, and emitted as
``aifaceswap.task.unparsed`` events carrying the raw payload, so ``faceswap-flows collect`` can still store a
``result_image`` found in it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.events import Event

from faceswap_flows.receiver.events import EVENT_PREFIX, Emitter, job_event, post_events
from faceswap_flows.receiver.parsing import found_result_image, found_task_id
from faceswap_flows.receiver.tokens import JobToken

logger = logging.getLogger("faceswap.receiver")

UNPARSED = f"{EVENT_PREFIX}.unparsed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS unparsed (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       TEXT NOT NULL,
    digest       TEXT NOT NULL,
    job          TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body         BLOB NOT NULL,
    fields       TEXT NOT NULL,
    error        TEXT NOT NULL,
    received_at  REAL NOT NULL,
    emitted_at   REAL,
    deliveries   INTEGER NOT NULL DEFAULT 1,
    UNIQUE (job_id, digest)
);
"""


@dataclass(frozen=True)
class UnparsedEntry:
    id: int
    job: JobToken
    content_type: str
    body: bytes
    fields: dict[str, Any]
    error: str
    received_at: float

    @property
    def task_id(self) -> str | None:
        return found_task_id(self.fields)

    @property
    def result_image(self) -> str | None:
        return found_result_image(self.fields)


class UnparsedInbox:
    """Thread-safe, every write committed before it returns; shares the inbox's SQLite file (WAL)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def record(self, job: JobToken, body: bytes, content_type: str, fields: dict[str, Any], error: str) -> bool:
        """Keep a raw callback; False when the same body of the same job was already kept (a redelivery)."""
        digest = hashlib.sha256(body).hexdigest()
        readable = json.dumps(fields, default=str, ensure_ascii=True)
        with self._lock:
            updated = self._db.execute(
                "UPDATE unparsed SET deliveries = deliveries + 1 WHERE job_id = ? AND digest = ?", (job.job_id, digest)
            ).rowcount
            if updated:
                return False
            self._db.execute(
                "INSERT INTO unparsed (job_id, digest, job, content_type, body, fields, error, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.job_id, digest, job.model_dump_json(), content_type, body, readable, error, time.time()),
            )
            return True

    def _entries(self, where: str, args: tuple[object, ...]) -> list[UnparsedEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, job, content_type, body, fields, error, received_at FROM unparsed WHERE " + where, args
            ).fetchall()
        return [
            UnparsedEntry(row_id, JobToken.model_validate_json(job), ctype, bytes(body), json.loads(fields), err, rec)
            for row_id, job, ctype, body, fields, err, rec in rows
        ]

    def pending(self, limit: int = 200) -> list[UnparsedEntry]:
        return self._entries("emitted_at IS NULL ORDER BY id LIMIT ?", (limit,))

    def all(self) -> list[UnparsedEntry]:
        return self._entries("1 ORDER BY id", ())

    def mark_emitted(self, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany("UPDATE unparsed SET emitted_at = ? WHERE id = ?", [(time.time(), i) for i in ids])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM unparsed").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def unparsed_event(entry: UnparsedEntry) -> Event:
    """The event of one unparsed callback: the raw body (as text), why it was not read, and the job's facts."""
    job = entry.job
    subject = entry.task_id or job.job_id
    return job_event(
        job,
        id_key=f"unparsed:{entry.id}:{job.job_id}",
        received_at=entry.received_at,
        name=UNPARSED,
        subject=f"{EVENT_PREFIX}.{subject}",
        title=f"{job.operation} {subject} (unparsed callback)",
        payload={
            "task_id": entry.task_id,
            "success": 1 if entry.result_image else 0,
            "result_image": entry.result_image,
            "raw": entry.body.decode("utf-8", "replace"),
            "content_type": entry.content_type,
            "fields": entry.fields,
            "error": entry.error,
        },
    )


class UnparsedEmitter(Emitter):
    """Emits the pending unparsed callbacks; like the callbacks' Emitter, it keeps them and retries while the
    Prefect API is unreachable."""

    what = "unparsed callbacks"

    def __init__(self, store: UnparsedInbox, *, max_backoff: float = 10.0) -> None:
        self.store = store
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self.emitted = 0

    async def emit_pending(self, client: PrefectClient) -> int:
        pending = await asyncio.to_thread(self.store.pending)
        if pending:
            await post_events(client, [unparsed_event(entry) for entry in pending])
            await asyncio.to_thread(self.store.mark_emitted, [entry.id for entry in pending])
            self.emitted += len(pending)
        return len(pending)
