"""Where a batch stores each result: an output-name template rendered into a storage key that cannot leave the
storage's basepath, and the fingerprint that names a piece of work (its index entry: ``flows.work_index``)."""

from __future__ import annotations

import hashlib
import json
import re
import string
from typing import Any

from faceswap_flows.aifaceswap.errors import InputValidationError

DEFAULT_OUTPUT_TEMPLATE = "results/batch/{operation}/{source_stem}__{face_stem}-{fingerprint}.{ext}"
TEMPLATE_FIELDS = ("date", "operation", "source_stem", "face_stem", "ext", "id", "fingerprint", "line")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_part(value: object) -> str:
    """A value as one safe path segment: letters, digits, ``._-`` (others become ``_``), no leading dot."""
    return _UNSAFE.sub("_", str(value)).strip("._")[:80] or "item"


def check_key(key: str, template: str) -> str:
    """The rendered key, when it stays inside the storage's basepath (relative, no ``..``, no empty part)."""
    parts = key.split("/")
    if key.startswith(("/", "~")) or "\\" in key or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        raise InputValidationError(
            f"output_template: {template!r} gives {key!r}, which is absolute or leaves the storage's basepath: "
            "use a relative template like 'results/{date}/{source_stem}__{face_stem}.{ext}'"
        )
    return key


def check_template(template: str) -> None:
    """Refuse a template naming an unknown field, or whose keys could leave the storage's basepath."""
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise InputValidationError(f"output_template: {template!r} is not a valid template ({error})") from None
    unknown = [name for name in names if name not in TEMPLATE_FIELDS]
    if unknown or not names:
        raise InputValidationError(
            f"output_template: {template!r} uses unknown field(s) {unknown or '(none at all)'}: "
            f"use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        )
    render_key(template, dict.fromkeys(TEMPLATE_FIELDS, "x"))


def render_key(template: str, values: dict[str, Any]) -> str:
    """The template with each value made a safe path segment, checked to stay inside the basepath."""
    return check_key(template.format_map({k: safe_part(v) for k, v in values.items()}), template)


def fingerprint(operation: str, inputs: dict[str, Any], options: dict[str, Any]) -> str:
    """What makes two items the same work: the operation, the SHA-256 of every input, and every option."""
    identity = json.dumps({"operation": operation, "inputs": inputs, "options": options}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()
