"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the workspace.

One schema per entity and caller (hidden fields left out, readonly fields
only in responses), picklists as enums, request bodies for create and
update, the error body, bearer auth and the list parameters.  Generated once
per (revision, effective permissions) and cached on the app, so a newly
applied revision is picked up on the next request without a restart.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import current_app

from engine.api import apidoc, gateway
from engine.api.meta import visible_entities
from engine.api.params import DEFAULT_LIMIT, MAX_LIMIT
from engine.dsl.model import Entity, Field, text_in

_CACHE_KEY = "crm_openapi_cache"
_LOCK = threading.Lock()
_STRING_LENGTHS = {"email": 254, "phone": 40, "url": 2048, "auto_number": 64, "string": 255}
_ERROR_STATUSES = {
    "400": "Bad input: per-field messages in details",
    "401": "Missing or invalid bearer token",
    "403": "The caller may not do this",
    "404": "No such entity or record (or not visible to the caller)",
    "409": "Version conflict (stale If-Match) or a unique value already taken",
    "413": "Request body too large",
    "415": "Body is not application/json",
    "423": "Record locked (under approval)",
    "428": "If-Match header required",
    "429": "This user already has as many requests running as allowed; retry after Retry-After seconds",
    "503": "Database busy or read-only, or the request's work ran past its time limit; retry",
}
#: Statuses any authenticated operation may answer (load, not input).
_ALWAYS = ("429", "503")


def value_schema(field: Field) -> dict[str, Any]:
    """The JSON Schema of one field's value (not null-able yet)."""
    t = field.type
    if t in _STRING_LENGTHS or t in ("text",):
        out: dict[str, Any] = {"type": "string"}
        limit = field.max_length or _STRING_LENGTHS.get(t)
        if limit:
            out["maxLength"] = limit
        return out
    if t in ("integer", "reference", "user"):
        return _bounded({"type": "integer"}, field)
    if t in ("decimal", "money", "percent"):
        return _bounded({"type": "number"}, field)
    if t == "boolean":
        return {"type": "boolean"}
    if t == "date":
        return {"type": "string", "format": "date"}
    if t == "datetime":
        return {"type": "string", "format": "date-time"}
    if t == "picklist":
        return {"type": "string", "enum": list(field.option_keys)}
    if t == "multi_picklist":
        return {"type": "array", "items": {"type": "string", "enum": list(field.option_keys)}, "uniqueItems": True}
    if t == "lines":
        return {"type": "array", "items": {"type": "object"}}
    return {}


def _bounded(schema: dict[str, Any], field: Field) -> dict[str, Any]:
    if field.min is not None:
        schema["minimum"] = field.min
    if field.max is not None:
        schema["maximum"] = field.max
    return schema


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (OpenAPI 3.1 style: a type list)."""
    if not schema:
        return schema
    if "enum" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    return out


def _labelled(schema: dict[str, Any], field: Field, locale: str) -> dict[str, Any]:
    """``schema`` with the field's label (``title``) and help (``description``) in the workspace's locale."""
    out = {**schema, "title": text_in(field.label, locale, field.name)}
    if field.help:
        out["description"] = text_in(field.help, locale, "")
    return out


def is_writable(field: Field, rule: str | None) -> bool:
    """Whether a client may send this field in a create/update body."""
    return not (field.readonly or field.formula or rule in ("readonly", "hidden") or field.type in (
        "auto_number", "lines"))


def record_schema(entity: Entity, rules: dict[str, str], locale: str = "en") -> dict[str, Any]:
    """The response schema of one record as the caller sees it (titles in ``locale``)."""
    props: dict[str, Any] = {
        "id": {"type": "integer"},
        "version": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "created_by": {"type": ["integer", "null"]},
        "updated_by": {"type": ["integer", "null"]},
        "owner_id": {"type": ["integer", "null"]},
    }
    for name, f in entity.fields.items():
        if rules.get(name) == "hidden":
            continue
        schema = value_schema(f)
        if f.type in ("reference", "user"):
            schema = {"anyOf": [{"type": "integer"}, {"type": "object"}]}
        props[name] = _labelled(nullable(schema) if schema else {}, f, locale)
        if f.type == "money":
            props[f"{name}_currency"] = {"type": ["string", "null"], "description": f"Currency of {name}"}
    return {"type": "object", "title": text_in(entity.label, locale, entity.name), "properties": props,
            "required": ["id", "version"], "additionalProperties": True}


def input_schema(entity: Entity, rules: dict[str, str], *, create: bool, locale: str = "en") -> dict[str, Any]:
    """The request body of a create (required fields) or an update (any subset); titles in ``locale``."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, f in entity.fields.items():
        if not is_writable(f, rules.get(name)):
            continue
        schema = value_schema(f)
        props[name] = _labelled(schema if f.required else nullable(schema), f, locale)
        if create and f.required and f.default is None and f.default_expr is None:
            required.append(name)
    props["owner_id"] = {"type": "integer", "minimum": 1, "description": "Owner (a user id); defaults to the caller"}
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"$ref": f"#/components/responses/E{s}"} for s in (*statuses, *_ALWAYS)}


def _list_parameters() -> list[dict[str, Any]]:
    def q(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}

    return [
        q("filter", {"type": "string"}, "An expression, e.g. industry == 'manufacturing' and budget > 100000"),
        q("q", {"type": "string", "maxLength": 200}, "Search the entity's searchable fields for this text: one "
          "ranked page (no sort, cursor or count); see docs/search.md"),
        q("sort", {"type": "string"}, "Comma-separated fields, '-' for descending, e.g. -created_at,company"),
        q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}, "Page size"),
        q("cursor", {"type": "string"}, "next_cursor of the previous page"),
        q("count", {"type": "boolean"}, "Also return the total number of matching records"),
        q("fields", {"type": "string"}, "Comma-separated fields to return"),
        q("expand", {"type": "string"}, "Comma-separated reference fields to expand"),
    ]


