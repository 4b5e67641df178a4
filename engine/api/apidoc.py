"""OpenAPI pieces shared by the API modules, and the registry of the feature modules' paths.

A feature module (pools, pipelines...) calls :func:`register` with a function building its paths;
:mod:`engine.api.openapi` adds them to the document.  Kept apart from the views so the document's
builder imports no view module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PathBuilder = Callable[[Any], dict[str, Any]]
"""``builder(workspace) -> {path: {method: operation}}`` (paths relative to ``/api/v1``)."""

DocAmender = Callable[[Any, dict[str, Any]], None]
"""``amender(workspace, document)`` changes the built document in place (e.g. adds a property a feature puts
beside the records of the core endpoints)."""

_BUILDERS: list[PathBuilder] = []
_AMENDERS: list[DocAmender] = []

ERROR = {"$ref": "#/components/schemas/Error"}
FREE = {"type": "object"}


def register(builder: PathBuilder) -> PathBuilder:
    """Add a feature's paths to the OpenAPI document (usable as a decorator)."""
    if builder not in _BUILDERS:
        _BUILDERS.append(builder)
    return builder


def amend(amender: DocAmender) -> DocAmender:
    """Let a feature amend the finished OpenAPI document (usable as a decorator)."""
    if amender not in _AMENDERS:
        _AMENDERS.append(amender)
    return amender


def amend_document(workspace: Any, document: dict[str, Any]) -> None:
    """Run the features' amenders on ``document``."""
    for amender in _AMENDERS:
        amender(workspace, document)


def feature_paths(workspace: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for builder in _BUILDERS:
        for path, ops in builder(workspace).items():
            out.setdefault(path, {}).update(ops)
    return out


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*statuses: str) -> dict[str, Any]:
    return {s: json_body(ERROR, "Error") for s in statuses}


def op(op_id: str, tag: str, summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
       params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One operation: id, tag, summary, responses, an optional JSON body schema and parameters."""
    out: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary, "responses": responses}
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        out["parameters"] = params
    return out


def path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def query_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
