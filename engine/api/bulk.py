"""The bulk API (docs/bulk-api.md): many records in one request, each through the one write pipeline.

* ``POST /records/<entity>/bulk`` -- a JSON array of records (or ``{"records": [...]}``) created with
  :meth:`RecordService.create_many` (all or nothing: one bad row and nothing is created, every bad row
  named ``[i].field``); ``?atomic=false`` creates each row on its own (:meth:`create_each`) and answers a
  result per row;
* ``PATCH /records/<entity>?filter=...`` -- the body's values set on every matching record the caller may
  update (row scope and field rules as for one record), the count returned; ``dry_run=true`` makes the
  writes and undoes them, so it answers what the real run would and changes nothing;
* ``DELETE /records/<entity>?filter=...`` -- soft-deletes likewise (into the recycle bin).

Limits (413 ``batch_too_large`` / ``payload_too_large``): :data:`MAX_BULK_ROWS` rows per create,
:data:`MAX_BULK_MATCH` records per filter, :data:`MAX_BULK_BODY_BYTES` of body on the bulk create (the
rest of the API keeps its own smaller limit); each can be set on the app's config (``CRM_MAX_BULK_*``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, Response, current_app, g, request

from engine.api import apidoc, gateway, params
from engine.api.errors import PayloadError
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, BatchTooLarge, ValidationFailed
from engine.wording import counted

bp = Blueprint("bulk", __name__)

#: Most records one bulk create may hold.
MAX_BULK_ROWS = 1000
#: Most records one bulk update or delete by filter may reach.
MAX_BULK_MATCH = 10_000
#: Largest body of a bulk create (bytes): 1,000 records of several kilobytes each fit.
MAX_BULK_BODY_BYTES = 16 * 1024 * 1024


def limit(name: str, default: int) -> int:
    """A bulk limit from the app's config (``CRM_MAX_BULK_ROWS``...), else its default."""
    value = current_app.config.get(f"CRM_{name}")
    return int(value) if value else default


#: what a JSON body that is not a list is, in the words of JSON
_JSON_KIND: dict[type, str] = {dict: "a single JSON object", str: "a JSON string", int: "a JSON number",
                               float: "a JSON number", bool: "true or false", type(None): "null"}


def _rows(req: Request) -> list[dict[str, Any]]:
    data = params.json_body(req)
    what = "this body"
    if isinstance(data, dict) and set(data) == {"records"}:
        data, what = data["records"], 'its "records"'
    if not isinstance(data, list):
        kind = _JSON_KIND.get(type(data), "not a list")
        hint = "send [{...}, {...}]"
        if isinstance(data, dict):
            hint += "; to create one record, POST it to /api/v1/records/<entity>"
        raise PayloadError('the body of a bulk create must be a JSON list of records, [{...}, {...}], or '
                           f'{{"records": [{{...}}, {{...}}]}}; {what} is {kind}', hint=hint)
    bad = [i for i, row in enumerate(data) if not isinstance(row, dict)]
    if bad:
        raise PayloadError(f"every record must be a JSON object of field values; row {bad[0]} is not",
                           details={f"[{i}]": ["must be a JSON object of field values"] for i in bad[:50]})
    if not data:
        raise BadRequest("the list of records is empty; send at least one", code="bad_rows")
    most = limit("MAX_BULK_ROWS", MAX_BULK_ROWS)
    if len(data) > most:
        raise BatchTooLarge(f"{counted(len(data), 'record')} in one request; at most {most:,} may be created at once",
                            hint=f"split the records into batches of {most:,} or fewer",
                            details={"rows": len(data), "limit": most})
    return data


def _atomic(args: Any) -> bool:
    return args.get("atomic") is None or params.bool_arg(args, "atomic")


