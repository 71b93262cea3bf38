"""The same-run baseline of storing: a bare script (no Prefect) that fetches, labels, signs and writes the results
a drill stored, with the same code the flows use for each step, ``concurrency`` at a time over one pooled client,
into a scratch folder. Its rate is what this machine does with the flows' orchestration taken away.

Run inside a drill (scale_drill.py, once every result is stored) or alone, with the drill's stack still up:
``../.venv/bin/python bare_store.py MEDIA_DIR INBOX.sqlite... --signing-block faceswap-signing``."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

RECORD_SUFFIX = ".provenance.json"


def stored_jobs(media_dir: Path, inboxes: list[Path], limit: int | None = None) -> list[dict[str, Any]]:
    """task_id, operation, job_id, stored key and the service's result URL (from the receivers' inboxes) of each
    result stored under ``media_dir``/results."""
    urls: dict[str, str] = {}
    for inbox in inboxes:
        with sqlite3.connect(f"file:{inbox}?mode=ro", uri=True) as db:
            for task_id, body in db.execute("SELECT task_id, body FROM callbacks"):
                urls[task_id] = json.loads(body).get("result_image") or ""
    jobs = []
    for record_path in sorted((media_dir / "results").rglob(f"*{RECORD_SUFFIX}"))[:limit]:
        record = json.loads(record_path.read_text())
        if urls.get(record["task_id"]):
            job = {key: record.get(key) for key in ("task_id", "operation", "job_id")}
            jobs.append(job | {"key": record["output"]["key"], "url": urls[record["task_id"]]})
    return jobs


async def bare_store(jobs: list[dict[str, Any]], signing_block: str, concurrency: int = 8) -> dict[str, Any]:
    """Fetch each job's result URL, label, sign and write it with a small JSON record beside it, into a scratch folder;
    the wall time, results per second and CPU seconds of this process."""
    import hashlib

    import httpx

    from faceswap_flows.blocks import ContentSigningKey, MediaStorage
    from faceswap_flows.flows.provenance.content_credentials import ManifestFacts, SigningPlan, sign_bytes
    from faceswap_flows.flows.provenance.labels import SyntheticLabel, label_image

    key = await ContentSigningKey.aload(signing_block)
    scratch = Path(tempfile.mkdtemp(prefix="bare-store-"))
    storage = MediaStorage(basepath=str(scratch))
    slots = asyncio.Semaphore(concurrency)

    def finish(job: dict[str, Any], data: bytes) -> None:
        label = SyntheticLabel(task_id=job["task_id"], operation=job["operation"], job_id=job["job_id"])
        labelled, _ = label_image(data, label)
        facts = ManifestFacts(operation=job["operation"], task_id=job["task_id"], job_id=job["job_id"])
        signed = sign_bytes(SigningPlan(block=signing_block, key=key, facts=facts), labelled, "image/png", "r.png")
        storage.write_bytes(job["key"], signed)
        record = {"task_id": job["task_id"], "sha256": hashlib.sha256(signed).hexdigest(), "bytes": len(signed)}
        storage.write_bytes(f"{job['key']}{RECORD_SUFFIX}", json.dumps(record).encode())

    async def one(http: httpx.AsyncClient, job: dict[str, Any]) -> None:
        async with slots:
            response = await http.get(job["url"])
            response.raise_for_status()
            await asyncio.to_thread(finish, job, response.content)

    cpu, started = time.process_time(), time.monotonic()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(one(http, job) for job in jobs))
    seconds = time.monotonic() - started
    written = len(list(scratch.rglob(f"*{RECORD_SUFFIX}")))
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "results": written,
        "seconds": round(seconds, 2),
        "per_s": round(written / max(seconds, 1e-6), 1),
        "cpu_ms_per_result": round((time.process_time() - cpu) * 1000 / max(written, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("media_dir", type=Path)
    parser.add_argument("inboxes", type=Path, nargs="+", help="the receivers' inbox.sqlite files")
    parser.add_argument("--signing-block", default="faceswap-signing")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    print(asyncio.run(bare_store(stored_jobs(args.media_dir, args.inboxes, args.limit), args.signing_block)))


if __name__ == "__main__":
    main()
