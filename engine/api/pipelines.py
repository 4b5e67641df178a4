"""Pipelines over the API: move a record to a stage, read its stage history, read the pipelines.

``POST /records/<entity>/<id>/transition {"stage", "values"?}`` (``If-Match`` optional) moves the record
through the record service, so the stage gate answers a refused move with 422 exactly as for a PATCH;
``GET /records/<entity>/<id>/stages`` is the record's stage history with durations (whoever may read the
record may read it); ``GET /pipelines`` and ``GET /pipelines/<name>`` describe the stages (guidance,
probability, required fields, gate messages, playbook tasks) and the moves the caller may make.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, NotFound
from engine.runtime.sales import pipelines

bp = Blueprint("pipelines", __name__)


def _record_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"there is no record {raw!r}", details={"id": raw})
    return int(raw)


@bp.post("/records/<entity>/<record_id>/transition")
def transition(entity: str, record_id: str) -> Response:
    """Move the record to ``stage``; ``values`` (optional) are written in the same update (a lost reason)."""
    rid = _record_id(record_id)
    version = params.if_match_version(request, required=False)
    body = params.json_object(request)
    unknown = sorted(set(body) - {"stage", "values"})
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} in the transition body", code="bad_request",
                         hint='send {"stage": "<key>"} and, optionally, "values": {field: value}')
    if "stage" not in body:
        raise BadRequest("the body needs the stage to move to", code="bad_request",
                         hint='send {"stage": "<key>"}', details={"stage": ["is required"]})
    values = body.get("values") or {}
    if not isinstance(values, dict):
        raise BadRequest("values must be an object of field values", code="bad_request",
                         details={"values": ["must be an object (field -> value)"]})
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        record = pipelines.transition(uow, entity, rid, body["stage"], expected_version=version, values=values)
    return json_response(record, etag=record.get("version"))


@bp.get("/records/<entity>/<record_id>/stages")
def stages(entity: str, record_id: str) -> Response:
    """The record's stage history, oldest first, with the time spent in each stage."""
    rid = _record_id(record_id)
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        return json_response(pipelines.stage_history(uow, entity, rid))


@bp.get("/pipelines")
def list_pipelines() -> Response:
    """The pipelines of the entities the caller may read."""
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        ws = uow.workspace
        items = [pipelines.describe(p, ws, uow.actor) for p in pipelines.pipelines_of(ws)
                 if uow.guard.access(p.entity).read != "none"]
    return json_response({"items": items})


@bp.get("/pipelines/<name>")
def get_pipeline(name: str) -> Response:
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        ws = uow.workspace
        p = next((p for p in pipelines.pipelines_of(ws) if p.name == name), None)
        if p is None or uow.guard.access(p.entity).read == "none":
            raise NotFound(f"there is no pipeline {name!r}", code="not_found",
                           hint="GET /api/v1/pipelines lists the pipelines")
        return json_response(pipelines.describe(p, ws, uow.actor))


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    label = {"type": "object", "additionalProperties": {"type": "string"}}
    stage = {"type": "object", "properties": {
        "key": {"type": "string"}, "label": label, "text": {"type": "string"},
        "probability": {"type": ["number", "null"]}, "outcome": {"enum": ["won", "lost", None]},
        "requires": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "label": {"type": "string"}}}},
        "gate": {"type": ["object", "null"]}, "guidance": {"type": ["object", "null"]},
        "requires_tasks_done": {"type": "boolean"}, "tasks": {"type": "array", "items": apidoc.FREE},
        "moves": {"type": "array", "items": {"type": "string"},
                  "description": "the stages the caller may move a record in this stage to"}}}
    pipeline = {"type": "object", "properties": {
        "name": {"type": "string"}, "label": label, "entity": {"type": "string"}, "field": {"type": "string"},
        "transitions": {"enum": ["sequential", "any", "explicit"]}, "stages": {"type": "array", "items": stage}}}
    history = {"type": "object", "properties": {
        "pipeline": {"type": "string"}, "entity": {"type": "string"}, "id": {"type": "integer"},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "from": {"type": ["string", "null"]}, "to": {"type": "string"}, "label": {"type": "string"},
            "entered_at": {"type": "string", "format": "date-time"},
            "left_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": {"type": ["integer", "null"]}, "seconds_so_far": {"type": ["integer", "null"]},
            "actor_id": {"type": ["integer", "null"]}, "actor": {"type": ["string", "null"]}}}}}}
    record_params = [apidoc.path_param("entity"), apidoc.path_param("id", {"type": "integer"})]
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "the record's version; 409 when it is stale"}
    return {
        "/records/{entity}/{id}/transition": {"post": apidoc.op(
            "transitionRecord", "pipelines", "Move a record to another stage (422 names what the gate needs)",
            {"200": apidoc.json_body(apidoc.FREE, "The record after the move"),
             **apidoc.errors("400", "401", "403", "404", "409", "422")},
            body={"type": "object", "required": ["stage"], "properties": {
                "stage": {"type": "string"}, "values": {"type": "object", "description": "fields written with it"}}},
            params=[*record_params, if_match])},
        "/records/{entity}/{id}/stages": {"get": apidoc.op(
            "recordStages", "pipelines", "The record's stage history with the time spent in each stage",
            {"200": apidoc.json_body(history, "The history, oldest first"), **apidoc.errors("401", "404")},
            params=record_params)},
        "/pipelines": {"get": apidoc.op(
            "listPipelines", "pipelines", "The pipelines, their stages and the moves the caller may make",
            {"200": apidoc.json_body({"type": "object", "properties": {
                "items": {"type": "array", "items": pipeline}}}, "The pipelines"), **apidoc.errors("401")})},
        "/pipelines/{name}": {"get": apidoc.op(
            "getPipeline", "pipelines", "One pipeline", {"200": apidoc.json_body(pipeline, "The pipeline"),
                                                         **apidoc.errors("401", "404")},
            params=[apidoc.path_param("name")])},
    }
