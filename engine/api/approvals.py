"""``/api/v1`` approval endpoints: submit a record, the inbox, acting on a task (complete, reassign,
add_signer, return), withdrawing and reading an instance, a record's approvals, comments, and the
delegation rules (out of office).  An ``Idempotency-Key`` header makes a retried action a no-op; a
retried completion without one is recognised by the task's state (see docs/approvals.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, NotFound
from engine.runtime.approvals import service, views

bp = Blueprint("approvals", __name__)
KEY_HEADER = "Idempotency-Key"


def _id(raw: str, what: str = "approval task") -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"there is no {what} {raw!r}", details={"id": raw})
    return int(raw)


def _body(*required: str) -> dict[str, Any]:
    body = params.json_object(request) if request.get_data() else {}
    missing = [k for k in required if body.get(k) in (None, "")]
    if missing:
        raise BadRequest(f"the body needs {', '.join(missing)}", code="bad_request",
                         details={k: ["is required"] for k in missing})
    return body


def _key() -> str | None:
    raw = request.headers.get(KEY_HEADER)
    if raw is None:
        return None
    if not raw or len(raw) > 150:
        raise BadRequest(f"{KEY_HEADER} must be 1 to 150 characters", code="bad_request")
    return raw


def _comment(body: dict[str, Any]) -> str | None:
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise BadRequest("comment must be text", code="bad_request", details={"comment": ["must be text"]})
    return comment


def _instance(uow: Any, instance_id: int) -> Response:
    return json_response(views.instance(uow, instance_id))


@bp.post("/records/<entity>/<record_id>/submit")
def submit(entity: str, record_id: str) -> Response:
    """Start the record's approval flow (``flow`` names it when the entity has several)."""
    rid = _id(record_id, "record")
    body = _body()
    flow = body.get("flow")
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        instance_id = service.submit(uow, entity, rid, flow if isinstance(flow, str) else None)
        return json_response(views.instance(uow, instance_id), status=201)


@bp.get("/records/<entity>/<record_id>/approvals")
def record_approvals(entity: str, record_id: str) -> Response:
    rid = _id(record_id, "record")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        return json_response({"items": views.of_record(uow, entity, rid)})


@bp.get("/approvals/tasks")
def inbox() -> Response:
    """The caller's approval tasks (``assignee=me``), newest first; ``status`` ready (default), open, or a
    task status; ``limit`` and ``cursor`` page it."""
    args = request.args
    if args.get("assignee", "me") != "me":
        raise BadRequest("assignee must be me", code="bad_request", details={"assignee": ["use me"]})
    limit = args.get("limit", "50")
    cursor = args.get("cursor")
    if not limit.isdigit() or (cursor is not None and not cursor.isdigit()):
        raise BadRequest("limit and cursor must be whole numbers", code="bad_request")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        if uow.actor.user_id is None:
            raise BadRequest("the system actor has no inbox", code="bad_request")
        page = views.inbox(uow, user_id=uow.actor.user_id, status=args.get("status", "ready"), limit=int(limit),
                           before=int(cursor) if cursor else None)
    return json_response({"items": page["items"], "next_cursor": page["next"]})


@bp.post("/approvals/tasks/<task_id>/complete")
def complete(task_id: str) -> Response:
    body = _body("decision")
    with gateway.unit(runtime(), g.principal) as uow:
        iid = service.complete(uow, _id(task_id), body["decision"], comment=_comment(body), key=_key(),
                               data=body.get("data"))
        return _instance(uow, iid)


@bp.post("/approvals/tasks/<task_id>/reassign")
def reassign(task_id: str) -> Response:
    body = _body("to")
    with gateway.unit(runtime(), g.principal) as uow:
        iid = service.reassign(uow, _id(task_id), body["to"], comment=_comment(body), key=_key())
        return _instance(uow, iid)


@bp.post("/approvals/tasks/<task_id>/add_signer")
def add_signer(task_id: str) -> Response:
    body = _body()
    found = body.get("users", [body["user"]] if body.get("user") is not None else [])
    if not isinstance(found, list) or not found:
        raise BadRequest("name the user to add (user, or users: [...])", code="bad_request",
                         details={"user": ["is required"]})
    with gateway.unit(runtime(), g.principal) as uow:
        iid = service.add_signer(uow, _id(task_id), found, position=str(body.get("position", "before")),
                                 mode=str(body.get("mode", "all")), comment=_comment(body), key=_key())
        return _instance(uow, iid)


