"""A batch's rows: one line of a CSV or JSONL manifest, parsed line by line, each row refused with its line number
when it is not a job the single flows would take."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import describe_validation_error
from faceswap_flows.blocks import MediaStorage, StorageError
from faceswap_flows.flows.media.video import chosen_faces

BatchOperation = Literal["faceswap", "multi_faceswap", "video_faceswap", "multi_video_faceswap"]
LIST_SEPARATOR = "|"
LIST_FIELDS = ("face_images", "face_indexes", "reference_images")
VIDEO_OPERATIONS = ("video_faceswap", "multi_video_faceswap")
# Each operation's flow, as `faceswap-flows run`, the Prefect UI and the batch's plan and report name it; a manifest
# names an operation either way (kept as the API's name: the fingerprints of stored work are made of it).
FLOW_NAMES = {
    "faceswap": "faceswap",
    "multi_faceswap": "multi-faceswap",
    "video_faceswap": "video-faceswap",
    "multi_video_faceswap": "multi-video-faceswap",
}
OPERATIONS = {flow: operation for operation, flow in FLOW_NAMES.items()}


def flow_name(operation: str) -> str:
    """The flow of an API operation (``multi_faceswap`` -> ``multi-faceswap``), as users see it named."""
    return FLOW_NAMES.get(operation, operation)


class BatchRow(BaseModel):
    """One job of a batch, named as the single flows name their parameters. In a CSV, list fields hold their
    values separated by ``|`` (``faces/a.jpg|faces/b.jpg``); empty cells are left out."""

    model_config = ConfigDict(extra="forbid")

    operation: BatchOperation = "faceswap"
    source_image: str | None = None
    source_video: str | None = None
    face_image: str | None = None
    face_images: list[str] | None = None
    face_indexes: list[int] | None = None
    reference_images: list[str] | None = None
    frame_time: float = 0.0
    enhance: int = 0
    trim_start: float | None = None
    trim_end: float | None = None
    id: str | None = None

    @field_validator("operation", mode="before")
    @classmethod
    def _flow_or_api_name(cls, value: Any) -> Any:
        return OPERATIONS.get(value, value) if isinstance(value, str) else value

    @field_validator(*LIST_FIELDS, mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(LIST_SEPARATOR) if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @model_validator(mode="after")
    def _fields_of_the_operation(self) -> BatchRow:
        video = self.operation in VIDEO_OPERATIONS
        needed, other = ("source_video", "source_image") if video else ("source_image", "source_video")
        if not getattr(self, needed):
            raise ValueError(f"{self.operation} needs {needed}: add it (the file whose face is replaced)")
        if getattr(self, other):
            raise ValueError(f"{other} is not an input of {self.operation}: use {needed}")
        if self.operation in ("faceswap", "video_faceswap"):
            if not self.face_image or self.face_images:
                raise ValueError(f"{self.operation} takes one face_image (not face_images): give the new face")
            if self.face_indexes or self.reference_images:
                raise ValueError(f"{self.operation} replaces the main face: use multi_{self.operation} to choose")
        else:
            self._check_multi()
        if not video and (self.enhance or self.trim_start is not None or self.trim_end is not None):
            raise ValueError("enhance, trim_start and trim_end are options of videos: remove them")
        return self

    def _check_multi(self) -> None:
        faces = self.face_images or ([self.face_image] if self.face_image else [])
        self.face_images, self.face_image = faces, None
        if self.operation == "multi_faceswap":
            wanted = self.face_indexes if self.face_indexes is not None else self.reference_images
            if not faces or wanted is None or len(wanted) != len(faces):
                raise ValueError(
                    "face_images: give one face image per face to replace, and as many face_indexes (or "
                    f"reference_images); got {len(faces)} face image(s) and {len(wanted or [])} index(es)"
                )
            return
        if self.reference_images:
            raise ValueError("reference_images: multi_video_faceswap chooses faces by face_indexes of its frame")
        self.face_indexes = chosen_faces(faces, self.face_indexes)

    @property
    def source(self) -> str:
        return self.source_video or self.source_image or ""

    @property
    def faces(self) -> list[str]:
        return self.face_images or ([self.face_image] if self.face_image else [])

    @property
    def label(self) -> str:
        return self.id or Path(self.source).name


@dataclass(frozen=True)
class ManifestLine:
    """One line of a manifest: its row, or why it was refused."""

    line: int | None
    row: BatchRow | None = None
    error: str | None = None


def parse_row(data: Any, line: int | None) -> ManifestLine:
    """A row from one parsed line (a CSV record as a dict, or a JSON value); refused with its line number."""
    where = f"manifest line {line}" if line is not None else "item"
    if not isinstance(data, dict):
        return ManifestLine(line, error=f"{where}: not an object of fields (got {type(data).__name__})")
    cleaned = {str(k): v for k, v in data.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    try:
        return ManifestLine(line, row=BatchRow.model_validate(cleaned))
    except ValidationError as error:
        return ManifestLine(line, error=f"{where}: {describe_validation_error(error)}")


def parse_manifest_lines(text: str, fmt: Literal["csv", "jsonl"]) -> list[ManifestLine]:
    """Every row of a manifest with its line number (1 = the file's first line, a CSV's header); a line that
    cannot be parsed, or is not a job, is kept with its error instead."""
    return _jsonl_lines(text) if fmt == "jsonl" else _csv_lines(text)


def _jsonl_lines(text: str) -> list[ManifestLine]:
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as error:
            lines.append(
                ManifestLine(number, error=f"manifest line {number}: not a JSON object ({error}): fix the line")
            )
            continue
        lines.append(parse_row(data, number))
    return lines


def _csv_lines(text: str) -> list[ManifestLine]:
    reader = csv.reader(io.StringIO(text))
    lines: list[ManifestLine] = []
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return lines
        except csv.Error as error:
            lines.append(ManifestLine(start, error=f"manifest line {start}: not a CSV record ({error}): fix the line"))
            return lines
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            problem = _header_problem(header)
            if problem:
                lines.append(ManifestLine(start, error=f"manifest line {start}: {problem}"))
                return lines
            continue
        if len(record) > len(header):
            lines.append(
                ManifestLine(start, error=f"manifest line {start}: {len(record)} values for {len(header)} columns")
            )
            continue
        lines.append(parse_row(dict(zip(header, record, strict=False)), start))


def _header_problem(header: list[str]) -> str | None:
    known = ", ".join(BatchRow.model_fields)
    if not {"source_image", "source_video"} & set(header):
        return (
            f"source_image (or source_video): no such column in the header {header}: name the columns "
            f"source_image,face_image[,id] (all columns: {known})"
        )
    unknown = [name for name in header if name not in BatchRow.model_fields]
    return f"unknown column(s) {unknown}: the columns are {known}" if unknown else None


def decode_manifest(data: bytes, name: str) -> str:
    """A manifest's bytes as text (UTF-8, with or without a byte-order mark); refused naming the line otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputValidationError(f"manifest {name} line {line}: is not UTF-8 text: save the file as UTF-8") from None


