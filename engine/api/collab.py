"""``/api/v1`` endpoints of attachments, comments and the timeline of a record (docs/attachments.md,
docs/comments.md, docs/timeline.md).  Every one answers 404 when the caller cannot read the record."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, g, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from engine.api import apidoc, gateway, params
from engine.api.errors import UnsupportedMediaType
from engine.api.views import bp as api_bp
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, FileStoreError, FileTooLarge, NotFound
from engine.runtime.collab import comments, files, timeline

_log = logging.getLogger(__name__)

bp = Blueprint("collab", __name__)
#: what a multipart body may carry beyond the file itself (boundaries, part headers, the name)
MULTIPART_SLACK = 64 * 1024
FILE_PART = "file"


def _id(raw: str, what: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"there is no {what} {raw!r}", details={"id": raw})
    return int(raw)


def _location(path: str) -> str:
    """As the core endpoints build ``Location``: on the configured public URL, else relative."""
    base = current_app.config.get("CRM_PUBLIC_URL")
    return f"{base.rstrip('/') if base else ''}{api_bp.url_prefix}{path}"


def _too_large(limit: int) -> FileTooLarge:
    return FileTooLarge(f"the upload is larger than the {limit} bytes an attachment may be",
                        details={"max_size": limit}, hint="attachments.max_size in workspace.yaml sets the limit")


# --------------------------------------------------------------------------- attachments


@bp.post("/records/<entity>/<record_id>/files")
def upload_file(entity: str, record_id: str) -> Response:
    """Attach a file (``multipart/form-data``, part ``file``); 201 with the file's row."""
    rid = _id(record_id, "record")
    limit = runtime().state.workspace.attachments.max_size
    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise _too_large(limit)  # before reading a byte of the body
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(f"send the file as multipart/form-data in a part named {FILE_PART!r}",
                                   details={"content_type": request.content_type})
    request.max_content_length = limit + MULTIPART_SLACK
    try:
        upload = request.files.get(FILE_PART)
    except RequestEntityTooLarge as e:
        raise _too_large(limit) from e
    if upload is None:
        raise BadRequest(f"the body has no part named {FILE_PART!r}", code="bad_request",
                         details={FILE_PART: ["is required"]}, hint="curl -F file=@contract.pdf ...")
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        made = files.upload(uow, entity, rid, upload.filename, upload.stream)  # type: ignore[arg-type]
    resp = json_response(made, 201)
    resp.headers["Location"] = _location(f"/records/{entity}/{rid}/files/{made['id']}")
    return resp


@bp.get("/records/<entity>/<record_id>/files")
def list_files(entity: str, record_id: str) -> Response:
    rid = _id(record_id, "record")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        return json_response({"items": files.listing(uow, entity, rid)})


@bp.get("/records/<entity>/<record_id>/files/<file_id>")
def get_file(entity: str, record_id: str, file_id: str) -> Response:
    rid, fid = _id(record_id, "record"), _id(file_id, "file")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        return json_response(files.get(uow, entity, rid, fid))


@bp.get("/records/<entity>/<record_id>/files/<file_id>/content")
def download_file(entity: str, record_id: str, file_id: str) -> Response:
    """The file's bytes, as an attachment, with its sniffed type (``nosniff``; a sandbox policy)."""
    rid, fid = _id(record_id, "record"), _id(file_id, "file")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        row, stream = files.open_file(uow, entity, rid, fid)
    resp = send_file(stream, mimetype=row["content_type"], as_attachment=True, download_name=row["name"],
                     etag=row["sha256"], last_modified=row["created_at"], max_age=0)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "sandbox"
    resp.headers["Digest"] = f"sha-256={row['sha256']}"
    return resp