@bp.post("/approvals/tasks/<task_id>/return")
def return_task(task_id: str) -> Response:
    body = _body("to")
    with gateway.unit(runtime(), g.principal) as uow:
        iid = service.return_to(uow, _id(task_id), body["to"], comment=_comment(body), key=_key())
        return _instance(uow, iid)


@bp.post("/approvals/instances/<instance_id>/withdraw")
def withdraw(instance_id: str) -> Response:
    body = _body()
    with gateway.unit(runtime(), g.principal) as uow:
        iid = service.withdraw(uow, _id(instance_id, "approval"), comment=_comment(body), key=_key())
        return _instance(uow, iid)


@bp.post("/approvals/instances/<instance_id>/comments")
def comment(instance_id: str) -> Response:
    body = _body("comment")
    with gateway.unit(runtime(), g.principal) as uow:
        iid = _id(instance_id, "approval")
        service.add_comment(uow, iid, _comment(body) or "")
        return json_response(views.instance(uow, iid), status=201)


@bp.get("/approvals/instances/<instance_id>")
def instance(instance_id: str) -> Response:
    """Status, steps, every task (who is waiting) and the decision history of one approval."""
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        return json_response(views.instance(uow, _id(instance_id, "approval"), with_diagram=True))


#: an SVG opened on its own runs nothing and loads nothing
SVG_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
               "X-Content-Type-Options": "nosniff"}


@bp.get("/approvals/instances/<instance_id>/diagram.svg")
def instance_diagram(instance_id: str) -> Response:
    """The flow drawn as SVG from its BPMN diagram, the steps waiting now, approved and rejected marked."""
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        svg = views.diagram_svg(uow, _id(instance_id, "approval"))
    return Response(svg, mimetype="image/svg+xml", headers=SVG_HEADERS)


def _when(body: dict[str, Any], key: str) -> dt.datetime:
    raw = body.get(key)
    try:
        at = dt.datetime.fromisoformat(str(raw))
    except ValueError as e:
        raise BadRequest(f"{key} is not a date and time", code="bad_request",
                         details={key: ["an ISO 8601 date and time, e.g. 2026-03-01T09:00:00Z"]}) from e
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


@bp.post("/approvals/delegations")
def add_delegation() -> Response:
    """An out-of-office rule: ``delegate`` acts on your tasks from ``starts_at`` until ``ends_at``."""
    body = _body("delegate", "starts_at", "ends_at")
    with gateway.unit(runtime(), g.principal) as uow:
        made = views.add_delegation(uow, delegate=body["delegate"], starts_at=_when(body, "starts_at"),
                                    ends_at=_when(body, "ends_at"), user=body.get("user"))
    return json_response(made, status=201)


@bp.get("/approvals/delegations")
def list_delegations() -> Response:
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        return json_response({"items": views.delegations(uow)})


@bp.delete("/approvals/delegations/<delegation_id>")
def remove_delegation(delegation_id: str) -> Response:
    with gateway.unit(runtime(), g.principal) as uow:
        views.remove_delegation(uow, _id(delegation_id, "delegation"))
    return Response(status=204)


# --------------------------------------------------------------------------- OpenAPI


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_INSTANCE = _obj(id=_INT, flow=_STR, entity=_STR, record_id=_INT, status={
    "enum": ["pending", "approved", "rejected", "withdrawn", "returned"]}, submitter=_STR,
    steps={"type": "array", "items": apidoc.FREE}, tasks={"type": "array", "items": apidoc.FREE},
    waiting_for={"type": "array", "items": _STR}, history={"type": "array", "items": apidoc.FREE})
