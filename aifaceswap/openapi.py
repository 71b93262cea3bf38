"""OpenAPI 3.1 documents built from the pydantic wire models (``model_json_schema``), so the documents the
servers publish at ``/openapi.json`` cannot drift from what they parse and answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"
BEARER = [{"bearer": []}]


@dataclass
class Operation:
    """One method of one path: its request body models by media type, its answers by status code."""

    method: str
    path: str
    summary: str
    responses: dict[int, type[BaseModel] | dict[str, Any]]
    body: dict[str, type[BaseModel]] = field(default_factory=dict)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    secured: bool = False


def path_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def query_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def openapi_document(title: str, version: str, description: str, operations: list[Operation]) -> dict[str, Any]:
    """The OpenAPI document of ``operations``; request bodies in validation mode, answers in serialization mode."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for op in operations:
        wanted += [(model, "validation") for model in op.body.values()]
        wanted += [(model, "serialization") for model in op.responses.values() if isinstance(model, type)]
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op), "responses": {}}
        if op.parameters:
            entry["parameters"] = op.parameters
        if op.secured:
            entry["security"] = BEARER
        if op.body:
            entry["requestBody"] = {
                "required": True,
                "content": {media: {"schema": refs[(model, "validation")]} for media, model in op.body.items()},
            }
        for status, answer in op.responses.items():
            content = (
                answer
                if isinstance(answer, dict)
                else {"application/json": {"schema": refs[(answer, "serialization")]}}
            )
            entry["responses"][str(status)] = {"description": _describe(status), "content": content}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation_id(op: Operation) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in op.path).strip("_")
    return f"{op.method.lower()}_{cleaned}"


def _describe(status: int) -> str:
    return {
        200: "OK",
        400: "the request is refused: the message names the field and the fix",
        401: "missing or wrong credentials",
        402: "not enough credits: nothing charged",
        403: "forged or foreign token",
        404: "not found",
        410: "expired",
        413: "body too large",
        422: "malformed query",
        429: "too many requests: wait Retry-After seconds",
    }.get(status, "answer")
