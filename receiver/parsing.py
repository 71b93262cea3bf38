"""Reading a callback's body whatever the service sends: JSON, form-urlencoded or multipart; numbers as strings;
extra fields; no ``type``. What still cannot be read is reported (:class:`UnreadableCallback`), never raised
as anything else, so the receiver can keep it raw instead of losing a callback whose token verified."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from faceswap_flows.aifaceswap.models import CallbackType, TaskCallback, describe_validation_error

TRUE_WORDS = {"true", "yes", "ok", "success", "succeeded"}
FALSE_WORDS = {"false", "no", "fail", "failed", "failure"}


class UnreadableCallback(ValueError):
    """A body that is no callback even after lenient reading; ``fields`` is what could be read of it."""

    def __init__(self, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


async def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(Headers({"content-type": content_type}), stream(), max_files=16, max_fields=256)
    form = await parser.parse()
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            fields[name] = (await value.read()).decode("utf-8", "replace")
            await value.close()
        else:
            fields[name] = value
    return fields


def _form(body: bytes) -> dict[str, Any]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def body_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """The body's fields by its declared encoding; a JSON or form body sent under another type is read too."""
    kind = media_type(content_type)
    try:
        if kind == "multipart/form-data":
            return await _multipart(body, content_type)
        if kind == "application/x-www-form-urlencoded":
            return _form(body)
        try:
            data = json.loads(body)
        except ValueError:
            fields = _form(body)
            if "task_id" in fields:
                return fields
            raise UnreadableCallback(
                f"the body is not JSON, form-urlencoded or multipart (Content-Type {kind!r})"
            ) from None
    except UnreadableCallback:
        raise
    except Exception as error:  # every parser's own errors (multipart boundary, recursion, encoding...)
        raise UnreadableCallback(f"the {kind or 'untyped'} body cannot be read: {type(error).__name__}") from None
    if not isinstance(data, dict):
        raise UnreadableCallback(f"the JSON body is a {type(data).__name__}, not an object with the callback's fields")
    return data


def _as_int(value: Any) -> Any:
    """``"1"``, ``" 1.0 "``, ``1.0``, ``true`` -> 1; anything else is left for validation to name."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return 1
        if word in FALSE_WORDS:
            return 0
        try:
            value = float(word)
        except ValueError:
            return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def normalized(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields with the callback's numbers as numbers, task_id as text and ``type`` defaulted to single."""
    data = dict(fields)
    for name in ("success", "type"):
        if name in data:
            data[name] = _as_int(data[name])
    if data.get("type") in (None, ""):
        data["type"] = int(CallbackType.SINGLE)
    task_id = data.get("task_id")
    if isinstance(task_id, int | float) and not isinstance(task_id, bool):
        data["task_id"] = str(int(task_id)) if isinstance(task_id, int) or task_id.is_integer() else str(task_id)
    if isinstance(data.get("result_image"), str):
        data["result_image"] = data["result_image"].strip() or None
    return data


async def parse_callback(body: bytes, content_type: str) -> TaskCallback:
    """The callback in ``body``; UnreadableCallback (with the fields that could be read) otherwise."""
    fields = await body_fields(body, content_type)
    try:
        return TaskCallback.model_validate(normalized(fields))
    except ValidationError as error:
        raise UnreadableCallback(describe_validation_error(error), fields) from None
    except (ValueError, TypeError, RecursionError) as error:
        raise UnreadableCallback(f"{type(error).__name__}: {error}", fields) from None


def found_result_image(fields: dict[str, Any]) -> str | None:
    """An http(s) result URL in what could be read of an unparsed callback (for ``faceswap-flows collect``)."""
    for name in ("result_image", "result_url", "result", "url", "image"):
        value = fields.get(name)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
            return value.strip()
    return None


def found_task_id(fields: dict[str, Any]) -> str | None:
    value = fields.get("task_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if 0 < len(text) <= 200 else None
