"""``GET /api/v1/records/<entity>/<id>/score``: why a record has its score and grade, rule by rule."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from engine.api import apidoc, gateway
from engine.api.views import json_response, runtime
from engine.errors import NotFound
from engine.runtime.sales import scoring

bp = Blueprint("scoring", __name__)


def record_id(raw: str) -> int:
    """A record id from the URL (404 for anything but a whole number)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"there is no record {raw!r}", details={"id": raw})
    return int(raw)


@bp.get("/records/<entity>/<rid>/score")
def record_score(entity: str, rid: str) -> Response:
    """Each scoring of the entity: every rule (fired or not, its points after decay, its reason in the
    workspace locale and in every language), the total, the grade and the thresholds; read like the record."""
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        body = scoring.explain(uow, entity, record_id(rid))
    return json_response(body)


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    rule = {"type": "object", "properties": {
        "index": {"type": "integer"}, "key": {"type": ["string", "null"]}, "when": {"type": "string"},
        "fired": {"type": "boolean"}, "points": {"type": "integer"}, "rule_points": {"type": "integer"},
        "decay": {"type": ["object", "null"]}, "window_days": {"type": ["integer", "null"]},
        "outside_window": {"type": "boolean"}, "reason": {"type": "string"},
        "reasons": {"type": "object", "additionalProperties": {"type": "string"}},
        "error": {"type": ["string", "null"]}}}
    one = {"type": "object", "properties": {
        "scoring": {"type": "string"}, "label": {"type": "string"}, "score_field": {"type": "string"},
        "grade_field": {"type": "string"}, "score": {"type": "integer"}, "grade": {"type": ["string", "null"]},
        "raw_total": {"type": "integer"}, "caps": {"type": "object"},
        "grades": {"type": "array", "items": {"type": "object", "properties": {
            "grade": {"type": "string"}, "min": {"type": "integer"}}}},
        "stored": {"type": "object"}, "rules": {"type": "array", "items": rule}}}
    body = {"type": "object", "properties": {"entity": {"type": "string"}, "id": {"type": "integer"},
                                              "locale": {"type": "string"},
                                              "scorings": {"type": "array", "items": one}}}
    return {"/records/{entity}/{id}/score": {"get": apidoc.op(
        "recordScore", "scoring", "Why the record has its score: every rule, its points and reason, the grades",
        {"200": apidoc.json_body(body, "The explanation"), **apidoc.errors("401", "403", "404")},
        params=[apidoc.path_param("entity"), apidoc.path_param("id")])}}
