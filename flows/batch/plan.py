"""A batch's plan, made before anything is spent and without calling the API: for every row, whether it runs,
is already done (same inputs by SHA-256, same options, result stored and recorded), is refused (and why) or is
over the budget; and what it costs, video seconds read from the files. Work sent before whose result is not
stored is planned ``unknown`` here; :mod:`flows.batch.earlier` then looks at what became of that job."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import (
    FaceSwapRequest,
    MultiFaceSwapRequest,
    MultiVideoFaceSwapRequest,
    VideoFaceSwapRequest,
    sniff_image_type,
    validate_model,
)
from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.batch.names import fingerprint, render_key
from faceswap_flows.flows.batch.rows import BatchRow, ManifestLine
from faceswap_flows.flows.batch.sources import is_uri, open_input
from faceswap_flows.flows.media.video import VideoError, trim_video, video_facts
from faceswap_flows.flows.provenance.records import OutputOptions, is_stored, output_parameters
from faceswap_flows.flows.tasks.media import is_url, url_sha256s
from faceswap_flows.flows.work_index import read_entry

PLAN_THREADS = 8
PLACEHOLDER_URL = "https://plan.invalid/input"
PlanStatus = Literal["run", "done", "collect", "unknown", "failed_before", "refused", "skipped"]
"""``collect``: an earlier job of the same work called back, its result is stored without paying again;
``unknown``: an earlier job's outcome is not known, so it is not sent again (unless ``force``);
``failed_before``: the service reported an earlier job of the same work failed (sent again only when
``retry_failed`` names it, or with ``force``)."""


def _placeholder_png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class PlannedItem(BaseModel):
    """One row of the plan. ``inputs``: each input field and what to stage for it (a local copy for videos
    and inputs outside the storage); ``url_sha256``: the SHA-256 the plan read of each URL input (staging does
    not download it again); ``row``: the row itself, so a later batch can retry it; ``job_id``, ``task_id``: the
    earlier job of this work that failed or whose outcome is unknown (its report row names them)."""

    position: int
    line: int | None
    label: str
    operation: str
    status: PlanStatus
    reason: str | None = None
    credits: int = 0
    seconds: float | None = None
    fingerprint: str | None = None
    result_key: str | None = None
    row: dict[str, Any] | None = None
    inputs: dict[str, str] = {}
    url_sha256: dict[str, str] = {}
    job_id: str | None = None
    task_id: str | None = None


class BatchPlan(BaseModel):
    items: list[PlannedItem]
    ignored: list[str] = []
    csv_key: str | None = None

    def count(self, status: PlanStatus) -> int:
        return sum(item.status == status for item in self.items)

    @property
    def credits(self) -> int:
        return sum(item.credits for item in self.items if item.status == "run")

    def by_operation(self) -> dict[str, dict[str, float]]:
        """Per operation: items to run, items already done, credits and video seconds of the items to run."""
        totals: dict[str, dict[str, float]] = {}
        for item in self.items:
            total = totals.setdefault(item.operation, {"run": 0, "done": 0, "credits": 0, "seconds": 0.0})
            if item.status in ("run", "done"):
                total[item.status] += 1
            if item.status == "run":
                total["credits"] += item.credits
                total["seconds"] += item.seconds or 0.0
        return totals


class Planner:
    """Reads each distinct input once (SHA-256, kind check, video facts), then plans rows."""

    def __init__(self, storage: MediaStorage, workdir: Path, template: str, output: OutputOptions, force: bool) -> None:
        self.storage, self.workdir, self.template, self.output, self.force = storage, workdir, template, output, force
        self.date = datetime.now(UTC).strftime("%Y-%m-%d")
        self._images: dict[str, tuple[str, str]] = {}
        self._url_sha256: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def read_urls(self, lines: list[ManifestLine]) -> None:
        """Hash every distinct image URL of the rows at once, over one pooled client (PLAN_THREADS at a time)."""
        urls = {
            ref
            for line in lines
            if line.row is not None
            for ref in ([] if line.row.source_video else [line.row.source])
            + line.row.faces
            + (line.row.reference_images or [])
            if is_url(ref) and ref not in self._url_sha256
        }
        if urls:
            self._url_sha256.update(asyncio.run(url_sha256s(sorted(urls), PLAN_THREADS)))

    def image(self, ref: str, field: str) -> tuple[str, str]:
        """(SHA-256, what to stage) of an image input, checked as the single flows check it."""
        with self._lock:
            known = self._images.get(ref)
        if known is None:
            known = self._read_image(ref, field)
            with self._lock:
                self._images[ref] = known
        return known

    def _read_image(self, ref: str, field: str) -> tuple[str, str]:
        if is_url(ref):
            if ref not in self._url_sha256:
                self._url_sha256.update(asyncio.run(url_sha256s([ref])))
            return self._url_sha256[ref] or hashlib.sha256(ref.encode()).hexdigest(), ref
        data = self._read(ref, field)
        if not data:
            raise InputValidationError(f"{field}: {ref} is empty: pass a JPEG, PNG or WebP image")
        if sniff_image_type(data[:32]) is None:
            raise InputValidationError(f"{field}: {ref} is not an image: pass a JPEG, PNG or WebP file")
        sha = hashlib.sha256(data).hexdigest()
        if not is_uri(ref):
            return sha, ref
        local = self.workdir / sha[:16] / Path(ref).name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        return sha, str(local)

    def _read(self, ref: str, field: str) -> bytes:
        try:
            with open_input(self.storage, ref) as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError):
            raise InputValidationError(
                f"{field}: {ref!r} is not an http(s) URL, an existing local file, or a key in storage "
                f"{self.storage.basepath}: check the path"
            ) from None

    def video(self, row: BatchRow) -> tuple[str, str, float]:
        """(SHA-256 of the video, the local copy to stage (trimmed when asked), its duration in seconds)."""
        ref = row.source
        copy = Path(ref).expanduser()
        if not copy.is_file():
            target = self.workdir / hashlib.sha256(ref.encode()).hexdigest()[:16] / Path(ref).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_url(ref):
                raise InputValidationError("source_video: give a local file or a storage key in a batch")
            try:
                with open_input(self.storage, ref) as remote, target.open("wb") as handle:
                    shutil.copyfileobj(remote, handle)
            except FileNotFoundError:
                raise InputValidationError(f"source_video: {ref!r} is not a local file or a key in storage") from None
            copy = target
        with copy.open("rb") as handle:
            sha = hashlib.file_digest(handle, "sha256").hexdigest()
        try:
            facts = video_facts(copy, "source_video")
            if row.trim_start is None and row.trim_end is None:
                return sha, str(copy), facts.duration
            trimmed = self.workdir / sha[:16] / f"trim-{row.trim_start or 0:g}-{row.trim_end or 0:g}-{copy.name}"
            trimmed.parent.mkdir(parents=True, exist_ok=True)
            facts = trim_video(copy, trimmed, row.trim_start or 0.0, row.trim_end)
        except VideoError as error:
            raise InputValidationError(str(error)) from None
        return sha, str(trimmed), facts.duration

    def free_key(self, key: str) -> str:
        """``key``, or when a result is already stored there (other inputs, or ``force``): ``stem-2.ext``,
        ``stem-3.ext``... A stored result is never overwritten, so a sweep never skips the new one."""
        stem, dot, ext = key.rpartition(".") if "." in key.rsplit("/", 1)[-1] else (key, "", "")
        candidate, number = key, 1
        while self.storage.exists(candidate):
            number += 1
            candidate = f"{stem}-{number}{dot}{ext}"
        return candidate

    def plan_row(self, line: ManifestLine, position: int) -> PlannedItem:
        if line.row is None:
            label = f"line {line.line}" if line.line else "item"
            return PlannedItem(
                position=position, line=line.line, label=label, operation="?", status="refused", reason=line.error
            )
        row = line.row
        base = {"position": position, "line": line.line, "label": row.label, "operation": row.operation}
        base["row"] = row.model_dump(exclude_none=True)
        try:
            return self._plan(row, base)
        except (InputValidationError, ValueError) as error:
            where = f"manifest line {line.line}: " if line.line else f"{row.label}: "
            return PlannedItem(**base, status="refused", reason=where + str(error))

    def _plan(self, row: BatchRow, base: dict[str, Any]) -> PlannedItem:
        shas: dict[str, Any] = {}
        inputs: dict[str, str] = {}
        seconds = None
        if row.source_video:
            shas["source_video"], inputs["source_video"], seconds = self.video(row)
        else:
            shas["source_image"], inputs["source_image"] = self.image(row.source, "source_image")
        faces_field = "face_image" if row.face_image else "face_images"
        for i, face in enumerate(row.faces):
            field = "face_image" if faces_field == "face_image" else f"face_images[{i}]"
            shas[field], inputs[field] = self.image(face, field)
        for i, reference in enumerate(row.reference_images or []):
            field = f"reference_images[{i}]"
            shas[field], inputs[field] = self.image(reference, field)
        credits = check_with_models(row, seconds)
        options = {
            **row.model_dump(include={"face_indexes", "frame_time", "enhance", "trim_start", "trim_end"}),
            **output_parameters(self.output),
        }
        item_fingerprint = fingerprint(row.operation, shas, options)
        earlier = None if self.force else read_entry(self.storage, item_fingerprint)
        done = earlier is not None and is_stored(self.storage, earlier.result_key)
        values = {
            "date": self.date,
            "operation": row.operation,
            "source_stem": Path(row.source).stem,
            "face_stem": "+".join(Path(face).stem for face in row.faces),
            "ext": "mp4" if row.source_video else "png",
            "id": row.id or Path(row.source).stem,
            "fingerprint": item_fingerprint[:12],
            "line": base["line"] or base["position"],
        }
        status: PlanStatus = "done" if done else "unknown" if earlier else "run"
        return PlannedItem(
            **base,
            status=status,
            reason="already done: same inputs and options, result stored" if done else None,
            credits=0 if done else credits,
            seconds=seconds,
            fingerprint=item_fingerprint,
            result_key=earlier.result_key if earlier else self.free_key(render_key(self.template, values)),
            inputs=inputs,
            url_sha256={field: sha for field, ref in inputs.items() if (sha := self._url_sha256.get(ref))},
        )


def check_with_models(row: BatchRow, seconds: float | None) -> int:
    """Validate the row with the request model of its operation (the same checks and messages as the single
    flows, with stand-in URLs) and return its credits: the swap, plus the face finding it needs first."""
    common = {"webhook": PLACEHOLDER_URL}
    faces = [PLACEHOLDER_URL] * len(row.faces)
    if row.operation == "faceswap":
        validate_model(FaceSwapRequest, {**common, "source_image": PLACEHOLDER_URL, "face_image": PLACEHOLDER_URL})
        return estimate_credits("faceswap")
    if row.operation == "multi_faceswap":
        if row.face_indexes is not None:
            validate_model(
                MultiFaceSwapRequest,
                {**common, "source_image": PLACEHOLDER_URL, "face_image": faces, "index": row.face_indexes},
            )
            return estimate_credits("multi_faceswap")
        return estimate_credits("multi_faceswap") + (1 + len(row.reference_images or [])) * estimate_credits(
            "extract_face"
        )
    video = {**common, "source_video": PLACEHOLDER_URL, "duration": seconds, "enhance": row.enhance}
    if row.operation == "video_faceswap":
        return validate_model(VideoFaceSwapRequest, {**video, "face_image": PLACEHOLDER_URL}).estimated_credits()
    refs = [{"face_ref": _placeholder_png(), "face_url": url} for url in faces]
    request = validate_model(MultiVideoFaceSwapRequest, {**video, "ref_info": refs})
    return request.estimated_credits() + estimate_credits("extract_base64_face")


def plan_rows(planner: Planner, lines: list[ManifestLine], max_credits: int | None) -> list[PlannedItem]:
    """Every row planned (:func:`read_rows`), then :func:`settle` (what became of earlier jobs is not looked at:
    work sent before whose result is not stored stays ``unknown``)."""
    return settle(read_rows(planner, lines), planner.force, max_credits)


def read_rows(planner: Planner, lines: list[ManifestLine]) -> list[PlannedItem]:
    """Every row planned, its inputs read a few at a time."""
    planner.read_urls(lines)
    with ThreadPoolExecutor(PLAN_THREADS) as pool:
        return list(pool.map(planner.plan_row, lines, range(len(lines))))


def settle(items: list[PlannedItem], force: bool, max_credits: int | None) -> list[PlannedItem]:
    """Rows to run naming the same result key are refused (the same work twice runs twice only with ``force``,
    each under its own key), and rows to run beyond ``max_credits`` (in manifest order) are marked skipped."""
    seen: dict[str, PlannedItem] = {}
    for item in items:
        if item.status in ("done", "refused", "skipped") or item.result_key is None:
            continue
        first = seen.setdefault(item.result_key, item)
        if first is not item and force and first.fingerprint == item.fingerprint:
            stem, dot, ext = item.result_key.rpartition(".")
            item.result_key = f"{stem}-item{item.position}{dot}{ext}" if dot else f"{item.result_key}-{item.position}"
            seen[item.result_key] = item
        elif first is not item:
            item.status, item.credits = "refused", 0
            item.reason = (
                f"{item.label}: the same work as {first.label} (same inputs and options): done once"
                if first.fingerprint == item.fingerprint
                else f"{item.label}: output_template gives {item.result_key}, as for {first.label}: "
                "add {fingerprint} or {id} to the template"
            )
    spent = 0
    for item in items:
        if item.status == "run":
            if max_credits is not None and spent + item.credits > max_credits:
                item.status, item.reason = "skipped", f"over max_credits ({max_credits})"
            else:
                spent += item.credits
    return items
