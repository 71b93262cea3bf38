"""A batch manifest's text as items: CSV (header ``source_image,face_image[,id]``) or JSONL, one item a line.
Any line that is not an item is refused with its line number and what to fix, never with a parser's crash."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import describe_validation_error

NEEDS = "each line needs source_image and face_image (and optionally id)"


class BatchItem(BaseModel):
    """One line of the manifest."""

    source_image: str
    face_image: str
    id: str | None = None


def decode_manifest(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputValidationError(f"manifest {name} line {line}: is not UTF-8 text: save the file as UTF-8") from None


def _item(row: Any, line: int) -> BatchItem:
    if not isinstance(row, dict):
        raise InputValidationError(f"manifest line {line}: is a {type(row).__name__}, not an object: {NEEDS}")
    try:
        return BatchItem.model_validate(row)
    except ValidationError as error:
        raise InputValidationError(f"manifest line {line}: {describe_validation_error(error)}: {NEEDS}") from None


def _jsonl_rows(text: str) -> list[tuple[int, Any]]:
    rows = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            rows.append((line, json.loads(content)))
        except (ValueError, RecursionError):
            raise InputValidationError(f"manifest line {line}: is not a JSON object: {NEEDS}") from None
    return rows


def _csv_rows(text: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            extra = row.pop(None, None)  # type: ignore[call-overload]
            if extra:
                raise InputValidationError(
                    f"manifest line {reader.line_num}: has {len(extra)} more value(s) than the header has columns"
                )
            rows.append((reader.line_num, {k: v for k, v in row.items() if v is not None}))
    except csv.Error as error:
        raise InputValidationError(f"manifest line {reader.line_num}: is not CSV ({error}): {NEEDS}") from None
    return rows


def parse_manifest(text: str, *, jsonl: bool) -> list[BatchItem]:
    """The items of a manifest's text; InputValidationError naming the first bad line otherwise."""
    rows = _jsonl_rows(text) if jsonl else _csv_rows(text)
    items = [_item(row, line) for line, row in rows]
    if not items:
        raise InputValidationError("manifest: has no items")
    return items
