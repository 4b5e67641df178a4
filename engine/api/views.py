"""The ``/api/v1`` blueprint: small views over the gateway.

Each view reads and shape-checks its input (:mod:`engine.api.params`),
calls the record service through :mod:`engine.api.gateway` in one unit of
work for the authenticated caller, and renders JSON.  Errors are raised,
never rendered here: :mod:`engine.api.errors` turns them into statuses.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, request

from engine.api import gateway, params
from engine.api.jsonenc import encode_body
from engine.errors import BadRequest, NotFound
from engine.runtime.search import service as search_service

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
RUNTIME_KEY = "crm_runtime"
TOKEN_CACHE_KEY = "crm_token_cache"
SLOTS_KEY = "crm_user_slots"


def runtime() -> Any:
    """The runtime this app serves."""
    return current_app.extensions[RUNTIME_KEY]


def json_response(obj: Any, status: int = 200, etag: Any = None) -> Response:
    """A JSON response (compact, Decimal/datetime aware), optionally with an ETag."""
    resp = current_app.response_class(encode_body(obj), status=status, mimetype="application/json")
    if etag is not None:
        resp.set_etag(str(etag))
    return resp


@bp.teardown_request
def _release(_error: BaseException | None) -> None:
    """Give back the request's slot (and record the token's use) whatever happened."""
    principal = g.pop("principal", None)
    if principal is not None:
        principal.after()


@bp.before_request
def _authenticate() -> None:
    """Every endpoint needs ``Authorization: Bearer <token>`` (checked inside the request's unit of work)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise gateway.AuthenticationRequired(
            "this endpoint needs 'Authorization: Bearer <token>'",
            hint="create a token with 'crm token create USER'")
    ext = current_app.extensions
    g.principal = gateway.TokenPrincipal(runtime(), token.strip(), ext[TOKEN_CACHE_KEY], ext[SLOTS_KEY])
    g.principal.authenticate_early()


def _record_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"there is no record {raw!r}", details={"id": raw})
    return int(raw)


@bp.get("/records/<entity>")
def list_records(entity: str) -> Response:
    """A page of records: filter, sort, limit, cursor, count, fields, expand; ``deleted=only``: the recycle bin."""
    p = params.list_params(request.args)
    deleted = params.deleted_arg(request.args)
    if request.args.get("q") is not None:
        if deleted:
            raise BadRequest("q= searches live records: it does not search the recycle bin", code="bad_request",
                             hint="drop deleted=only, or list the recycle bin with filter=")
        return _search_list(entity, request.args["q"], p)
    with gateway.records(runtime(), g.principal, readonly=True) as svc:
        gateway.entity(svc.uow, entity)
        page = svc.list(entity, filter=p.filter, sort=",".join(p.sort) if p.sort else None, limit=p.limit,
                        cursor=p.cursor,
                        fields=p.fields, expand=p.expand, count=p.count,
                        deleted=deleted)
    return json_response({"items": page.items, "next_cursor": page.next_cursor, "total": page.total})


def _search_list(entity: str, q: str, p: params.ListParams) -> Response:
    """``?q=``: the entity's records matching the text, best first (docs/search.md): one ranked page."""
    if p.sort or p.cursor or p.count:
        raise BadRequest("q= returns one ranked page: sort, cursor and count do not apply", code="bad_request",
                         hint="drop them, or use filter= with icontains(field, 'text') for a sorted, paged list")
    with gateway.records(runtime(), g.principal, readonly=True) as svc:
        gateway.entity(svc.uow, entity)
        items, truncated = search_service.search_records(svc.uow, entity, q, limit=p.limit, filter_text=p.filter,
                                                         fields=p.fields, expand=p.expand)
    return json_response({"items": items, "next_cursor": None, "total": None, "truncated": truncated})


@bp.post("/records/<entity>")
def create_record(entity: str) -> Response:
    """Create a record from a JSON object of field values; 201 with the record."""
    with gateway.records(runtime(), g.principal) as svc:
        gateway.entity(svc.uow, entity)
        record = with_notes(svc.uow, entity, svc.create(entity, params.json_object(request)))
    resp = json_response(record, 201, etag=record["version"])
    resp.headers["Location"] = _location(f"/records/{entity}/{record['id']}")
    return resp


def with_notes(uow: Any, entity: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` and what the unit's write steps noted about it (``_duplicates``: docs/dedupe.md)."""
    notes = uow.notes.get((entity, record.get("id")))
    return {**record, **notes} if notes else record


def _location(path: str) -> str:
    """``Location`` of a resource: on the configured public base URL, else relative (never the Host header)."""
    base = current_app.config.get("CRM_PUBLIC_URL")
    return f"{base.rstrip('/')}{bp.url_prefix}{path}" if base else f"{bp.url_prefix}{path}"


@bp.get("/records/<entity>/<record_id>")
def get_record(entity: str, record_id: str) -> Response:
    """One record (``fields`` and ``expand`` as for lists); its version as ETag."""
    rid = _record_id(record_id)
    fields, expand = params.record_params(request.args)
    with gateway.records(runtime(), g.principal, readonly=True) as svc:
        gateway.entity(svc.uow, entity)
        record = svc.get(entity, rid, fields=fields, expand=expand)
    return json_response(record, etag=record.get("version"))


@bp.patch("/records/<entity>/<record_id>")
def update_record(entity: str, record_id: str) -> Response:
    """Change some fields; needs ``If-Match: <version>`` (428 without, 409 when stale)."""
    rid = _record_id(record_id)
    version = params.if_match_version(request, required=True)
    with gateway.records(runtime(), g.principal) as svc:
        gateway.entity(svc.uow, entity)
        record = with_notes(svc.uow, entity, svc.update(entity, rid, params.json_object(request),
                                                        expected_version=version))
    return json_response(record, etag=record["version"])


@bp.delete("/records/<entity>/<record_id>")
def delete_record(entity: str, record_id: str) -> Response:
    """Soft-delete a record (``If-Match`` optional); 204."""
    rid = _record_id(record_id)
    version = params.if_match_version(request, required=False)
    with gateway.records(runtime(), g.principal) as svc:
        gateway.entity(svc.uow, entity)
        svc.delete(entity, rid, expected_version=version)
    return current_app.response_class(status=204)


@bp.get("/records/<entity>/<record_id>/history")
def record_history(entity: str, record_id: str) -> Response:
    """Every change of every field of the record: action, field, old, new, actor, time."""
    rid = _record_id(record_id)
    with gateway.records(runtime(), g.principal, readonly=True) as svc:
        gateway.entity(svc.uow, entity)
        items = svc.history(entity, rid)
    return json_response({"items": [e.to_dict() if hasattr(e, "to_dict") else e for e in items]})


@bp.get("/meta")
def meta() -> Response:
    """Entities, fields and the caller's permissions."""
    from engine.api.meta import build_meta

    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        return json_response(build_meta(uow, uow.actor))


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this workspace, as the caller sees it."""
    from engine.api.openapi import openapi_for

    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        return json_response(openapi_for(uow, uow.actor))