@bp.delete("/records/<entity>/<record_id>/files/<file_id>")
def delete_file(entity: str, record_id: str, file_id: str) -> Response:
    rid, fid = _id(record_id, "record"), _id(file_id, "file")
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        purge = files.delete(uow, entity, rid, fid)
    try:
        purge()  # the removal committed: now the bytes go
    except FileStoreError as e:  # the file is removed all the same; its bytes stay behind in the store
        _log.warning("file %s of %s %s removed, but its bytes could not be deleted from the store: %s",
                     fid, entity, rid, e)
    return Response(status=204)


# --------------------------------------------------------------------------- comments


def _body() -> Any:
    return params.json_object(request).get("body")


@bp.get("/records/<entity>/<record_id>/comments")
def list_comments(entity: str, record_id: str) -> Response:
    """Newest first; ``limit`` (1-200) and ``before=<comment id>`` page back."""
    rid = _id(record_id, "record")
    limit = params.int_arg(request.args, "limit", 50, 1, 200)
    before = request.args.get("before")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        items = comments.listing(uow, entity, rid, limit=limit,
                                 before=_id(before, "comment") if before else None)
    return json_response({"items": items, "next_before": items[-1]["id"] if len(items) == limit else None})


@bp.post("/records/<entity>/<record_id>/comments")
def add_comment(entity: str, record_id: str) -> Response:
    rid = _id(record_id, "record")
    body = _body()
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        made = comments.add(uow, entity, rid, body)
    resp = json_response(made, 201)
    resp.headers["Location"] = _location(f"/records/{entity}/{rid}/comments/{made['id']}")
    return resp


@bp.get("/records/<entity>/<record_id>/comments/<comment_id>")
def get_comment(entity: str, record_id: str, comment_id: str) -> Response:
    rid, cid = _id(record_id, "record"), _id(comment_id, "comment")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        return json_response(comments.get(uow, entity, rid, cid))


@bp.patch("/records/<entity>/<record_id>/comments/<comment_id>")
def edit_comment(entity: str, record_id: str, comment_id: str) -> Response:
    rid, cid = _id(record_id, "record"), _id(comment_id, "comment")
    body = _body()
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        return json_response(comments.edit(uow, entity, rid, cid, body))


@bp.delete("/records/<entity>/<record_id>/comments/<comment_id>")
def delete_comment(entity: str, record_id: str, comment_id: str) -> Response:
    rid, cid = _id(record_id, "record"), _id(comment_id, "comment")
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        comments.delete(uow, entity, rid, cid)
    return Response(status=204)


# --------------------------------------------------------------------------- timeline


@bp.get("/records/<entity>/<record_id>/timeline")
def record_timeline(entity: str, record_id: str) -> Response:
    """The record's and its children's activities, comments, changes, stage and pool moves, approvals and
    files, newest first; ``limit`` (1-200) and ``cursor`` page it."""
    rid = _id(record_id, "record")
    limit = params.int_arg(request.args, "limit", 50, 1, timeline.MAX_PAGE)
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        gateway.entity(uow, entity)
        return json_response(timeline.timeline(uow, entity, rid, limit=limit, cursor=request.args.get("cursor")))


# --------------------------------------------------------------------------- OpenAPI


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
_FILE = _obj(id=_INT, entity=_STR, record_id=_INT, name=_STR, content_type=_STR, size=_INT, sha256=_STR,
             created_by={"type": ["integer", "null"]}, created_by_name={"type": ["string", "null"]},
             created_at=_TIME)
_COMMENT = _obj(id=_INT, entity=_STR, record_id=_INT, author_id={"type": ["integer", "null"]},
                author={"type": ["string", "null"]}, body=_STR, mentions={"type": "array", "items": _STR},
                not_notified={"type": "array", "items": _STR}, created_at=_TIME, edited_at=_NULL_TIME)
_ITEM = _obj(id=_STR, kind=_STR, entity=_STR, record_id=_INT, at=_TIME, actor_id={"type": ["integer", "null"]},
             actor={"type": ["string", "null"]})