def _filter(args: Any, action: str) -> str:
    text = args.get("filter")
    if text is None or not text.strip():
        raise BadRequest(f"a bulk {action} needs filter=<expression> naming the records",
                         code="bad_filter", details={"filter": ["is required"]},
                         hint=f"filter=true {action}s every record you may {action}")
    if len(text) > params.MAX_FILTER_LENGTH:
        raise ValidationFailed("filter is too long",
                               details={"filter": [f"at most {params.MAX_FILTER_LENGTH} characters"]})
    return str(text)


def _check_reach(matched: int, action: str) -> None:
    most = limit("MAX_BULK_MATCH", MAX_BULK_MATCH)
    if matched > most:
        raise BatchTooLarge(f"the filter matches {counted(matched, 'record')} you may {action}; one request may "
                            f"{action} at most {most:,}", hint="narrow the filter and repeat in parts",
                            details={"matched": matched, "limit": most})


def _row_error(error: Any) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "details": dict(error.details)}


@bp.post("/records/<entity>/bulk")
def bulk_create(entity: str) -> Response:
    """Create many records: all or nothing (201 with the ids), or per row with ``atomic=false`` (200)."""
    request.max_content_length = limit("MAX_BULK_BODY_BYTES", MAX_BULK_BODY_BYTES)
    atomic = _atomic(request.args)
    rows = _rows(request)
    with gateway.records(runtime(), g.principal) as svc:
        gateway.entity(svc.uow, entity)
        if atomic:
            ids = svc.create_many(entity, rows)
            return json_response({"created": len(ids), "ids": ids}, 201)
        outcome = svc.create_each(entity, rows)
    results = [{"index": i, "id": rid} if rid is not None else {"index": i, "error": _row_error(outcome.errors[i])}
               for i, rid in enumerate(outcome.ids)]
    return json_response({"created": len(outcome.written), "failed": len(outcome.errors), "results": results})


@bp.patch("/records/<entity>")
def bulk_update(entity: str) -> Response:
    """Set the body's fields on every record matching ``filter`` the caller may update; the count.

    ``dry_run=true`` makes the same writes and undoes them: the answer (an error, or the per-record
    refusals with ``atomic=false``) is the real run's, with nothing updated."""
    flt = _filter(request.args, "update")
    dry_run = params.bool_arg(request.args, "dry_run")
    atomic = _atomic(request.args)
    values = params.json_object(request)
    with gateway.records(runtime(), g.principal) as svc:
        gateway.entity(svc.uow, entity)
        matched = svc.count_matching(entity, flt, "update")
        _check_reach(matched, "update")
        if atomic:
            updated = svc.update_many(entity, flt, values, dry_run=dry_run)
            return json_response(_counted(matched, updated, "updated", dry_run))
        outcome = svc.update_each(entity, flt, values, dry_run=dry_run)
    return json_response(_outcome(matched, outcome, "updated", dry_run))


@bp.delete("/records/<entity>")
def bulk_delete(entity: str) -> Response:
    """Soft-delete every record matching ``filter`` the caller may delete; the count (``dry_run`` as for
    the PATCH: the deletes are made and undone)."""
    flt = _filter(request.args, "delete")
    dry_run = params.bool_arg(request.args, "dry_run")
    atomic = _atomic(request.args)
    with gateway.records(runtime(), g.principal) as svc:
        gateway.entity(svc.uow, entity)
        matched = svc.count_matching(entity, flt, "delete")
        _check_reach(matched, "delete")
        if atomic:
            return json_response(_counted(matched, svc.delete_many(entity, flt, dry_run=dry_run), "deleted",
                                          dry_run))
        outcome = svc.delete_each(entity, flt, dry_run=dry_run)
    return json_response(_outcome(matched, outcome, "deleted", dry_run))


def _counted(matched: int, done: int, what: str, dry_run: bool) -> dict[str, Any]:
    """The answer of an all-or-nothing bulk write; a dry run wrote nothing, so it counts 0."""
    return {"matched": matched, what: 0, "dry_run": True} if dry_run else {"matched": matched, what: done}