_KEY = {"name": KEY_HEADER, "in": "header", "required": False, "schema": _STR,
        "description": "a retried request with the same key has no second effect"}


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    task = [apidoc.path_param("task_id", _INT), _KEY]
    inst = [apidoc.path_param("instance_id", _INT)]
    rec = [apidoc.path_param("entity"), apidoc.path_param("record_id", _INT)]
    done = {"200": apidoc.json_body(_INSTANCE, "The approval after the action"),
            **apidoc.errors("400", "401", "403", "404", "409", "423")}

    def action(op_id: str, summary: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"post": apidoc.op(op_id, "approvals", summary, done, body=body, params=task)}

    return {
        "/records/{entity}/{record_id}/submit": {"post": apidoc.op(
            "submitForApproval", "approvals", "Start the record's approval flow",
            {"201": apidoc.json_body(_INSTANCE, "The new approval"),
             **apidoc.errors("400", "401", "403", "404", "409")},
            body=_obj(flow=_STR), params=rec)},
        "/records/{entity}/{record_id}/approvals": {"get": apidoc.op(
            "listRecordApprovals", "approvals", "The record's approvals, oldest first",
            {"200": apidoc.json_body(_obj(items={"type": "array", "items": apidoc.FREE}), "Approvals"),
             **apidoc.errors("401", "404")}, params=rec)},
        "/approvals/tasks": {"get": apidoc.op(
            "approvalInbox", "approvals", "Your approval tasks (and those of users you stand in for)",
            {"200": apidoc.json_body(_obj(items={"type": "array", "items": apidoc.FREE},
                                          next_cursor={"type": ["string", "null"]}), "A page"),
             **apidoc.errors("400", "401")},
            params=[apidoc.query_param("assignee", {"enum": ["me"]}),
                    apidoc.query_param("status", {"enum": list(views.STATUSES)}),
                    apidoc.query_param("limit", {"type": "integer", "minimum": 1, "maximum": views.MAX_PAGE}),
                    apidoc.query_param("cursor", _STR)])},
        "/approvals/tasks/{task_id}/complete": action(
            "completeApprovalTask", "Approve or reject (403 not yours, 409 not ready)",
            _obj(decision={"enum": ["approve", "reject"]}, comment=_STR, data=apidoc.FREE)
            | {"required": ["decision"]}),
        "/approvals/tasks/{task_id}/reassign": action(
            "reassignApprovalTask", "转交: hand the task to another user",
            _obj(to={"type": ["string", "integer"]}, comment=_STR) | {"required": ["to"]}),
        "/approvals/tasks/{task_id}/add_signer": action(
            "addApprovalSigner", "加签: add approvers before or after yourself",
            _obj(user={"type": ["string", "integer"]}, users={"type": "array"}, position={"enum": ["before", "after"]},
                 mode={"enum": ["any", "all"]}, comment=_STR)),
        "/approvals/tasks/{task_id}/return": action(
            "returnApprovalTask", "退回: to the submitter or an earlier step",
            _obj(to=_STR, comment=_STR) | {"required": ["to"]}),
        "/approvals/instances/{instance_id}/withdraw": {"post": apidoc.op(
            "withdrawApproval", "approvals", "撤回: the submitter withdraws before any approver acted", done,
            body=_obj(comment=_STR), params=[*inst, _KEY])},
        "/approvals/instances/{instance_id}/comments": {"post": apidoc.op(
            "commentApproval", "approvals", "Add a comment to the approval's history",
            {"201": apidoc.json_body(_INSTANCE, "The approval"), **apidoc.errors("400", "401", "403", "404")},
            body=_obj(comment=_STR) | {"required": ["comment"]}, params=inst)},
        "/approvals/instances/{instance_id}": {"get": apidoc.op(
            "getApproval", "approvals", "One approval: steps, tasks, who is waiting, history",
            {"200": apidoc.json_body(_INSTANCE, "The approval (with its diagram as SVG)"),
             **apidoc.errors("401", "404")}, params=inst)},
        "/approvals/instances/{instance_id}/diagram.svg": {"get": apidoc.op(
            "getApprovalDiagram", "approvals", "The flow drawn from its BPMN diagram, the current step marked",
            {"200": {"description": "The diagram", "content": {"image/svg+xml": {"schema": _STR}}},
             **apidoc.errors("401", "404")}, params=inst)},
        "/approvals/delegations": {
            "post": apidoc.op("addDelegation", "approvals", "Out of office: a delegate acts on your tasks in dates",
                              {"201": apidoc.json_body(apidoc.FREE, "The rule"), **apidoc.errors("400", "401", "403")},
                              body=_obj(delegate={"type": ["string", "integer"]}, starts_at=_TIME, ends_at=_TIME,
                                        user={"type": ["string", "integer"]})
                              | {"required": ["delegate", "starts_at", "ends_at"]}),
            "get": apidoc.op("listDelegations", "approvals", "Your delegation rules",
                             {"200": apidoc.json_body(_obj(items={"type": "array", "items": apidoc.FREE}), "Rules"),
                              **apidoc.errors("401")})},
        "/approvals/delegations/{delegation_id}": {"delete": apidoc.op(
            "removeDelegation", "approvals", "Remove one of your delegation rules",
            {"204": {"description": "Removed"}, **apidoc.errors("401", "404")},
            params=[apidoc.path_param("delegation_id", _INT)])},
    }