def read_manifest_text(storage: MediaStorage, manifest: str) -> str:
    """A manifest's text: a local file, or a key in storage."""
    local = Path(manifest).expanduser()
    if local.is_file():
        return decode_manifest(local.read_bytes(), manifest)
    if storage.exists(manifest):
        return decode_manifest(storage.read_bytes(manifest), manifest)
    if local.is_dir() or _is_storage_folder(storage, manifest):
        raise InputValidationError(
            f"manifest: {manifest!r} is a folder, not a manifest: to swap every image and video in it, give it as "
            "`source` (with `face_image` or `face_map`)"
        )
    raise InputValidationError(f"manifest: {manifest!r} is neither a local file nor a key in storage: check the path")


def _is_storage_folder(storage: MediaStorage, key: str) -> bool:
    try:
        return bool(key.strip("/")) and bool(storage.list(key.rstrip("/") + "/"))
    except (StorageError, OSError, ValueError):
        return False


def manifest_format(manifest: str) -> Literal["csv", "jsonl"]:
    return "jsonl" if manifest.endswith((".jsonl", ".ndjson", ".json")) else "csv"


def read_manifest(storage: MediaStorage, manifest: str) -> list[ManifestLine]:
    """The lines of a CSV (with a header) or JSONL manifest, local or in storage."""
    lines = parse_manifest_lines(read_manifest_text(storage, manifest), manifest_format(manifest))
    if not lines:
        raise InputValidationError(f"manifest: {manifest} has no items")
    return lines
