"""``/api/v1/pools``: lead pools -- list them, list a pool's unclaimed records (masked), claim, return,
assign, move, reveal a hidden field, and the recycle dry run (see docs/pools.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest
from engine.runtime.sales import pools

bp = Blueprint("pools", __name__)


def _body(*required: str) -> dict[str, Any]:
    body = params.json_object(request)
    missing = [k for k in required if body.get(k) is None]
    if missing:
        raise BadRequest(f"the body needs {', '.join(missing)}", code="bad_request",
                         details={k: ["is required"] for k in missing})
    return body


def _at(raw: str | None) -> dt.datetime | None:
    if not raw:
        return None
    try:
        at = dt.datetime.fromisoformat(raw)
    except ValueError as e:
        raise BadRequest(f"at={raw[:40]!r} is not a date and time", code="bad_request",
                         details={"at": ["an ISO 8601 date and time, e.g. 2026-03-01T09:00:00Z"]}) from e
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


@bp.get("/pools")
def list_pools() -> Response:
    """The pools the caller is a member or an admin of, with their limits and what the caller holds."""
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        return json_response({"items": pools.overview(uow)})


@bp.get("/pools/<pool>/records")
def pool_records(pool: str) -> Response:
    """A page of the pool's unclaimed records, hidden fields masked (filter, sort, limit, cursor, count)."""
    p = params.list_params(request.args)
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        page = pools.records(uow, pool, filter=p.filter, sort=",".join(p.sort) if p.sort else None, limit=p.limit,
                             cursor=p.cursor, count=p.count, fields=p.fields)
    return json_response({"items": page.items, "next_cursor": page.next_cursor, "total": page.total})


@bp.post("/pools/<pool>/claim")
def claim(pool: str) -> Response:
    body = _body("id")
    with gateway.unit(runtime(), g.principal) as uow:
        record = pools.claim(uow, pool, body["id"])
    return json_response({"record": record})


@bp.post("/pools/<pool>/return")
def return_record(pool: str) -> Response:
    body = _body("id")
    with gateway.unit(runtime(), g.principal) as uow:
        return json_response(pools.return_record(uow, pool, body["id"], body.get("reason")))


@bp.post("/pools/<pool>/assign")
def assign(pool: str) -> Response:
    body = _body("id", "to")
    with gateway.unit(runtime(), g.principal) as uow:
        return json_response(pools.assign(uow, pool, body["id"], body["to"]))


@bp.post("/pools/<pool>/move")
def move(pool: str) -> Response:
    body = _body("id", "to_pool")
    with gateway.unit(runtime(), g.principal) as uow:
        return json_response(pools.move(uow, pool, body["id"], body["to_pool"]))


@bp.post("/pools/<pool>/reveal")
def reveal(pool: str) -> Response:
    body = _body("id", "field")
    with gateway.unit(runtime(), g.principal) as uow:
        return json_response(pools.reveal(uow, pool, body["id"], body["field"]))


@bp.get("/pools/<pool>/preview")
def preview(pool: str) -> Response:
    """What the next recycle run would return and warn about (``at``: as of that moment instead of now)."""
    at = _at(request.args.get("at"))
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        [found] = pools.preview(uow, pool, at)
        return json_response(found.to_dict(uow.workspace.locale))


# --------------------------------------------------------------------------- OpenAPI


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_NINT = {"type": ["integer", "null"]}
_NSTR = {"type": ["string", "null"]}
_CONFLICTS = "409: already_claimed, holding_limit (details: limit, held), daily_claim_limit, reclaim_cooldown " \
             "(details: until), not_in_pool"


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    pool_param = [apidoc.path_param("pool")]
    item = _obj(name=_STR, label=_STR, entity=_STR, kind={"enum": ["claim", "assign"]}, member={"type": "boolean"},
                admin={"type": "boolean"}, unclaimed=_INT, holding_limit=_NINT, daily_claim_limit=_NINT,
                reclaim_cooldown=_NSTR, warn_before=_NSTR, hidden_fields={"type": "array", "items": _STR},
                return_reasons={"type": "array", "items": _obj(key=_STR, label=_STR)},
                recycle={"type": "array", "items": _obj(when=_STR, reason=_STR)},
                held=_INT, held_counted=_INT, claimed_today=_INT)
    page = _obj(items={"type": "array", "items": apidoc.FREE}, next_cursor=_NSTR, total=_NINT)
    candidate = _obj(id=_INT, title=_STR, holder_id=_INT, claimed_at={"type": "string", "format": "date-time"},
                     rule=_INT, when=_STR, reason=_STR, to_pool=_STR)
    dry = _obj(pool=_STR, at={"type": "string", "format": "date-time"},
               returns={"type": "array", "items": candidate}, warnings={"type": "array", "items": candidate},
               rules={"type": "array", "items": _obj(index=_INT, when=_STR, reason=_STR)})

    def write(op_id: str, summary: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        return {"post": apidoc.op(op_id, "pools", summary, {
            "200": apidoc.json_body(answer, "Done"), **apidoc.errors("400", "401", "403", "404", "409")},
            body=body, params=pool_param)}

    return {
        "/pools": {"get": apidoc.op("listPools", "pools", "The pools you are a member or an admin of",
                                    {"200": apidoc.json_body(_obj(items={"type": "array", "items": item}), "Pools"),
                                     **apidoc.errors("401")})},
        "/pools/{pool}/records": {"get": apidoc.op(
            "listPoolRecords", "pools", "The pool's unclaimed records, hidden fields masked",
            {"200": apidoc.json_body(page, "A page"), **apidoc.errors("400", "401", "403", "404")},
            params=[*pool_param, *(apidoc.query_param(n, s) for n, s in (
                ("filter", _STR), ("sort", _STR), ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                ("cursor", _STR), ("count", {"type": "boolean"}), ("fields", _STR)))])},
        "/pools/{pool}/claim": write("claimPoolRecord", f"Claim an unclaimed record ({_CONFLICTS})",
                                     _obj(id=_INT) | {"required": ["id"]}, _obj(record=apidoc.FREE)),
        "/pools/{pool}/return": write("returnPoolRecord", "Give a held record back, with a reason",
                                      _obj(id=_INT, reason=_STR) | {"required": ["id", "reason"]},
                                      _obj(id=_INT, pool=_STR, reason=_STR, routed=_NSTR)),
        "/pools/{pool}/assign": write("assignPoolRecord", "Hand an unclaimed record to a member (pool admins)",
                                      _obj(id=_INT, to={"type": ["integer", "string"]}) | {"required": ["id", "to"]},
                                      _obj(id=_INT, pool=_STR, owner_id=_INT)),
        "/pools/{pool}/move": write("movePoolRecord", "Move a record to another pool (pool admins)",
                                    _obj(id=_INT, to_pool=_STR) | {"required": ["id", "to_pool"]},
                                    _obj(id=_INT, pool=_STR)),
        "/pools/{pool}/reveal": write("revealPoolField", "Read one masked field of a pool record (pool admins; "
                                      "audited)", _obj(id=_INT, field=_STR) | {"required": ["id", "field"]},
                                      _obj(id=_INT, field=_STR, value={})),
        "/pools/{pool}/preview": {"get": apidoc.op(
            "previewPoolRecycle", "pools", "Dry run: the records the next recycle run returns, with the rule "
            "that fires for each, and the holders it warns", {"200": apidoc.json_body(dry, "The dry run"),
                                                             **apidoc.errors("400", "401", "403", "404")},
            params=[*pool_param, apidoc.query_param("at", {"type": "string", "format": "date-time"},
                                                    "preview as of this moment (default: now)")])},
    }
