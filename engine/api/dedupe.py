"""Duplicates and merging: ``GET /records/<entity>/<id>/duplicates`` and ``POST /records/<entity>/<id>/merge``.

The duplicates of a record are found by the entity's ``dedupe:`` rules through the stored keys (index
lookups); the answer lists only the matching records the caller may read and counts the others.  A merge
is explicit (never done on write): the survivor takes the fields the caller picks from the loser, every
reference to the loser moves to the survivor, the loser is soft-deleted, all in one transaction.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, NotFound
from engine.runtime.sales import merge as merging
from engine.runtime.sales.dedupe_keys import index_of
from engine.runtime.sales.duplicates import duplicates_of

bp = Blueprint("dedupe", __name__)


def record_id(raw: str) -> int:
    """A record id from the URL (404 for anything else)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"there is no record {raw!r}", details={"id": raw})
    return int(raw)


@bp.get("/records/<entity>/<rid>/duplicates")
def duplicates(entity: str, rid: str) -> Response:
    """``{"items": [...], "hidden": N}``: the records this one duplicates, best match first."""
    record = record_id(rid)
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        report = duplicates_of(uow, entity, record)
    return json_response(report.to_dict())


@bp.post("/records/<entity>/<rid>/merge")
def merge(entity: str, rid: str) -> Response:
    """Body ``{"loser": id, "fields": {field: "loser" | "survivor"}}``; the survivor after the merge."""
    survivor = record_id(rid)
    body = params.json_object(request)
    unknown = sorted(set(body) - {"loser", "fields"})
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} in the merge body", code="bad_request",
                         hint='send {"loser": <id>, "fields": {<field>: "loser" | "survivor"}}')
    if "loser" not in body:
        raise BadRequest("say which record to merge into this one: loser is missing", code="bad_request",
                         details={"loser": ["is required"]})
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        done = merging.merge(uow, entity, survivor, body["loser"], body.get("fields") or {})
    return json_response(done.to_dict())


def _match_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "entity": {"type": "string"}, "id": {"type": "integer"}, "title": {"type": "string"},
        "score": {"type": "number", "description": "100 for equal keys; the similarity for fuzzy ones"},
        "action": {"type": "string", "enum": ["block", "warn", "merge"]},
        "matched_by": {"type": "array", "items": {"type": "object", "properties": {
            "rule": {"type": "string"}, "kind": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "string"}}, "score": {"type": "number"}}}}}}


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    report = {"type": "object", "properties": {
        "items": {"type": "array", "items": _match_schema()},
        "hidden": {"type": "integer", "description": "matching records the caller may not see"}}}
    merged = {"type": "object", "properties": {
        "record": apidoc.FREE, "loser": apidoc.FREE, "fields_taken": {"type": "array", "items": {"type": "string"}},
        "repointed": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    body = {"type": "object", "required": ["loser"], "additionalProperties": False, "properties": {
        "loser": {"type": "integer", "minimum": 1, "description": "the record merged into this one (deleted)"},
        "fields": {"type": "object", "additionalProperties": {"enum": ["loser", "survivor"]},
                   "description": "fields whose value is taken from the loser"}}}
    ids = [apidoc.path_param("entity"), apidoc.path_param("id", {"type": "integer", "minimum": 1})]
    return {
        "/records/{entity}/{id}/duplicates": {"get": apidoc.op(
            "recordDuplicates", "dedupe", "The records this one duplicates, by the entity's dedupe rules",
            {"200": apidoc.json_body(report, "Matches you may see, and how many others"),
             **apidoc.errors("401", "403", "404")}, params=ids)},
        "/records/{entity}/{id}/merge": {"post": apidoc.op(
            "mergeRecords", "dedupe", "Merge a duplicate (loser) into this record (survivor)",
            {"200": apidoc.json_body(merged, "The survivor after the merge"),
             **apidoc.errors("400", "401", "403", "404", "409")}, body=body, params=ids)},
    }


@apidoc.amend
def _duplicates_beside_records(ws: Any, doc: dict[str, Any]) -> None:
    """Create and update answers of entities with dedupe rules carry ``_duplicates`` (warn / merge rules)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["DuplicateMatch"] = _match_schema()
    extra = {"type": "object", "properties": {
        "_duplicates": {"type": "array", "items": {"$ref": "#/components/schemas/DuplicateMatch"},
                        "description": "Records this one may duplicate (dedupe rules with action warn or merge)"},
        "_duplicates_hidden": {"type": "integer", "description": "matching records you may not see"}}}
    for entity in index_of(ws).rules:
        for path, method, status in ((f"/records/{entity}", "post", "201"),
                                     (f"/records/{entity}/{{id}}", "patch", "200")):
            op = doc.get("paths", {}).get(path, {}).get(method)
            content = op and op["responses"].get(status, {}).get("content", {}).get("application/json")
            if content:
                content["schema"] = {"allOf": [content["schema"], extra]}