_ITEMS = {"type": "array", "items": _FILE}


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    rec = [apidoc.path_param("entity"), apidoc.path_param("record_id", _INT)]
    one_file = [*rec, apidoc.path_param("file_id", _INT)]
    one_comment = [*rec, apidoc.path_param("comment_id", _INT)]
    upload = {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [FILE_PART],
        "properties": {FILE_PART: {"type": "string", "format": "binary"}}}}}}
    comment_body = {"type": "object", "required": ["body"], "properties": {"body": _STR}}
    page = {"type": "array", "items": _COMMENT}
    gone = {"204": {"description": "Removed"}, **apidoc.errors("401", "403", "404")}
    upload_op = apidoc.op("uploadFile", "attachments", "Attach a file (size and type from workspace.yaml)",
                          {"201": apidoc.json_body(_FILE, "The file"),
                           **apidoc.errors("400", "401", "403", "404", "413", "415")}, params=rec)
    upload_op["requestBody"] = upload
    return {
        "/records/{entity}/{record_id}/files": {
            "post": upload_op,
            "get": apidoc.op("listFiles", "attachments", "The record's files, newest first",
                             {"200": apidoc.json_body(_obj(items=_ITEMS), "Files"), **apidoc.errors("401", "404")},
                             params=rec)},
        "/records/{entity}/{record_id}/files/{file_id}": {
            "get": apidoc.op("getFile", "attachments", "One file's name, type, size and SHA-256",
                             {"200": apidoc.json_body(_FILE, "The file"), **apidoc.errors("401", "404")},
                             params=one_file),
            "delete": apidoc.op("deleteFile", "attachments", "Remove a file (uploader, or update access)", gone,
                                params=one_file)},
        "/records/{entity}/{record_id}/files/{file_id}/content": {"get": apidoc.op(
            "downloadFile", "attachments", "The file's bytes",
            {"200": {"description": "The bytes, with the sniffed content type",
                     "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
             **apidoc.errors("401", "404")}, params=one_file)},
        "/records/{entity}/{record_id}/comments": {
            "get": apidoc.op("listComments", "comments", "The record's comments, newest first",
                             {"200": apidoc.json_body(_obj(items=page, next_before={"type": ["integer", "null"]}),
                                                      "A page"), **apidoc.errors("400", "401", "404")},
                             params=[*rec, apidoc.query_param("limit", {"type": "integer", "minimum": 1,
                                                                        "maximum": 200}),
                                     apidoc.query_param("before", _INT)]),
            "post": apidoc.op("addComment", "comments", "Comment; @username mentions notify",
                              {"201": apidoc.json_body(_COMMENT, "The comment"),
                               **apidoc.errors("400", "401", "404", "415")}, body=comment_body, params=rec)},
        "/records/{entity}/{record_id}/comments/{comment_id}": {
            "get": apidoc.op("getComment", "comments", "One comment",
                             {"200": apidoc.json_body(_COMMENT, "The comment"), **apidoc.errors("401", "404")},
                             params=one_comment),
            "patch": apidoc.op("editComment", "comments", "Change a comment (its author or an admin)",
                               {"200": apidoc.json_body(_COMMENT, "The comment"),
                                **apidoc.errors("400", "401", "403", "404", "415")},
                               body=comment_body, params=one_comment),
            "delete": apidoc.op("deleteComment", "comments", "Remove a comment (its author or an admin)", gone,
                                params=one_comment)},
        "/records/{entity}/{record_id}/timeline": {"get": apidoc.op(
            "recordTimeline", "timeline", "Activities, comments, changes, stage and pool moves, approvals and "
            "files of the record and its children, newest first",
            {"200": apidoc.json_body(_obj(items={"type": "array", "items": _ITEM},
                                          next_cursor={"type": ["string", "null"]},
                                          subjects={"type": "object"}), "A page"),
             **apidoc.errors("400", "401", "404")},
            params=[*rec, apidoc.query_param("limit", {"type": "integer", "minimum": 1,
                                                       "maximum": timeline.MAX_PAGE}),
                    apidoc.query_param("cursor", _STR)])},
    }