def _outcome(matched: int, outcome: Any, done: str, dry_run: bool) -> dict[str, Any]:
    errors = [{"id": e.record_id, **_row_error(e)} for e in outcome.errors.values()]
    body = {"matched": matched, done: 0 if dry_run else len(outcome.written), "failed": len(errors),
            "errors": errors}
    return (body | {"dry_run": True}) if dry_run else body


# --------------------------------------------------------------------------- OpenAPI

_ATOMIC = apidoc.query_param("atomic", {"type": "boolean", "default": True},
                             "false: each row (record) on its own, with a result or an error per row")
_DRY_RUN = apidoc.query_param("dry_run", {"type": "boolean", "default": False},
                              "true: make the writes and undo them -- the real run's answer (its errors, "
                              "the records that would fail), with nothing changed")
_FILTER = {"name": "filter", "in": "query", "required": True, "schema": {"type": "string"},
           "description": "An expression naming the records (true: every record the caller may change)"}
_ROW_ERROR = {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                               "details": {"type": "object"}}}


def _count_body(done: str) -> dict[str, Any]:
    return {"type": "object", "required": ["matched", done], "properties": {
        "matched": {"type": "integer"}, done: {"type": "integer"}, "dry_run": {"type": "boolean"},
        "failed": {"type": "integer"}, "errors": {"type": "array", "items": {
            "allOf": [_ROW_ERROR, {"type": "object", "properties": {"id": {"type": "integer"}}}]}}}}


def _entity_ops(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collection's PATCH and DELETE, and the bulk create path, of one entity."""
    errs = apidoc.errors("400", "401", "403", "404", "409", "413", "423", "422", "429", "503")
    created = {"type": "object", "properties": {"created": {"type": "integer"},
                                                "ids": {"type": "array", "items": {"type": "integer"}}}}
    per_row = {"type": "object", "properties": {
        "created": {"type": "integer"}, "failed": {"type": "integer"}, "results": {"type": "array", "items": {
            "type": "object", "properties": {"index": {"type": "integer"}, "id": {"type": "integer"},
                                             "error": _ROW_ERROR}}}}}
    collection = {
        "patch": apidoc.op(f"bulk_update_{name}", name, f"Set fields on every matching {name} the caller may update",
                           {"200": apidoc.json_body(_count_body("updated"), "How many were updated"), **errs},
                           body={"$ref": f"#/components/schemas/{name}_update"}, params=[_FILTER, _DRY_RUN, _ATOMIC]),
        "delete": apidoc.op(f"bulk_delete_{name}", name, f"Soft-delete every matching {name} the caller may delete",
                            {"200": apidoc.json_body(_count_body("deleted"), "How many were deleted"), **errs},
                            params=[_FILTER, _DRY_RUN, _ATOMIC]),
    }
    create = {"post": apidoc.op(
        f"bulk_create_{name}", name, f"Create up to {MAX_BULK_ROWS:,} {name} records in one request",
        {"201": apidoc.json_body(created, "All created (atomic)"),
         "200": apidoc.json_body(per_row, "A result per row (atomic=false)"), **errs, **apidoc.errors("415")},
        body={"type": "array", "maxItems": MAX_BULK_ROWS, "items": {"$ref": f"#/components/schemas/{name}_create"}},
        params=[_ATOMIC])}
    return collection, create


@apidoc.amend
def _amend(_ws: Any, doc: dict[str, Any]) -> None:
    """PATCH / DELETE on each collection the caller's document has, and its ``/bulk`` create."""
    paths = doc["paths"]
    for path in [p for p in paths if p.startswith("/records/") and p.count("/") == 2]:
        item = paths[path]
        name = path.rsplit("/", 1)[1]
        if "post" not in item or "patch" in item:
            continue
        collection, create = _entity_ops(name)
        collection["patch"]["responses"].update(apidoc.errors("415"))
        item.update(collection)
        paths[f"{path}/bulk"] = create