_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
             "description": "The record's current version"}


def entity_paths(name: str, perm: dict[str, Any]) -> dict[str, Any]:
    """The three paths of one entity: the collection, one record, its history."""
    base, rec = f"/records/{name}", f"{name}_record"
    list_ok = _json({"type": "object", "required": ["items", "next_cursor", "total"], "properties": {
        "items": {"type": "array", "items": _ref(rec)},
        "next_cursor": {"type": ["string", "null"]}, "total": {"type": ["integer", "null"]},
        "truncated": {"type": "boolean", "description": "with q= only: more records hold the text than were ranked "
                                                        "(docs/search.md)"}}}, "A page of records")
    history = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": _ref(
        "HistoryEntry")}}}
    body = {"required": True, "content": {"application/json": {"schema": _ref(f"{name}_create")}}}
    patch = {"required": True, "content": {"application/json": {"schema": _ref(f"{name}_update")}}}
    return {
        base: {
            "get": _op(f"list_{name}", name, {"200": list_ok, **_errors("400", "401", "403", "404")},
                       parameters=_list_parameters()),
            "post": _op(f"create_{name}", name, {"201": _json(_ref(rec), "Created"), **_errors(
                "400", "401", "403", "404", "409", "413", "415", "423")}, requestBody=body),
        },
        f"{base}/{{id}}": {
            "parameters": [_ID_PARAM],
            "get": _op(f"get_{name}", name, {"200": _json(_ref(rec), "The record"), **_errors(
                "400", "401", "403", "404")}),
            "patch": _op(f"update_{name}", name, {"200": _json(_ref(rec), "Updated"), **_errors(
                "400", "401", "403", "404", "409", "413", "415", "423", "428")},
                parameters=[_IF_MATCH], requestBody=patch),
            "delete": _op(f"delete_{name}", name, {"204": {"description": "Deleted (soft)"}, **_errors(
                "400", "401", "403", "404", "409", "423")}),
        },
        f"{base}/{{id}}/history": {
            "parameters": [_ID_PARAM],
            "get": _op(f"history_{name}", name, {"200": _json(history, "Field-level changes"), **_errors(
                "401", "403", "404")}),
        },
    }


def _op(op_id: str, tag: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "tags": [tag], "responses": responses, **extra}


def _components(entities: dict[str, tuple[Entity, dict[str, Any]]], locale: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA, "HistoryEntry": _HISTORY_SCHEMA}
    for name, (ent, perm) in entities.items():
        rules = perm.get("fields", {})
        schemas[f"{name}_record"] = record_schema(ent, rules, locale)
        schemas[f"{name}_create"] = input_schema(ent, rules, create=True, locale=locale)
        schemas[f"{name}_update"] = input_schema(ent, rules, create=False, locale=locale)
    responses = {f"E{s}": _json(_ref("Error"), text) for s, text in _ERROR_STATUSES.items()}
    return {"schemas": schemas, "responses": responses,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}


_ERROR_SCHEMA = {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
    "error": {"type": "object", "required": ["code", "message", "details", "docs"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "details": {},
        "docs": {"type": "string", "description": "link to the code's entry in docs/errors.md"}}}}}
_HISTORY_SCHEMA = {"type": "object", "required": ["action", "field", "old", "new", "actor_id", "at"], "properties": {
    "id": {"type": "integer"}, "action": {"type": "string"}, "field": {"type": ["string", "null"]}, "old": {},
    "new": {}, "actor_id": {"type": ["integer", "null"]}, "actor": {"type": ["string", "null"]},
    "at": {"type": "string", "format": "date-time"}, "revision_id": {"type": ["integer", "null"]}}}


def _meta_paths() -> dict[str, Any]:
    free = {"type": "object"}
    return {
        "/meta": {"get": _op("meta", "meta", {"200": _json(free, "Entities, fields, permissions"), **_errors(
            "401")})},
        "/openapi.json": {"get": _op("openapi", "meta", {"200": _json(free, "This document"), **_errors("401")})},
    }


def build_openapi(runtime: Any, actor: Any) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the workspace as ``actor`` sees it."""
    ws = gateway.workspace(runtime)
    entities = visible_entities(runtime, actor)
    paths = _meta_paths()
    for name, (_ent, perm) in entities.items():
        paths.update(entity_paths(name, perm))
    paths.update(apidoc.feature_paths(ws))
    doc = {
        "openapi": "3.1.0",
        "info": {"title": f"{ws.name} CRM API", "version": str(gateway.revision_key(runtime)),
                 "description": "Generated from the workspace configuration; see docs/api.md."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": "meta"}, *({"name": name, "description": text_in(ent.label, ws.locale, name)}
                                      for name, (ent, _perm) in entities.items())],
        "paths": paths,
        "components": _components(entities, ws.locale),
    }
    apidoc.amend_document(ws, doc)
    return doc


def openapi_for(runtime: Any, actor: Any) -> dict[str, Any]:
    """The cached document for this revision and the caller's effective permissions."""
    perms = gateway.permissions(runtime, actor)
    key = (gateway.revision_key(runtime), json.dumps(perms, sort_keys=True, default=str))
    cache: dict[Any, Any] = current_app.extensions.setdefault(_CACHE_KEY, {})
    doc = cache.get(key)
    if doc is None:
        doc = build_openapi(runtime, actor)
        with _LOCK:
            if len(cache) > 64:  # old revisions and rare permission sets fall out
                cache.clear()
            cache[key] = doc
    return doc
