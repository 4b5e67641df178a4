"""Exchange rates and money totals over the API (docs/currencies.md).

``GET /rates`` (``?currency=CNY``) lists the dated rates to any signed-in user; ``PUT /rates`` sets one rate
``{"from", "to", "rate", "date"}`` or several (``{"rates": [...]}``, all or none) -- administrators only.
``GET /pipelines/<name>/forecast`` (``?as_of=YYYY-MM-DD&currency=&field=amount&filter=``) is the pipeline's
forecast in one currency (default: the workspace's) at the rates of ``as_of`` (default: today), over the
records the caller may read; a missing rate is 409 ``missing_exchange_rate`` naming the pair and the day.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, PermissionDenied
from engine.runtime import exchange_rates
from engine.runtime.currency import totals

bp = Blueprint("rates", __name__)
#: most rates one PUT may set
MAX_RATES = 1000


@bp.get("/rates")
def list_rates() -> Response:
    """Every stored rate (of pairs with ``currency`` on either side, if given)."""
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        found = exchange_rates.list_rates(uow.conn, currency=request.args.get("currency") or None)
        return json_response({"currency": uow.workspace.currency, "items": [r.to_dict() for r in found]})


@bp.put("/rates")
def put_rates() -> Response:
    """Set one rate, or a list under ``rates`` (administrators only)."""
    body = params.json_object(request)
    rows = body.get("rates", [body]) if "rates" in body else [body]
    if not isinstance(rows, list) or not rows or len(rows) > MAX_RATES or not all(isinstance(r, dict) for r in rows):
        raise BadRequest(f"rates must be a list of 1 to {MAX_RATES} objects", code="bad_request",
                         hint='send {"from": "USD", "to": "CNY", "rate": "7.1", "date": "2026-12-01"}')
    with gateway.unit(runtime(), g.principal) as uow:
        if not uow.actor.is_admin:
            raise PermissionDenied("only an administrator may set exchange rates", code="forbidden",
                                   hint="ask an administrator (crm rates set FROM TO RATE --date DAY)")
        now = uow.clock.now()
        done = []
        for i, row in enumerate(rows):
            unknown = sorted(set(row) - {"from", "to", "rate", "date", "source"})
            if unknown:
                raise BadRequest(f"rates[{i}]: unknown key {unknown[0]!r}", code="bad_request",
                                 hint="a rate has from, to, rate, date (and optionally source)")
            done.append(exchange_rates.set_rate(uow.conn, row.get("from"), row.get("to"), row.get("rate"),
                                                row.get("date"), now=now, user_id=uow.actor.user_id,
                                                source=row.get("source") or "api").to_dict())
    return json_response({"items": done})


@bp.get("/pipelines/<name>/forecast")
def forecast(name: str) -> Response:
    """The pipeline's forecast per stage in one currency at the rates of one day."""
    args = request.args
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        return json_response(totals.forecast(uow, name, field=args.get("field") or "amount",
                                             currency=args.get("currency") or None, as_of=args.get("as_of"),
                                             filter_text=args.get("filter") or None))


RATE = {"type": "object", "required": ["from", "to", "rate", "date"], "properties": {
    "from": {"type": "string", "description": "ISO 4217 code", "examples": ["USD"]},
    "to": {"type": "string", "description": "ISO 4217 code", "examples": ["CNY"]},
    "rate": {"type": "string", "description": "1 `from` is worth `rate` `to`", "examples": ["7.1"]},
    "date": {"type": "string", "format": "date", "description": "valid from this day on"},
    "source": {"type": ["string", "null"]}}}


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    listed = {"type": "object", "properties": {"currency": {"type": "string"},
                                               "items": {"type": "array", "items": RATE}}}
    stage = {"type": "object", "properties": {
        "stage": {"type": "string"}, "probability": {"type": ["number", "null"]}, "count": {"type": "integer"},
        "amount": {"type": "string"}, "weighted": {"type": "string"}}}
    fc = {"type": "object", "properties": {
        "pipeline": {"type": "string"}, "entity": {"type": "string"}, "field": {"type": "string"},
        "currency": {"type": "string"}, "as_of": {"type": "string", "format": "date"},
        "stages": {"type": "array", "items": stage}, "total": {"type": "string"}, "weighted": {"type": "string"}}}
    put_body = {"oneOf": [RATE, {"type": "object", "required": ["rates"], "properties": {
        "rates": {"type": "array", "items": RATE, "maxItems": MAX_RATES}}}]}
    q = apidoc.query_param
    return {
        "/rates": {
            "get": apidoc.op("listRates", "currencies", "The dated exchange rates",
                             {"200": apidoc.json_body(listed, "Rates by pair and day"), **apidoc.errors("400", "401")},
                             params=[q("currency", {"type": "string"}, "only pairs with this currency")]),
            "put": apidoc.op("putRates", "currencies", "Set exchange rates (administrators only)",
                             {"200": apidoc.json_body(listed, "The rates set"),
                              **apidoc.errors("400", "401", "403")}, body=put_body),
        },
        "/pipelines/{name}/forecast": {"get": apidoc.op(
            "pipelineForecast", "currencies", "The pipeline's forecast per stage in one currency",
            {"200": apidoc.json_body(fc, "Totals per stage"), **apidoc.errors("400", "401", "404", "409")},
            params=[apidoc.path_param("name"), q("as_of", {"type": "string", "format": "date"}, "rate day"),
                    q("currency", {"type": "string"}, "ISO 4217 code (default: the workspace's)"),
                    q("field", {"type": "string"}, "the money field (default: amount)"),
                    q("filter", {"type": "string"}, "an expression the records must match")])},
    }
